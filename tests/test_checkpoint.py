import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldsim.checkpoint import CheckpointError, load_checkpoint
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
