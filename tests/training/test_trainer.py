"""The shared training loop on tiny random models: what a kill while saving leaves is repaired at the next start."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from worldsim.checkpoint import build_models
from worldsim.testing import random_config
from worldsim.training.trainer import Trainer, TrainingError


def make_trainer(out: Path, steps: int, resume: bool) -> Trainer:
    """A VAE-only stage over the tiny models, saving every 2 steps."""
    torch.manual_seed(0)
    config = random_config()
    generator, vae = build_models(config)
    optimizer = torch.optim.SGD(vae.parameters(), lr=1e-3)
    return Trainer("vae", Path(out), steps, log_every=1, save_every=2, sample_every=0, resume=resume,
                   modules={"vae": vae, "generator": generator}, optimizers={"vae": optimizer},
                   checkpoint_config=lambda step: config, generator=generator, vae=vae, start_frames=None,
                   rng=torch.Generator().manual_seed(0))


def run(trainer: Trainer) -> Path:
    vae, optimizer = trainer.modules["vae"], trainer.optimizers["vae"]

    def step(i: int) -> dict[str, float]:
        optimizer.zero_grad()
        loss = sum(p.float().pow(2).mean() for p in vae.parameters())
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    return trainer.run(step)


def test_a_kill_between_the_swap_renames_resumes_from_the_surviving_checkpoint(tmp_path, capsys):
    """SIGKILL after `swap_in_directory` moved the checkpoint aside and before it moved the new one in."""
    script = textwrap.dedent(f"""
        import os, signal
        from test_trainer import make_trainer, run
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if str(dst).endswith(".checkpoint.old"):  # the second save (step 4), half swapped
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
        run(make_trainer({str(tmp_path)!r}, steps=6, resume=False))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / ".checkpoint.old").is_dir()

    trainer = make_trainer(tmp_path, steps=6, resume=True)
    assert trainer.step == 2  # not 0: the previous checkpoint was put back
    assert "restored the checkpoint before it (step 2)" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the half-swapped copy too
    run(trainer)
    assert trainer.step == 6 and (tmp_path / "checkpoint" / "trainer.json").read_text().count('"step": 6') == 1


def test_leftovers_of_killed_saves_are_removed_at_the_next_start(tmp_path):
    run(make_trainer(tmp_path, steps=2, resume=False))
    (tmp_path / ".checkpoint.k1ll3d0x").mkdir()  # a save killed while writing its temporary copy
    (tmp_path / ".checkpoint.k1ll3d0x" / "generator.safetensors").write_bytes(b"half")
    (tmp_path / ".checkpoint.old").mkdir()  # a save killed while removing the copy it replaced
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / ".vae_0000002.tmp.png").write_bytes(b"half")
    trainer = make_trainer(tmp_path, steps=4, resume=True)
    assert trainer.step == 2
    assert not list(tmp_path.glob(".checkpoint.*")) and not list((tmp_path / "samples").iterdir())



@pytest.mark.parametrize("damage", ["truncated weights", "trainer.json", "wrong shapes", "missing optimiser"])
def test_a_damaged_checkpoint_on_resume_is_one_clear_error(tmp_path, damage):
    run(make_trainer(tmp_path, steps=2, resume=False))
    checkpoint = tmp_path / "checkpoint"
    if damage == "truncated weights":
        weights = checkpoint / "vae.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "trainer.json":
        (checkpoint / "trainer.json").write_text('["not", "the settings"]')
    elif damage == "wrong shapes":
        from safetensors.torch import save_file

        save_file({"encoder.weight": torch.zeros(3)}, str(checkpoint / "vae.safetensors"))
    else:
        (checkpoint / "optimizer_vae.safetensors").unlink()
    with pytest.raises(TrainingError, match="is damaged .*; restore it or train into a new --out") as err:
        make_trainer(tmp_path, steps=4, resume=True)
    assert str(checkpoint) in str(err.value)
