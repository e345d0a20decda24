"""The inverse-dynamics judge: it learns a visible motion, saves and loads, refuses bad directories."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from worldsim.conditioning import load_scheme
from worldsim.errors import WorldsimError
from worldsim.eval.idm import (
    IDM,
    IDMConfig,
    IDMTrainConfig,
    InverseDynamics,
    PairData,
    accuracy,
    fit,
    load_idm,
    save_idm,
)

SIZE = (16, 24)


class Episode:
    def __init__(self, frames: np.ndarray, actions: np.ndarray):
        self.frames, self.actions = frames, actions

    def __len__(self) -> int:
        return len(self.frames)


def panning_episodes(n: int, steps: int, seed: int) -> list[Episode]:
    """A camera panning along a wall that brightens to the right (plus a little noise): yaw right moves the
    view 3 pixels right along the wall, yaw left 3 pixels left. Only yaw varies; forward and strafe stay
    "none"."""
    rng = np.random.default_rng(seed)
    episodes = []
    ramp = np.linspace(0, 255, 400)
    for _ in range(n):
        noise = rng.normal(0, 2, (SIZE[0], 400, 3))
        wall = np.clip(ramp[None, :, None] + noise, 0, 255).astype(np.uint8)
        yaw = rng.choice([-1.0, 0.0, 1.0], steps + 1)
        yaw[0] = 0.0  # actions[0] is the no-op
        x = 200 + np.cumsum(3 * yaw).astype(int)
        frames = np.stack([wall[:, i: i + SIZE[1]] for i in x])
        actions = np.zeros((steps + 1, 4), np.float32)
        actions[:, 2] = yaw
        episodes.append(Episode(frames, actions))
    return episodes


@pytest.fixture(scope="module")
def camera_encoding() -> dict:
    return load_scheme("camera").encoding_dict()


def test_pairs_never_cross_episodes(camera_encoding):
    data = PairData.from_episodes(panning_episodes(3, 5, 0), SIZE, camera_encoding)
    assert len(data.frames) == 18
    assert data.pairs.tolist() == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17]


def test_idm_learns_a_visible_motion(camera_encoding):
    torch.manual_seed(0)
    train = PairData.from_episodes(panning_episodes(4, 40, 0), SIZE, camera_encoding)
    val = PairData.from_episodes(panning_episodes(2, 40, 1), SIZE, camera_encoding)
    model = InverseDynamics(IDMConfig(image_size=SIZE, channels=(8, 8), feature_dim=8))
    before = accuracy(model, val)["yaw"]
    losses = fit(model, train, IDMTrainConfig(steps=80, batch=16, lr=1e-2))
    after = accuracy(model, val)
    assert np.isfinite(losses).all() and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert after["yaw"] > max(0.8, before + 0.2), (before, after)
    assert after["forward"] == after["strafe"] == 1.0  # always "none" in this data


def test_idm_saves_and_loads_the_same_judge(tmp_path, camera_encoding):
    model = InverseDynamics(IDMConfig(image_size=SIZE, channels=(8, 8), feature_dim=8))
    fit(model, PairData.from_episodes(panning_episodes(2, 10, 0), SIZE, camera_encoding),
        IDMTrainConfig(steps=2, batch=4))
    idm = IDM(model, camera_encoding, {"val_accuracy": {"all": 0.5}})
    save_idm(idm, tmp_path / "idm", IDMTrainConfig(steps=2))
    save_idm(idm, tmp_path / "idm")  # overwriting swaps the directory in place
    loaded = load_idm(tmp_path / "idm")
    assert loaded.model.config == model.config and loaded.encoding == camera_encoding
    assert loaded.metrics["val_accuracy"]["all"] == 0.5
    frames = panning_episodes(1, 6, 3)[0].frames
    for got, expected in zip(loaded.judge(frames[:-1], frames[1:]), idm.judge(frames[:-1], frames[1:])):
        assert np.array_equal(got, expected)
    # a judge resizes frames of another resolution to its own
    big = np.repeat(np.repeat(frames, 2, 1), 2, 2)
    decisions, features = loaded.judge(big[:-1], big[1:])
    assert decisions.shape == (6, 3) and features.shape == (6, 8)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["idm"]  # no temporary directories left


def test_save_idm_never_replaces_a_folder_that_is_not_an_idm(tmp_path, camera_encoding):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    idm = IDM(InverseDynamics(IDMConfig(image_size=SIZE, channels=(8, 8))), camera_encoding)
    with pytest.raises(WorldsimError, match="not an IDM directory"):
        save_idm(idm, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_load_idm_refuses_what_is_not_an_idm(tmp_path, camera_encoding):
    with pytest.raises(WorldsimError, match="not an IDM directory"):
        load_idm(tmp_path / "missing")
    model = InverseDynamics(IDMConfig(image_size=SIZE, channels=(8, 8), feature_dim=8))
    save_idm(IDM(model, camera_encoding), tmp_path / "idm")
    config = yaml.safe_load((tmp_path / "idm" / "config.yaml").read_text())
    config["model"]["feature_dim"] = 9  # weights no longer fit
    (tmp_path / "idm" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(WorldsimError, match="do not match"):
        load_idm(tmp_path / "idm")
    (tmp_path / "idm" / "idm.safetensors").write_bytes(b"garbage")
    with pytest.raises(WorldsimError, match="unreadable"):
        load_idm(tmp_path / "idm")


def test_idm_refuses_a_world_with_another_encoding(camera_encoding):
    idm = IDM(InverseDynamics(IDMConfig(image_size=SIZE, channels=(8, 8))), camera_encoding)
    idm.check_encoding(dict(camera_encoding), "the checkpoint")
    with pytest.raises(WorldsimError, match="yaw_speed"):
        idm.check_encoding({**camera_encoding, "yaw_speed": 8.0}, "the checkpoint")
