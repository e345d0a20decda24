"""A short kiosk soak (benchmarks/soak.py): random play, pads unplugged and plugged back, NaNs injected into the
latent and the KV cache; every fault recovered, no NaN frame shown, memory flat. The full run is 100,000 frames:
`python benchmarks/soak.py`."""

import importlib.util
from pathlib import Path

import pytest
import torch

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
FRAMES = 3000


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """The tiny model's ops are too small to split: a second thread only waits (and slows a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_soak(soak, tiny_checkpoint, tmp_path, one_thread):
    result = soak.run_soak(tiny_checkpoint, FRAMES, tmp_path / "logs", seed=1, fault_every=300, unplug_every=400)
    assert result["frames"] == FRAMES
    assert result["faults_injected"] == FRAMES // 300 - 1 or result["faults_injected"] == FRAMES // 300
    assert result["faults_recovered"] == result["faults_injected"] and result["nonfinite_frames_shown"] == 0
    assert result["gamepad_disconnects"] >= 3 and result["pads_opened"] == result["gamepad_reconnects"]
    # attract mode, players arriving, the session limit (the tiny world ships no degeneration detector)
    assert min(result["kiosk"][k] for k in ("attract", "player", "session_limit")) >= 1
    # a short run is noisier than the 100k-frame one (5%): here only gross growth is caught
    assert result["rss_growth_after_warmup"] < 0.10, result["rss_mib"]
    assert result["log_bytes"] < 3 * 200_000  # the rotating log stays bounded
