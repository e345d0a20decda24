"""Doors: walls of the walkable map until USE opens them, closing again like Doom's, carried in the player's state."""

import numpy as np
import pytest

from worldsim.eval.movement import wall_contacts
from worldsim.testing import toy_track
from worldsim.world.doors import WAIT_TICS, Doors, DoorSpec
from worldsim.world.movement import MovementModel, PlayerState

CONTROLS = ("forward", "strafe", "yaw", "use")
WALK, USE, STAND = np.array([1.0, 0, 0, 0]), np.array([0, 0, 0, 1.0]), np.zeros(4)


def rectangle(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0, x1, y0], [x1, y0, x1, y1], [x1, y1, x0, y1], [x0, y1, x0, y0]])


def door(stays_open: bool = False, speed: int = 8) -> DoorSpec:
    """A door 16 units thick across the middle of the toy room (x 200-216), opened from its two long faces."""
    outline = rectangle(200, 0, 216, 400)
    return DoorSpec(outline, outline[[1, 3]], top=92, speed=speed, stays_open=stays_open)


def fit(spec: DoorSpec) -> MovementModel:
    return MovementModel.fit([toy_track(seed=s) for s in range(4)], CONTROLS, doors=[spec])


@pytest.fixture(scope="module")
def model():
    return fit(door())


def walk(model: MovementModel, state: PlayerState, action: np.ndarray, frames: int) -> PlayerState:
    for _ in range(frames):
        state = model.step(state, action)
    return state


def test_a_shut_door_is_a_wall(model):
    state = walk(model, model.start(np.array([120.0, 200.0, 0.0])), WALK, 60)  # facing +x, toward the door
    assert 170 < state.x < 200 - 8  # stopped at the door, the player's box away from its face
    assert model.doors.closed(state.doors).all()


def test_use_facing_the_door_opens_it_and_the_player_walks_through(model):
    state = walk(model, model.start(np.array([120.0, 200.0, 0.0])), WALK, 60)
    state = walk(model, model.step(state, USE), WALK, 40)
    assert state.x > 260


@pytest.mark.parametrize("pose", [[120.0, 200.0, 180.0], [60.0, 200.0, 0.0]], ids=["facing away", "too far"])
def test_use_opens_only_a_door_ahead_within_reach(model, pose):
    state = walk(model, model.step(model.start(np.array(pose)), USE), STAND, 10)
    assert model.doors.closed(state.doors).all()


def test_a_door_that_closes_again_waits_then_shuts_but_not_on_the_player(model):
    opened = walk(model, model.step(model.start(np.array([170.0, 200.0, 0.0])), USE), STAND, 10)
    assert not model.doors.closed(opened.doors).any()
    frames = WAIT_TICS // model.doors.tics_per_frame + 2 * 92 // 8
    assert model.doors.closed(walk(model, opened, STAND, frames).doors).all()
    doors = opened.doors
    for _ in range(frames):  # a player standing in the doorway the whole time
        doors = model.doors.advance(doors, inside=0)
        assert not model.doors.closed(doors).any()  # it comes down to the player's head and goes back up


def test_a_door_that_stays_open_stays_open():
    model = fit(door(stays_open=True))
    opened = walk(model, model.step(model.start(np.array([170.0, 200.0, 0.0])), USE), STAND, 2000)
    assert not model.doors.closed(opened.doors).any()


def test_a_slow_door_lets_the_player_through_only_once_it_is_high_enough():
    model = fit(door(speed=2))  # 56 units at 2 per tic and 2 tics per frame: 14 frames
    state = model.step(model.start(np.array([170.0, 200.0, 0.0])), USE)
    assert model.doors.closed(walk(model, state, STAND, 12).doors).all()
    assert not model.doors.closed(walk(model, state, STAND, 14).doors).any()


def test_doors_survive_save_and_load_and_replays_stay_exact(model):
    loaded = MovementModel.from_tensors(model.to_tensors(), CONTROLS)
    actions = np.repeat(np.array([WALK, USE, WALK, STAND, [0.5, 0.3, 0.2, 1.0]]), [40, 1, 40, 40, 40], axis=0)
    start = model.start(np.array([120.0, 200.0, 0.0]))
    a, b = model.rollout(start, actions), loaded.rollout(loaded.start(start.pose), actions)
    assert a.tobytes() == b.tobytes()
    assert a[:, 0].max() > 260  # the replay went through the door


