"""The learned movement: it recovers Doom-like physics from recorded poses and never leaves the walkable area."""

import numpy as np
import pytest
import torch

from worldsim.testing import toy_track
from worldsim.world.movement import MovementModel, PlayerState, TicPhysics
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


# ---- the engine's per-tic physics (TicPhysics) --------------------------------------------------------------------

DOOM_LIKE = TicPhysics(tics_per_frame=2, friction=0.90625, thrust=1 / 32, move_units=(15.0, 12.0), stop_speed=1 / 16,
                       turn_step=360 / 65536)


@pytest.fixture(scope="module")
def physical():
    fitted = MovementModel.fit([toy_track(seed=s) for s in range(4)], CONTROLS, physics=DOOM_LIKE)
    return fitted


def hand_tics(pose, momentum, actions, physics=DOOM_LIKE, turn_gain=-4.0):
    """Doom's tic loop written out: turn, thrust along the new heading, move, friction (no walls)."""
    x, y, heading = pose
    mx, my = momentum
    out = []
    for forward, strafe, yaw, _ in actions:
        turn = np.ceil(turn_gain * yaw / 2 / physics.turn_step) * physics.turn_step
        for _ in range(2):
            heading = (heading + turn) % 360.0
            a = np.radians(heading)
            along, side = round(forward * 15) / 32, round(strafe * 12) / 32
            mx += along * np.cos(a) + side * np.sin(a)
            my += along * np.sin(a) - side * np.cos(a)
            x, y = x + mx, y + my
            mx, my = mx * physics.friction, my * physics.friction
        out.append((x, y, heading))
    return np.array(out)


def test_the_physics_integrates_each_tic_as_the_engine_does(physical):
    assert physical.motion is None and physical.turn_gain == pytest.approx(-4.0, abs=1e-3)  # only the turn learned
    actions = np.array([[1.0, 0.0, 0.0, 0.0]] * 4 + [[0.6, -0.5, 0.3, 0.0]] * 4 + [[0.0, 1.0, -0.7, 0.0]] * 4)
    start = physical.start(np.array([200.0, 200.0, 30.0]))
    rolled = physical.rollout(start, actions)
    expected = hand_tics((200.0, 200.0, 30.0), (0.0, 0.0), actions, turn_gain=physical.turn_gain)
    np.testing.assert_allclose(rolled, expected, atol=1e-9)


def test_steady_walking_covers_the_commanded_units_per_frame(physical):
    state = physical.start(np.array([60.0, 200.0, 0.0]))
    for _ in range(24):
        before, state = state.x, physical.step(state, np.array([0.5, 0.0, 0.0, 0.0]))
    # forward 0.5: round(7.5) = 8 move units, settling at 8 / 32 / (1 - f) per tic, two tics a frame (99% there)
    assert state.x - before == pytest.approx(2 * 8 / 32 / (1 - 0.90625), rel=0.015)


def test_nothing_pressed_stops_the_player_dead(physical):
    state = physical.start(np.array([200.0, 200.0, 0.0]))
    state = physical.step(state, np.array([1.0, 0.0, 0.0, 0.0]))
    for _ in range(60):
        state = physical.step(state, np.zeros(4))
    assert (state.vx, state.vy) == (0.0, 0.0)
    assert physical.step(state, np.zeros(4)).pose.tobytes() == state.pose.tobytes()


def test_turns_come_in_whole_engine_steps_rounded_counter_clockwise():
    assert DOOM_LIKE.turn_per_tic(0.0) == 0.0
    assert DOOM_LIKE.turn_per_tic(1e-4) == pytest.approx(360 / 65536)  # a sliver still turns one step left
    assert DOOM_LIKE.turn_per_tic(-1e-4) == 0.0
    assert DOOM_LIKE.turn_per_tic(-4.0) / (360 / 65536) == pytest.approx(round(-2.0 / (360 / 65536)), abs=1)


def test_the_momentum_a_recorded_move_leaves_is_the_one_the_tics_carry(physical):
    actions = np.array([[0.0, 0.0, 0.0, 0.0]] + [[0.8, 0.3, 0.2, 0.0]] * 3 + [[-0.4, 0.0, 0.0, 0.0]] * 2)
    state = physical.start(np.array([200.0, 200.0, 10.0]))
    states, poses = [state], [state.pose]
    for action in actions[1:]:
        state = physical.step(state, action)
        states.append(state)
        poses.append(state.pose)
    poses = np.array(poses)
    for t in range(1, len(poses)):
        derived = physical.along(poses, actions, t)
        # exact up to the fraction of a degree the heading turns within a frame
        np.testing.assert_allclose((derived.vx, derived.vy), (states[t].vx, states[t].vy), atol=2e-3)


def test_the_physics_stops_at_walls_and_slides_with_what_is_left_along_them():
    walls = Walls(np.array([[300.0, 0.0, 300.0, 400.0]]))
    model = MovementModel.fit([toy_track(seed=s) for s in range(4)], CONTROLS, walls=walls, reach=100.0,
                              physics=DOOM_LIKE)
    state = model.start(np.array([200.0, 200.0, 30.0]))  # walking at 30 degrees to the wall's normal
    for _ in range(40):
        state = model.step(state, np.array([1.0, 0.0, 0.0, 0.0]))
    assert 283.0 <= state.x < 284.0  # the box's edge at the wall
    assert abs(state.vx) < 1e-9 and state.vy > 0  # the momentum into the wall is gone, the part along it kept
    free = model.free_move(state, np.array([1.0, 0.0, 0.0, 0.0]))[1]
    assert free[0] > 1.0  # with no wall the command would carry it on


def test_physics_round_trips_through_tensors_bit_for_bit(physical):
    again = MovementModel.from_tensors({k: v.clone() for k, v in physical.to_tensors().items()}, CONTROLS)
    assert again.physics == physical.physics and again.motion is None
    poses, actions = toy_track(seed=7)
    start = PlayerState.from_pose(poses[0])
    assert again.rollout(start, actions).tobytes() == physical.rollout(start, actions).tobytes()


def test_a_movement_has_one_free_motion(physical):
    with pytest.raises(ValueError, match="either"):
        MovementModel(np.zeros(5), -4.0, physical.walkable, CONTROLS, physics=DOOM_LIKE)
    with pytest.raises(ValueError, match="either"):
        MovementModel(None, -4.0, physical.walkable, CONTROLS)
