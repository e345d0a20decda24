"""The stages end to end on the smoke recipe: checkpoints, resume, NaN guard, data parallelism."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from worldsim.config import replace
from worldsim.training import stages
from worldsim.training.stages import train
from worldsim.training.trainer import TrainingError


def with_steps(recipe, stage, steps):
    return replace(recipe, **{stage: replace(getattr(recipe, stage), steps=steps)})


@pytest.fixture(scope="module")
def smoke_run(smoke_recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    paths = train(smoke_recipe, "all", out)
    return out, paths


def test_smoke_recipe_runs_every_stage(smoke_run):
    out, paths = smoke_run
    assert [p.parent.name for p in paths] == ["vae", "diffusion", "consistency", "unroll", "adversarial",
                                                  "long"]
    for p in paths:
        assert (p / "config.yaml").exists() and (p / "generator.safetensors").exists()
    assert (out / "diffusion" / "log.jsonl").read_text().count("\n") >= 3
    assert any((out / "diffusion" / "samples").glob("*.mp4"))
    assert any((out / "vae" / "samples").glob("*.png"))


def test_smoke_world_reprojects_by_the_scheme_yaw(smoke_run):
    from worldsim.checkpoint import load_checkpoint

    out, paths = smoke_run
    config = load_checkpoint(paths[-1]).config
    assert config.generator.yaw_reprojection == (2.0, config.encoding["yaw_speed"], config.encoding["fov"])


def test_yaw_reprojection_needs_a_scheme_with_a_yaw(smoke_recipe):
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.config import ConfigError, replace
    from worldsim.training.stages import model_configs

    with pytest.raises(ConfigError, match="model.yaw_reprojection.*keys.*camera scheme"):
        model_configs(smoke_recipe, load_scheme("keys"))
    plain = replace(smoke_recipe, model=replace(smoke_recipe.model, yaw_reprojection=False))
    assert model_configs(plain, load_scheme("keys"))[0].yaw_reprojection == ()


def test_smoke_checkpoint_plays_headless(smoke_run, tmp_path):
    from worldsim.cli import main

    out, _ = smoke_run
    stats = tmp_path / "stats.json"
    assert main(["play", "--checkpoint", str(out / "long" / "checkpoint"), "--headless", "--frames", "8",
                 "--input", "scripted", "--stats", str(stats)]) == 0
    assert stats.exists()


def test_existing_stage_is_not_overwritten_without_resume(smoke_run, smoke_recipe):
    out, _ = smoke_run
    with pytest.raises(TrainingError, match="--resume"):
        train(smoke_recipe, "diffusion", out)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(smoke_run, smoke_recipe, tmp_path):
    out, _ = smoke_run
    for name in ("straight", "resumed"):
        (tmp_path / name).mkdir()
        shutil.copytree(out / "vae", tmp_path / name / "vae")
    recipe = replace(with_steps(smoke_recipe, "diffusion", 4),
                     diffusion=replace(smoke_recipe.diffusion, steps=4, save_every=2))
    train(recipe, "diffusion", tmp_path / "straight")
    train(with_steps(recipe, "diffusion", 2), "diffusion", tmp_path / "resumed")
    train(recipe, "diffusion", tmp_path / "resumed", resume=True)
    a = load_file(str(tmp_path / "straight" / "diffusion" / "checkpoint" / "generator.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "diffusion" / "checkpoint" / "generator.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(smoke_run, smoke_recipe, tmp_path, monkeypatch):
    out, _ = smoke_run
    shutil.copytree(out / "vae", tmp_path / "vae")
    real_loss = stages.diffusion_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        loss, stats = real_loss(*args, **kwargs)
        if calls["n"] == 3:
            return loss * float("nan"), {**stats, "loss": float("nan")}
        return loss, stats

    monkeypatch.setattr(stages, "diffusion_loss", flaky)
    recipe = replace(smoke_recipe, diffusion=replace(smoke_recipe.diffusion, steps=5, save_every=2))
    with pytest.raises(TrainingError, match="loss became nan at step 2.*step 2"):
        train(recipe, "diffusion", tmp_path)
    meta = (tmp_path / "diffusion" / "checkpoint" / "trainer.json").read_text()
    assert '"step": 2' in meta


def test_two_processes_with_gloo_end_with_identical_weights(smoke_run, smoke_recipe, tmp_path):
    out, _ = smoke_run
    shutil.copytree(out / "vae", tmp_path / "vae")
    recipe_file = tmp_path / "recipe.yaml"
    import yaml

    from worldsim.config import to_dict

    recipe_file.write_text(yaml.safe_dump(to_dict(replace(smoke_recipe, threads=1))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "worldsim", "train", "--recipe", str(recipe_file), "--stage", "diffusion", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "diffusion/generator: weights identical on all 2 ranks" in result.stdout
