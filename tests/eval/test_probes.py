"""Behaviour probes: their programs, the figures they judge by, and a tiny world end to end in ViZDoom."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.conditioning import load_scheme
from worldsim.eval.probes import (
    PROBES,
    frame_change,
    horizontal_shift,
    judge,
    probe_actions,
)


def _scene(w: int = 96, h: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    row = rng.integers(0, 255, (1, w, 3))
    return np.broadcast_to(row, (h, w, 3)).astype(np.uint8)


def test_probes_press_keys_any_scheme_binds_and_start_with_a_no_op():
    camera, keys = load_scheme("camera"), load_scheme("keys")
    actions = probe_actions(PROBES["turn_in_place"], camera)
    assert actions.shape == (PROBES["turn_in_place"].frames + 1, len(camera.control_names))
    assert not actions[0].any() and (actions[1:, camera.control_names.index("yaw")] == 1.0).all()
    turning = probe_actions(PROBES["turn_in_place"], keys)
    assert (turning[1:, keys.control_names.index("turn_right")] == 1).all()


def test_horizontal_shift_finds_a_known_shift():
    scene = _scene(w=128)
    frames = np.stack([scene[:, 10:106], scene[:, 13:109]])  # the view moved 3 pixels to the right
    assert horizontal_shift(frames)[0] == pytest.approx(-3, abs=0.25)


def test_still_world_passes_and_churning_world_fails_the_still_probe():
    still = np.broadcast_to(_scene(), (20, 32, 96, 3))
    churn = np.stack([_scene(seed=i) for i in range(20)])
    poses = np.zeros((20, 3))
    assert judge("stand_still", still, poses, still)["passed"]
    result = judge("stand_still", still, poses, churn)
    assert not result["passed"] and result["model"]["mean_change"] > 10
    assert frame_change(still).max() == 0


def test_wall_probe_judges_only_frames_where_the_engine_is_blocked():
    n = PROBES["walk_into_wall"].frames + 1
    poses = np.zeros((n, 3))
    turn = PROBES["walk_into_wall"].segments[0][0]
    poses[: turn + 5, 0] = np.arange(turn + 5) * 10.0  # walking ...
    poses[turn + 5:, 0] = poses[turn + 4, 0]  # ... then stopped by the wall
    engine = np.stack([_scene(seed=min(i, turn + 4)) for i in range(n)])  # frame k + 1 follows pose k + 1
    result = judge("walk_into_wall", engine, poses, engine)
    assert result["blocked_frames"] == n - 1 - (turn + 4) and result["passed"]
    churn = np.stack([_scene(seed=i) for i in range(n)])
    assert not judge("walk_into_wall", engine, poses, churn)["passed"]


def test_turn_probe_rewards_a_world_that_comes_back_after_a_full_turn():
    full_turn = 60  # frames: the engine's poses say where the turns are, whatever the rate
    n = 2 * full_turn + 1
    returning = np.stack([_scene(seed=i % full_turn) for i in range(n)])
    forgetting = np.stack([_scene(seed=1000 + i) for i in range(n)])
    poses = np.zeros((n, 3))
    poses[:, 2] = (-6.0 * np.arange(n)) % 360  # a right turn lowers the heading, wrapping at 0
    result = judge("turn_in_place", returning, poses, returning)
    assert result["frames_at_degrees"] == {180: 30, 360: 60, 720: 120} and result["passed"]
    assert not judge("turn_in_place", returning, poses, forgetting)["passed"]
    assert not judge("turn_in_place", returning, np.zeros((n, 3)), returning)["passed"]  # never turned: no verdict


def test_loop_probe_rewards_a_world_that_shows_the_start_again_on_return():
    n = PROBES["walk_loop"].frames + 1
    far = PROBES["walk_loop"].segments[0][0]
    poses = np.zeros((n, 3))
    poses[:far + 1, 0] = np.arange(far + 1) * 10.0  # out and back
    poses[far + 1:, 0] = np.maximum(0.0, far * 10.0 - np.arange(1, n - far) * 10.0)
    returning = np.stack([_scene(seed=0 if i in (0, n - 1) else i) for i in range(n)])
    forgetting = np.stack([_scene(seed=1000 + i) for i in range(n)])
    result = judge("walk_loop", returning, poses, returning)
    assert result["passed"] and result["far_distance"] == far * 10.0 and result["return_distance"] == 0.0
    assert not judge("walk_loop", returning, poses, forgetting)["passed"]


def test_probes_run_on_a_tiny_world_in_the_engine(tiny_checkpoint):
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.checkpoint import load_checkpoint
    from worldsim.eval.probes import run_probes
    from worldsim.runtime.session import WorldSession

    session = WorldSession(load_checkpoint(tiny_checkpoint))
    results = run_probes(session, names=("strafe",))
    engine, model = results["_frames"]["strafe"]
    assert engine.shape == model.shape and engine.shape[1:3] == tuple(session.image_size)
    assert results["strafe"]["engine"]["mean_abs_shift"] > 0 and isinstance(results["strafe"]["passed"], bool)
