"""scripts/train_on_gpu.sh --dry-run: the GPU run's every phase on this CPU (record with 2 workers, train every stage
within a time budget, pack bf16 shards, evaluate the packed world), within what the GPU transfer brings back."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from worldsim.checkpoint import load_checkpoint

pytest.importorskip("vizdoom", reason="the dry run records its data with ViZDoom")
REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "train_on_gpu.sh"
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES = 8, 16 << 20, 60 << 20  # what comes back from the GPU machine's $OUT
pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHON=sys.executable, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_the_dry_run_makes_a_world_in_every_phase(tmp_path):
    out = tmp_path / "out"
    start = time.monotonic()
    result = script("--dry-run", "--out", str(out), "--work", str(tmp_path / "work"))
    took = time.monotonic() - start
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert took < 180, f"the dry run took {took:.0f} s"
    log = result.stdout
    for phase in ("record", "train", "pack", "eval"):
        assert f"{phase}: done in" in log, phase
    assert "--workers 2" in log and "cuda-tests, bench: skipped" in log

    # what comes back: the packed world and the report, within the transfer's limits
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= MAX_FILES and all(p.stat().st_size <= MAX_FILE_BYTES for p in files)
    assert sum(p.stat().st_size for p in files) <= MAX_TOTAL_BYTES
    assert all(len(p.relative_to(out).parts) <= 2 for p in files)
    world = out / "world"
    assert len(list(world.glob("generator-*-of-*.safetensors"))) == 2 and (world / "vae.safetensors").exists()
    checkpoint = load_checkpoint(world)
    assert checkpoint.config.stage == "long" and checkpoint.config.generator.dim == 128

    # every trained stage was ended by the time budget and logged it; the shipped VAE was the start
    work = tmp_path / "work" / "run"
    for stage in ("diffusion", "consistency", "adversarial", "long"):
        last = json.loads((work / stage / "log.jsonl").read_text().splitlines()[-1])
        assert last["stopped"] == "time budget" and last["step"] > 0, stage
    assert json.loads((work / "vae" / "checkpoint" / "trainer.json").read_text())["step"] == 0

    with tarfile.open(out / "report.tar.gz") as report:
        names = set(report.getnames())
    assert {"report/phases.log", "report/train.log", "report/train-diffusion.jsonl",
            "report/eval/metrics.json"} <= names
    assert any(name.startswith("report/samples/long/rollout_") for name in names)


def test_bad_arguments_and_a_machine_without_cuda(tmp_path):
    result = script("--bogus", timeout=30)
    assert result.returncode == 2 and "unknown argument '--bogus'" in result.stderr
    result = script(timeout=30)
    assert result.returncode == 2 and "set $OUT or pass --out DIR" in result.stderr
    pytest.importorskip("torch")
    import torch

    if not torch.cuda.is_available():
        result = script("--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), timeout=120)
        assert result.returncode == 1 and "no CUDA device here: run with --dry-run" in result.stdout
        assert (tmp_path / "out" / "report.tar.gz").exists()
