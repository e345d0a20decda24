"""The scripted explorer: seeded, persistent, turning a lot (both ways), unsticking itself, valid actions."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.config import ConfigError, from_dict
from worldsim.data.policies import ExploreConfig, ExplorePolicy

FRAME = np.zeros((12, 16, 3), dtype=np.uint8)


def walk(policy: ExplorePolicy, steps: int, seed: int = 0, moving: bool = True) -> np.ndarray:
    """Actions of a policy whose pose follows a simple open-field walk (or never moves: a wall everywhere)."""
    policy.reset(seed)
    pose = np.zeros(3, dtype=np.float32)
    actions = []
    for _ in range(steps):
        action = policy.act(FRAME, pose)
        actions.append(action)
        if moving:
            pose = pose + np.array([action[0] * 10, action[1] * 8, -action[2] * 4], dtype=np.float32)
    return np.array(actions)


def test_same_seed_same_actions_different_seed_different(camera):
    a = walk(ExplorePolicy(camera), 300, seed=1)
    b = walk(ExplorePolicy(camera), 300, seed=1)
    c = walk(ExplorePolicy(camera), 300, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_camera_actions_are_smooth_analog_and_in_range(camera):
    actions = walk(ExplorePolicy(camera), 3000)
    assert actions.shape == (3000, 4) and actions.dtype == np.float32
    assert actions[:, :3].min() >= -1 and actions[:, :3].max() <= 1
    assert set(np.unique(actions[:, 3])) <= {0.0, 1.0}
    assert len(np.unique(np.round(actions[:, 2], 2))) > 100  # many magnitudes, not just +-1
    # smooth: frame-to-frame changes are small compared with the range covered
    assert np.median(np.abs(np.diff(actions[:, 2]))) < 0.05


def test_camera_yaw_coverage_both_ways_and_pure_turns(camera):
    actions = walk(ExplorePolicy(camera), 5000)
    yaw, forward, strafe = actions[:, 2], actions[:, 0], actions[:, 1]
    right, left = (yaw > 0.3).mean(), (yaw < -0.3).mean()
    assert right > 0.1 and left > 0.1 and abs(right - left) < 0.1  # frequent, strong and unbiased
    pure_turns = (np.abs(yaw) > 0.3) & (np.abs(forward) < 0.05) & (np.abs(strafe) < 0.05)
    assert pure_turns.mean() > 0.05  # turning in place: the model must learn that yaw alone rotates the view
    assert (forward > 0.3).mean() > 0.3 and (forward < -0.2).mean() > 0.01  # forward bias, some backing up
    assert (np.abs(strafe) > 0.3).mean() > 0.03
    still = (np.abs(actions[:, :3]) < 0.05).all(axis=1)
    assert 0.02 < still.mean() < 0.3  # occasional stops
    assert 0.005 < actions[:, 3].mean() < 0.1  # USE now and then


def test_keys_actions_are_persistent_multi_hot(keys):
    actions = walk(ExplorePolicy(keys), 3000)
    names = keys.control_names
    assert actions.shape == (3000, len(names))
    assert set(np.unique(actions)) <= {0.0, 1.0}
    col = {n: actions[:, names.index(n)] for n in names}
    for a, b in (("forward", "back"), ("turn_left", "turn_right"), ("strafe_left", "strafe_right")):
        assert not np.any((col[a] == 1) & (col[b] == 1))
    for name in ("forward", "turn_left", "turn_right", "strafe_left", "strafe_right", "back"):
        assert col[name].mean() > 0.01, name
    presses = np.flatnonzero(np.diff(col["forward"]) == 1)
    held = col["forward"].sum() / max(len(presses), 1)
    assert held > 4  # keys are held for several frames, like a person
    assert ((col["forward"] == 1) & ((col["turn_left"] == 1) | (col["turn_right"] == 1))).mean() > 0.05


def test_stuck_explorer_presses_use_then_turns_away(camera):
    config = ExploreConfig(intent_weights={"walk": 1.0}, use_probability=0.0, hold_min=200, hold_max=200)
    actions = walk(ExplorePolicy(camera, config), 40, moving=False)
    uses = np.flatnonzero(actions[:, 3] == 1)
    assert len(uses) >= 1
    turning = np.flatnonzero(np.abs(actions[:, 2]) > 0.5)
    assert len(turning) > 0 and turning[0] > uses[0]  # first USE (a door?), then turn away
    assert abs(actions[turning[0] + 5, 0]) < 0.3  # turning in place, no longer pushing forward


def test_config_validation():
    with pytest.raises(ConfigError, match="intent_weights.*allowed: walk"):
        from_dict(ExploreConfig, {"intent_weights": {"run": 1.0}})
    with pytest.raises(ConfigError, match="hold_min"):
        from_dict(ExploreConfig, {"hold_min": 10, "hold_max": 5})
    with pytest.raises(ConfigError, match="ease.*out of range"):
        from_dict(ExploreConfig, {"ease": 0.0})
