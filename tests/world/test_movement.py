"""The learned movement: it recovers Doom-like physics from recorded poses and never leaves the walkable area."""

import numpy as np
import pytest
import torch

from worldsim.testing import toy_track
from worldsim.world.movement import MovementModel, PlayerState
from worldsim.world.walls import Walls

CONTROLS = ("forward", "strafe", "yaw", "use")


@pytest.fixture(scope="module")
def model():
    return MovementModel.fit([toy_track(seed=s) for s in range(4)], CONTROLS)


def test_learns_the_free_motion_and_the_turn(model):
    # toy physics: velocity' = 0.8 velocity + 1.5 (forward ahead + strafe right), heading' = heading - 4 yaw. The toy
    # player holds its keys for ten frames on average, so the previous and the current command are told apart only
    # at changes: their sum is what is learned sharply
    momentum, forward_before, strafe_before, forward, strafe = model.motion
    assert momentum == pytest.approx(0.8, abs=0.02)
    assert forward_before + forward == pytest.approx(1.5, abs=0.05)
    assert strafe_before + strafe == pytest.approx(1.5, abs=0.05)
    assert model.turn_gain == pytest.approx(-4.0, abs=1e-3)


def test_follows_a_held_out_track_while_free_and_stops_at_the_walls(model):
    poses, actions = toy_track(seed=99)
    rolled = model.rollout(PlayerState.from_pose(poses[0]), actions[1:])
    error = np.linalg.norm(rolled[:, :2] - poses[1:, :2], axis=1)
    assert error[:20].max() < 3.0  # a second of play, before the walls come into it
    assert model.walkable.contains(rolled[:, :2]).all()


def test_a_long_random_rollout_never_leaves_the_walkable_area(model):
    gen = np.random.default_rng(0)
    actions = np.repeat(gen.uniform(-1, 1, (50, 4)), 40, axis=0)  # held keys, 2,000 frames
    rolled = model.rollout(model.start(np.array([80.0, 80.0, 0.0])), actions)
    assert model.walkable.contains(rolled[:, :2]).all()
    assert np.ptp(rolled[:, 0]) > 50  # it does move around


def test_walking_into_a_wall_stops(model):
    state = model.start(np.array([80.0, 80.0, 0.0]))  # facing +x
    for _ in range(120):
        state = model.step(state, np.array([1.0, 0.0, 0.0, 0.0]))
    assert np.hypot(state.vx, state.vy) < 0.01  # stopped (a learned cross term may leave a crawl along the wall)
    assert model.walkable.contains(np.array([state.x, state.y]))
    assert not model.walkable.contains(np.array([state.x + 16, state.y]))  # at the edge of the recorded area


def test_the_same_actions_give_the_same_poses_bit_for_bit(model):
    poses, actions = toy_track(seed=5)
    a = model.rollout(PlayerState.from_pose(poses[0]), actions)
    b = model.rollout(PlayerState.from_pose(poses[0]), actions)
    assert a.tobytes() == b.tobytes()


def test_round_trip_through_tensors(model):
    again = MovementModel.from_tensors({k: v.clone() for k, v in model.to_tensors().items()}, CONTROLS)
    poses, actions = toy_track(seed=7)
    start = PlayerState.from_pose(poses[0])
    assert again.rollout(start, actions).tobytes() == model.rollout(start, actions).tobytes()
    assert all(isinstance(v, torch.Tensor) for v in model.to_tensors().values())


def test_a_scheme_without_the_movement_controls_is_refused():
    with pytest.raises(ValueError, match="forward.*strafe.*yaw.*camera scheme"):
        MovementModel(np.zeros(5), -4.0, MovementModel.fit([toy_track()], CONTROLS).walkable,
                      ("forward", "back", "turn_left"))


def test_the_maps_walls_stop_the_player_where_the_recordings_end_short_of_them():
    # the toy room's walls are at 0 and 400; a wall across the room at x = 300 that the recorded players never met
    # (their track is cut to x < 250) stops the player at the wall, not at the recorded area's edge
    walls = Walls(np.array([[300.0, 0.0, 300.0, 400.0]]))
    tracks = [toy_track(seed=s) for s in range(4)]
    tracks = [(p[p[:, 0] < 250], a[p[:, 0] < 250]) for p, a in tracks]
    model = MovementModel.fit(tracks, CONTROLS, walls=walls, reach=100.0)
    state = model.start(np.array([200.0, 200.0, 0.0]))  # facing +x
    xs = []
    for _ in range(120):
        state = model.step(state, np.array([1.0, 0.0, 0.0, 0.0]))
        xs.append(state.x)
    assert 270.0 < max(xs) < 284.0  # up to the wall, the player's box never crossing it
    again = MovementModel.from_tensors(model.to_tensors(), CONTROLS)
    np.testing.assert_array_equal(again.walkable.walls.segments, walls.segments)
