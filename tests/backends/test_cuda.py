"""CUDA paths: graphs, the decoder stream, onnxruntime-gpu, and the paper-scale preset. Marked `cuda`: skipped (and
deselected by default) on machines without a GPU; never run on the CPU-only machine this was written on."""

import json

import numpy as np
import pytest
import torch

from worldsim.backends import BackendConfig
from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.input.state import ControllerState
from worldsim.runtime.session import WorldSession

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
WALK = ControllerState(keys=frozenset({"w"}))


def frames(session, n=16):
    session.reset()
    condition = session.scheme.encode(WALK, session.grid)
    return np.stack([session.step(condition) for _ in range(n)])


@pytest.mark.parametrize("name", ["eager", "compile"])
def test_cuda_graphs_give_the_frames_of_the_uncaptured_step(tiny_checkpoint, name):
    graphed = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", dtype=torch.bfloat16,
                           backend=BackendConfig(name=name, cuda_graphs=True))
    plain = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", dtype=torch.bfloat16,
                         backend=BackendConfig(name=name, cuda_graphs=False))
    a, b = frames(graphed), frames(plain)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    snap = graphed.snapshot()
    x = frames(graphed, 4)
    graphed.restore(snap)
    np.testing.assert_array_equal(x, frames(graphed, 4))


def test_overlapped_decode_shows_each_frame_one_step_late(tiny_checkpoint):
    session = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", dtype=torch.bfloat16,
                           backend=BackendConfig(name="eager", overlap_decode=True))
    reference = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", dtype=torch.bfloat16,
                             backend=BackendConfig(name="eager", overlap_decode=False))
    late, on_time = frames(session, 8), frames(reference, 8)
    np.testing.assert_array_equal(late[2:], on_time[1:-1])


def test_onnxruntime_gpu_matches_torch(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    onnx = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", backend="onnx")
    torch_side = WorldSession(load_checkpoint(tiny_checkpoint), device="cuda", backend="eager")
    assert np.abs(frames(onnx).astype(int) - frames(torch_side).astype(int)).max() <= 2


def test_paper_scale_preset_runs_on_one_gpu(tmp_path):
    out = tmp_path / "paper.json"
    assert main(["bench", "--preset", "paper-scale", "--device", "cuda", "--frames", "24", "--backend",
                 "eager/bfloat16", "--threads", "1", "--skip", "recompute,teacher,quality", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["world"]["generator"]["tokens_per_frame"] == 1196
    assert report["world"]["image_size"] == [416, 736]
    assert report["backends"]["eager/bfloat16"]["fps"] > 0
