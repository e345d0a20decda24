"""The ONNX export: step by step equal to torch (velocity and every cache tensor) over a rollout longer than the
window, so the ring wraps and the sink frame is read; the CLI; refusals."""

import json

import pytest
import torch

from worldsim.backends import BackendConfig
from worldsim.backends.export import (
    LATENT_TOLERANCE,
    MANIFEST_FILE,
    STEP_FILE,
    export_checkpoint,
    read_manifest,
    verify_export,
)
from worldsim.backends.onnx_runtime import OnnxBackend
from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.errors import WorldsimError
from worldsim.testing import random_checkpoint

STEP_TOLERANCE = 1e-4  # float32, per step: float rounding only


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    export_checkpoint(load_checkpoint(tiny_checkpoint), out, quantize="int8")
    return out


def test_manifest_records_the_verified_agreement(exported, tiny_checkpoint):
    manifest = json.loads((exported / MANIFEST_FILE).read_text())
    verified = manifest["verified"]
    assert verified["frames"] > verified["window"] + verified["sink"]  # the ring wrapped, the sink was read
    assert verified["within_tolerance"] and verified["max_abs_latent"] <= LATENT_TOLERANCE
    assert set(manifest["files"]) == {"step", "decoder", "step_int8"}
    assert read_manifest(exported, load_checkpoint(tiny_checkpoint))["checkpoint_id"] == manifest["checkpoint_id"]


@torch.inference_mode()
def test_every_step_and_cache_tensor_matches_torch(exported, tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)
    g = checkpoint.generator.eval()
    c = g.config
    backend = OnnxBackend(checkpoint, BackendConfig(name="onnx", onnx_dir=str(exported)), torch.device("cpu"),
                          torch.float32)
    torch_cache, onnx_cache = g.new_cache(), backend.new_cache()
    gen = torch.Generator().manual_seed(3)
    frames = c.window + c.sink + 6
    for _ in range(frames):
        noisy, recycled = (torch.randn(1, c.latent_channels, *c.latent_size, generator=gen) for _ in range(2))
        tokens = torch.randn(1, c.token_cond_channels, *c.grid, generator=gen)
        frame = torch.randn(1, c.frame_cond_dim, generator=gen)
        t, aug = torch.ones(1), torch.zeros(1)
        expected = g.step(noisy, recycled, tokens, frame, t, aug, torch_cache)
        got = backend.step(noisy, recycled, tokens, frame, t, aug, onnx_cache)
        torch.testing.assert_close(got, expected, atol=STEP_TOLERANCE, rtol=STEP_TOLERANCE)
        for ours, theirs in ((onnx_cache.v, torch_cache.v), (onnx_cache.sink_k, torch_cache.sink_k)):
            torch.testing.assert_close(torch.stack(ours), theirs, atol=STEP_TOLERANCE, rtol=STEP_TOLERANCE)
        ring = slice(c.sink * c.tokens, None)  # the sink seats hold per-step re-timed keys: compare the ring
        torch.testing.assert_close(torch.stack(onnx_cache.k)[..., ring, :], torch_cache.k[..., ring, :],
                                   atol=STEP_TOLERANCE, rtol=STEP_TOLERANCE)
    assert onnx_cache.position == torch_cache.position == frames
    backend.close()


def test_int8_export_runs_and_stays_close(exported, tiny_checkpoint):
    result = verify_export(load_checkpoint(tiny_checkpoint), exported, quantize="int8")
    assert result["max_abs_frame"] < 0.5  # the quality cost itself is measured by worldsim bench (PSNR)


def test_export_cli_writes_and_refuses_to_overwrite(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert (out / STEP_FILE).exists()
    assert "max |latent diff|" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_an_export_of_another_checkpoint_is_refused(exported, tmp_path):
    other = load_checkpoint(random_checkpoint(tmp_path / "other", scheme="camera", window=3))
    with pytest.raises(WorldsimError, match="another shape"):
        read_manifest(exported, other)
    with pytest.raises(WorldsimError, match="not a worldsim ONNX export"):
        read_manifest(tmp_path, other)


def test_a_world_that_attends_to_its_keyframe_exports_and_agrees(tmp_path):
    from worldsim.testing import random_world_checkpoint

    checkpoint = load_checkpoint(random_world_checkpoint(tmp_path / "attend", attend=True))
    assert checkpoint.generator.config.memory_channels
    out = tmp_path / "onnx"
    export_checkpoint(checkpoint, out)  # verifies a rollout past the window against torch, or raises
    verified = json.loads((out / MANIFEST_FILE).read_text())["verified"]
    assert verified["within_tolerance"] and verified["frames"] > verified["window"] + verified["sink"]
