"""One contract, every backend: reset / step / snapshot / restore behave as the session promises, the same inputs
give the same frames, outputs are finite, and each backend agrees with torch eager float32 within its precision."""

import numpy as np
import pytest
import torch

from worldsim.backends import BACKEND_ENV, BackendConfig, BackendUnavailable, parse_backend
from worldsim.checkpoint import load_checkpoint
from worldsim.errors import WorldsimError
from worldsim.input.state import ControllerState
from worldsim.runtime.session import WorldSession

# (backend, dtype, largest pixel difference from eager float32 over the rollout)
BACKENDS = [
    ("eager", torch.float32, 0),
    ("eager", torch.bfloat16, None),  # bf16 rounds: only the contract, no agreement bound
    ("compile", torch.float32, 2),
    ("onnx", torch.float32, 2),
    ("onnx+int8", torch.float32, None),
]
FRAMES = 12  # the tiny preset has window 4 + 1 sink: the ring wraps three times and the sink is read
WALK = ControllerState(keys=frozenset({"w", "right"}))  # walking while turning: the recycled frame is reprojected
TURN = ControllerState(keys=frozenset({"a"}))


@pytest.fixture(scope="module")
def turning_checkpoint(tmp_path_factory):
    """The tiny world with yaw reprojection on: the one per-frame step outside the network every backend shares."""
    from worldsim.testing import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "turning", yaw_reprojection=[2, 4.0, 90.0])


def roll(session, frames, state=WALK):
    condition = session.scheme.encode(state, session.grid)
    return np.stack([session.step(condition) for _ in range(frames)])


@pytest.fixture(scope="module")
def reference_frames(turning_checkpoint):
    session = WorldSession(load_checkpoint(turning_checkpoint), backend="eager")
    session.reset()
    return roll(session, FRAMES)


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda b: f"{b[0]}-{str(b[1]).removeprefix('torch.')}")
def backend_session(request, turning_checkpoint):
    name, dtype, _ = request.param
    try:
        session = WorldSession(load_checkpoint(turning_checkpoint), backend=name, dtype=dtype)
    except BackendUnavailable as err:  # e.g. torch.compile without a working C++ compiler
        pytest.skip(str(err))
    yield session, request.param
    session.backend.close()


def test_reset_and_step_give_finite_frames_of_the_right_shape(backend_session):
    session, _ = backend_session
    h, w = session.image_size
    first = session.reset()
    assert first.shape == (h, w, 3) and first.dtype == np.uint8
    frames = roll(session, FRAMES)
    assert frames.shape == (FRAMES, h, w, 3) and frames.dtype == np.uint8
    assert session.latent_is_finite() and session.frame_index == FRAMES
    assert torch.isfinite(session.backend.decode(session.latent).float()).all()


def test_same_inputs_give_the_same_frames(backend_session):
    session, _ = backend_session
    session.reset()
    a = roll(session, FRAMES)
    session.reset()
    b = roll(session, FRAMES)
    np.testing.assert_array_equal(a, b)


def test_snapshot_restore_replays_and_branches(backend_session):
    session, _ = backend_session
    session.reset()
    roll(session, 6)
    snap = session.snapshot()
    a = roll(session, 5)
    session.restore(snap)
    b = roll(session, 5)
    session.restore(snap)  # a snapshot stays valid: branch from it with other inputs
    c = roll(session, 5, TURN)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert session.frame_index == snap.frame + 5


def test_agrees_with_eager_float32(backend_session, reference_frames):
    session, (_, _, max_diff) = backend_session
    session.reset()
    frames = roll(session, FRAMES)
    difference = np.abs(frames.astype(int) - reference_frames.astype(int))
    if max_diff is not None:
        assert difference.max() <= max_diff
    else:  # reduced precision: close on average, not bit-equal
        assert difference.mean() < 8


def test_backend_config_refuses_bad_names():
    with pytest.raises(WorldsimError, match="unknown backend"):
        parse_backend("tensorrt")
    with pytest.raises(WorldsimError, match="needs the onnx backend"):
        BackendConfig(name="eager", quantize="int8")
    assert parse_backend("onnx+int8") == BackendConfig(name="onnx", quantize="int8")


def test_environment_picks_the_backend(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    session = WorldSession(load_checkpoint(tiny_checkpoint))
    assert session.backend.name == "onnx"
    session.backend.close()


def test_onnx_refuses_bfloat16_on_cpu(tiny_checkpoint):
    with pytest.raises(WorldsimError, match="float32 on CPU"):
        WorldSession(load_checkpoint(tiny_checkpoint), backend="onnx", dtype=torch.bfloat16)


def test_multistep_sampling_keeps_one_cache_entry_per_frame(backend_session, turning_checkpoint):
    _, (name, dtype, _) = backend_session
    session = WorldSession(load_checkpoint(turning_checkpoint), backend=name, dtype=dtype, steps=4)
    session.reset()
    frames = roll(session, 6)
    assert session.cache.position == 6 and session.latent_is_finite()
    assert frames.shape[0] == 6
    session.backend.close()
