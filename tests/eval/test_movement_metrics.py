"""The learned movement judged against the engine's poses: errors by horizon, wall contacts, leaving the map."""

import numpy as np
import pytest

from worldsim.eval.movement import movement_metrics, wall_contacts
from worldsim.testing import toy_track
from worldsim.world.movement import MovementModel, PlayerState
from worldsim.world.walkable import WalkableMap

CONTROLS = ("forward", "strafe", "yaw", "use")


@pytest.fixture(scope="module")
def model():
    return MovementModel.fit([toy_track(seed=s, steps=600) for s in range(6)], CONTROLS)


def test_errors_by_horizon_and_no_rollout_leaves_the_map(model):
    tracks = []
    for seed in (50, 51):
        poses, actions = toy_track(seed=seed, steps=400)
        tracked = model.rollout(PlayerState.from_pose(poses[0]), actions[1:])
        tracks.append((poses, actions, tracked))
    figures = movement_metrics(model, tracks, fps=17.5)
    assert set(figures["position_error"]) == {"1s", "10s"}  # 400 frames: shorter than a minute
    assert figures["position_error"]["1s"]["median"] < 5.0
    assert figures["left_walkable"] == 0.0
    assert 0.0 <= figures["heading_error_10s"] <= 180.0
    per_episode = [np.linalg.norm(tracked[:, :2] - poses[1:, :2], axis=1).mean() for poses, _, tracked in tracks]
    assert figures["mean_error"]["mean"] == pytest.approx(np.mean(per_episode))
    assert 0.0 < figures["mean_error"]["frames_near"] <= 1.0


def test_a_wall_contact_is_caught_only_where_the_walkable_map_knows_the_wall():
    # the engine walks east until its wall (x = 396) stops the player
    actions = np.zeros((200, 4), np.float32)
    actions[1:, 0] = 1.0
    poses = np.zeros((200, 3))
    poses[0] = (200.0, 200.0, 0.0)
    velocity = 0.0
    for t in range(1, 200):
        velocity = 0.8 * velocity + 1.5
        poses[t] = (min(poses[t - 1, 0] + velocity, 396.0), 200.0, 0.0)
        velocity = poses[t, 0] - poses[t - 1, 0]
    motion = np.array([0.8, 0.0, 0.0, 1.5, 1.5])

    def room(east: float) -> WalkableMap:
        xs, ys = np.meshgrid(np.arange(0.0, east, 4.0), np.arange(0.0, 400.0, 4.0))
        return WalkableMap.fit(np.stack([xs.ravel(), ys.ravel()], 1), cell=8.0)

    knows = MovementModel(motion, -4.0, room(398.0), CONTROLS)
    assert wall_contacts(knows, poses, actions) == (1, 1)
    unaware = MovementModel(motion, -4.0, room(800.0), CONTROLS)  # e.g. a door the recordings walked through
    assert wall_contacts(unaware, poses, actions) == (1, 0)
