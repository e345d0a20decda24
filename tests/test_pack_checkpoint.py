"""scripts/pack_checkpoint.py: a world keeps its movement and memory when packed, and a world trained elsewhere can
be given another checkpoint's (what a GPU world gets here: the device sends back at most eight files)."""

import subprocess
import sys
from pathlib import Path

from worldsim.checkpoint import load_checkpoint
from worldsim.testing import random_checkpoint, random_world_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pack_checkpoint.py"


def pack(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_a_world_is_packed_with_its_movement_and_memory_or_given_another_ones(tmp_path):
    pulled = random_world_checkpoint(tmp_path / "pulled", condition=False, pull=0.4, write_back=16)
    result = pack(pulled, tmp_path / "packed")
    assert result.returncode == 0, result.stderr
    packed = load_checkpoint(tmp_path / "packed")
    assert packed.movement is not None and len(packed.memory) == len(load_checkpoint(pulled).memory)
    assert not packed.config.sampling.hold_still

    plain = random_checkpoint(tmp_path / "plain")  # no movement, no memory: as a GPU world comes back
    result = pack(plain, tmp_path / "anchored", "--world-from", pulled, "--hold-still")
    assert result.returncode == 0, result.stderr
    anchored = load_checkpoint(tmp_path / "anchored")
    assert anchored.memory is not None and anchored.movement is not None
    assert anchored.config.memory.pull == 0.4 and anchored.config.memory.write_back == 16
    assert anchored.config.sampling.hold_still


def test_a_memory_the_generator_cannot_take_is_refused_and_nothing_is_written(tmp_path):
    anchored = random_world_checkpoint(tmp_path / "anchored")  # its generator takes the keyframe as input
    result = pack(random_checkpoint(tmp_path / "plain"), tmp_path / "out", "--world-from", anchored)
    assert result.returncode == 2 and "condition sizes do not match" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