def test_a_world_without_doors_tracks_none():
    model = MovementModel.fit([toy_track(seed=s) for s in range(2)], CONTROLS)
    assert model.doors is None and model.start(np.array([100.0, 100.0, 0.0])).doors is None
    assert "doors.top" not in model.to_tensors()


def test_a_recorded_player_stopped_by_a_shut_door_is_a_caught_contact(model):
    start = model.start(np.array([120.0, 200.0, 0.0]))
    actions = np.concatenate([[STAND], np.repeat([WALK], 60, axis=0)])
    poses = np.concatenate([[start.pose], model.rollout(start, actions[1:])])  # the "engine" is the model itself
    contacts, caught = wall_contacts(model, poses, actions)
    assert contacts >= 1 and caught == contacts


def test_door_cells_cover_where_the_players_box_would_overlap_the_door(model):
    cells = model.walkable.doors == 0
    assert model.walkable.door_at(np.array([194.0, 200.0])) == 0  # 6 units before the face: the box overlaps
    assert model.walkable.door_at(np.array([178.0, 200.0])) == -1  # 22 units: it does not
    assert cells.any() and (cells & ~model.walkable.grid).sum() < cells.sum()


def test_doors_build_from_no_specs_is_empty():
    walkable = fit(door()).walkable
    _, doors = Doors.build([], walkable, 2)
    assert len(doors) == 0


def test_holding_use_uses_once(model):
    state = walk(model, model.start(np.array([170.0, 200.0, 0.0])), USE, 30)  # Doom: USE acts when it goes down
    assert not model.doors.closed(state.doors).any()


def remote_door(switch: bool) -> DoorSpec:
    """The same door, opened only from elsewhere: a switch on a pillar face at x = 100 (USE facing -x from x < 164),
    or a walk-over line across the room at x = 150."""
    outline = rectangle(200, 0, 216, 400)
    line = np.array([[100.0, 150.0, 100.0, 250.0]]) if switch else np.array([[150.0, 0.0, 150.0, 400.0]])
    return DoorSpec(outline, np.zeros((0, 4)), top=92, speed=8, stays_open=False,
                    switches=line if switch else np.zeros((0, 4)), walk_lines=np.zeros((0, 4)) if switch else line)


def test_a_switch_opens_a_door_elsewhere_and_use_on_the_door_does_not():
    model = fit(remote_door(switch=True))
    at_door = walk(model, model.step(model.start(np.array([170.0, 200.0, 0.0])), USE), STAND, 5)
    assert model.doors.closed(at_door.doors).all()  # its face is no trigger
    switched = walk(model, model.step(model.start(np.array([130.0, 200.0, 180.0])), USE), STAND, 10)
    assert not model.doors.closed(switched.doors).any()
    # a switch starts a shut door; one already moving is left alone (Doom's EV_DoDoor), where USE on a door's own
    # face would send it back down
    again = model.step(switched, USE)
    assert again.doors[0][1] in (1, 0) and not model.doors.closed(again.doors).any()


def test_walking_over_a_line_opens_its_door_and_the_player_walks_through():
    model = fit(remote_door(switch=False))
    state = walk(model, model.start(np.array([120.0, 200.0, 0.0])), WALK, 60)
    assert state.x > 260  # crossed x = 150, the door rose before the player got to it
    stopped = walk(model, model.start(np.array([160.0, 200.0, 0.0])), WALK, 60)  # starts past the line
    assert stopped.x < 200 and model.doors.closed(stopped.doors).all()


def test_remote_doors_survive_save_and_load():
    model = fit(remote_door(switch=False))
    loaded = MovementModel.from_tensors(model.to_tensors(), CONTROLS)
    start = model.start(np.array([120.0, 200.0, 0.0]))
    actions = np.repeat([WALK], 60, axis=0)
    assert model.rollout(start, actions).tobytes() == loaded.rollout(loaded.start(start.pose), actions).tobytes()
