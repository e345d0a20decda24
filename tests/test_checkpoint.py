import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldsim import checkpoint
from worldsim.checkpoint import CheckpointError, load_checkpoint, read_weights
from worldsim.config import ConfigError


def copy(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def test_roundtrip(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.start_frames.dtype == torch.uint8 and ckpt.config.stage == "random"


def test_pickle_files_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


def test_truncated_weights(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    data = (path / "generator.safetensors").read_bytes()
    (path / "generator.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="generator.safetensors.*truncated"):
        load_checkpoint(path)


def test_wrong_shapes(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    weights = load_file(str(path / "generator.safetensors"))
    weights["patch_in.weight"] = torch.zeros(3, 3)
    save_file(weights, str(path / "generator.safetensors"))
    with pytest.raises(CheckpointError, match=r"'patch_in.weight' has shape \[3, 3\]"):
        load_checkpoint(path)


def test_config_that_does_not_match_the_weights(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    text = (path / "config.yaml").read_text().replace("depth: 2", "depth: 3")
    (path / "config.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="do not match config.yaml"):
        load_checkpoint(path)


def test_missing_files(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    (path / "vae.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing weights file"):
        load_checkpoint(path)
    (path / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="missing config.yaml"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


def test_bad_config_value(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    text = (path / "config.yaml").read_text().replace("window: 4", "window: -4")
    (path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match="'generator.window': out of range"):
        load_checkpoint(path)


def set_config(path, old, new):
    text = (path / "config.yaml").read_text()
    assert old in text
    (path / "config.yaml").write_text(text.replace(old, new))


def test_a_config_is_checked_against_the_weights_before_any_model_is_built(tiny_checkpoint, tmp_path, monkeypatch):
    """A config.yaml within every range (here dim 16384, depth 256: terabytes) is compared with the weights'
    headers on the meta device: nothing is allocated before the mismatch is found."""
    path = copy(tiny_checkpoint, tmp_path)
    set_config(path, "dim: 32", "dim: 16384")
    set_config(path, "depth: 2", "depth: 256")
    built = []
    real_build = checkpoint.build_models
    monkeypatch.setattr(checkpoint, "build_models",
                        lambda config: built.append(torch.empty(0).device.type) or real_build(config))
    with pytest.raises(CheckpointError, match="generator.safetensors: weights do not match config.yaml"):
        load_checkpoint(path)
    assert built == ["meta"]


def test_tables_computed_from_the_config_are_bounded(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_DERIVED_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"'generator': the generator would compute .* tables .* at most 0 MB"):
        load_checkpoint(copy(tiny_checkpoint, tmp_path))


@pytest.mark.parametrize("old,new,fragment", [
    ("steps: 1", "steps: 0", "'sampling.steps': out of range (got 0); allowed: 1 to 1000"),
    ("steps: 1", "steps: -3", "'sampling.steps': out of range (got -3)"),
    ("steps: 1", "steps: 1000000000", "'sampling.steps': out of range (got 1000000000); allowed: 1 to 1000"),
    ("shift: 1.0", "shift: -1.0", "'sampling.shift': out of range"),
    ("fps: 17.5", "fps: 0", "'fps': out of range (got 0.0); allowed: 0.1 to 1000.0"),
    ("fps: 17.5", "fps: -17.5", "'fps': out of range"),
    ("- 16\n  - 24", "- 16\n  - 8192", "'vae.image_size': out of range"),
])
def test_counts_and_rates_are_bounded(tiny_checkpoint, tmp_path, old, new, fragment):
    path = copy(tiny_checkpoint, tmp_path)
    set_config(path, old, new)
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert fragment in str(err.value)


@pytest.mark.parametrize("name", ["config.yaml", "generator.safetensors", "start_frames.safetensors"])
def test_special_files_in_a_checkpoint_are_refused(tiny_checkpoint, tmp_path, make_special, name):
    path = copy(tiny_checkpoint, tmp_path)
    make_special(path / name)
    with pytest.raises((CheckpointError, ConfigError), match=f"{name}.*is {make_special.kind}, not a regular file"):
        load_checkpoint(path)


def test_start_frames_are_checked_from_their_header(tiny_checkpoint, tmp_path):
    path = copy(tiny_checkpoint, tmp_path)
    save_file({"frames": torch.zeros(1, 8, 8, 3, dtype=torch.uint8)}, str(path / "start_frames.safetensors"))
    with pytest.raises(CheckpointError, match=r"start_frames.safetensors: expected 'frames' uint8 \(N, 16, 24, 3\)"):
        load_checkpoint(path)


def test_read_weights_names_a_damaged_file(tiny_checkpoint, tmp_path):
    """What `train --resume` needs to report a damaged training checkpoint in one line."""
    path = copy(tiny_checkpoint, tmp_path)
    data = (path / "vae.safetensors").read_bytes()
    (path / "vae.safetensors").write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="vae.safetensors: not a readable safetensors file"):
        read_weights(path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="missing weights file"):
        read_weights(path / "nope.safetensors")


# ---- shards -------------------------------------------------------------------------------------------------


def test_sharded_checkpoint_loads_like_the_whole_one(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    limit_mib = 1 / 16  # 64 KiB: the tiny generator (~250 KB; tensors up to 25 KB) needs several shards
    path = checkpoint.save_checkpoint(tmp_path / "sharded", ckpt.config, ckpt.generator, ckpt.vae, ckpt.start_frames,
                                      extra={"discriminator": {"w": torch.ones(3)}}, shard_mib=limit_mib)
    shards = sorted(p.name for p in path.glob("generator-*.safetensors"))
    assert len(shards) >= 3 and shards[0] == f"generator-00001-of-{len(shards):05d}.safetensors"
    assert not (path / "generator.safetensors").exists() and (path / "discriminator.safetensors").exists()
    assert all(p.stat().st_size <= limit_mib * 2 ** 20 for p in path.glob("*.safetensors"))
    loaded = load_checkpoint(path)
    for name, value in ckpt.generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], value), name
    assert torch.equal(loaded.start_frames, ckpt.start_frames) and set(loaded.extra) == {"discriminator"}


def test_a_checkpoint_missing_a_shard_is_refused_by_name(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    path = checkpoint.save_checkpoint(tmp_path / "sharded", ckpt.config, ckpt.generator, ckpt.vae, shard_mib=1 / 16)
    count = len(list(path.glob("generator-*.safetensors")))
    missing = f"generator-00002-of-{count:05d}.safetensors"
    (path / missing).unlink()
    with pytest.raises(CheckpointError, match=f"{missing}: missing shard"):
        load_checkpoint(path)


def test_shards_and_a_whole_file_of_the_same_weights_are_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    path = checkpoint.save_checkpoint(tmp_path / "sharded", ckpt.config, ckpt.generator, ckpt.vae, shard_mib=1 / 16)
    shutil.copy(tiny_checkpoint / "generator.safetensors", path / "generator.safetensors")
    with pytest.raises(CheckpointError, match="both this file and its shards"):
        load_checkpoint(path)


def test_bf16_shards_within_a_transfer_limit(tiny_checkpoint, tmp_path):
    """What scripts/train_on_gpu.sh ships: half-precision shards under a per-file limit, loaded back as float32."""
    ckpt = load_checkpoint(tiny_checkpoint)
    path = checkpoint.save_checkpoint(tmp_path / "ship", ckpt.config, ckpt.generator, ckpt.vae, ckpt.start_frames,
                                      dtype=torch.bfloat16, shard_mib=1 / 32)
    assert len(list(path.glob("generator-*"))) > 1
    assert all(p.stat().st_size <= 2 ** 15 for p in path.glob("*.safetensors"))
    loaded = load_checkpoint(path)
    assert next(loaded.generator.parameters()).dtype == torch.float32


def test_a_training_run_folder_leads_to_its_latest_stage(tiny_checkpoint, tmp_path):
    """`worldsim train --out RUN` fills RUN/<stage>/checkpoint: RUN itself names the last stage's checkpoint."""
    run = tmp_path / "run"
    for stage in ("vae", "adversarial", "diffusion"):
        shutil.copytree(tiny_checkpoint, run / stage / "checkpoint")
    (run / "long" / "checkpoint").mkdir(parents=True)  # a stage that has not saved yet
    assert checkpoint.find_checkpoint(run) == run / "adversarial" / "checkpoint"
    assert checkpoint.find_checkpoint(tiny_checkpoint) == tiny_checkpoint
    assert checkpoint.find_checkpoint(tmp_path / "nope") == tmp_path / "nope"
    with pytest.raises(CheckpointError, match=f"a training run folder, not a checkpoint; its latest stage's "
                                              f"checkpoint is {run / 'adversarial' / 'checkpoint'}"):
        load_checkpoint(run)  # what `worldsim eval --checkpoint RUN` says
