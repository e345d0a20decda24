"""Held-out ground truth: recorded once from ViZDoom, reused (also as a prefix), refused when it differs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")

from worldsim.conditioning import load_scheme  # noqa: E402
from worldsim.errors import WorldsimError  # noqa: E402
from worldsim.eval import ground_truth as gt  # noqa: E402
from worldsim.eval.ground_truth import GroundTruthSpec, load_ground_truth  # noqa: E402


@pytest.fixture(scope="module")
def camera():
    return load_scheme("camera")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, camera):
    folder = tmp_path_factory.mktemp("gt") / "ground-truth"
    spec = GroundTruthSpec(seed=10_000, episodes=2, frames=20)
    episodes = load_ground_truth(folder, spec, camera, progress=False)
    return folder, episodes


def test_records_the_asked_episodes_with_actions_behind_each_frame(recorded):
    folder, episodes = recorded
    assert [len(e) for e in episodes] == [21, 21]
    assert episodes[0].frames.shape[1:] == (120, 160, 3) and episodes[0].frames.dtype == np.uint8
    assert not episodes[0].actions[0].any()  # the first frame comes from no action
    assert episodes[0].actions[1:].any()
    assert not np.array_equal(episodes[0].actions, episodes[1].actions)  # two different held-out sequences
    assert (folder / gt.SPEC_FILE).exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary folder left


def test_reuses_a_recording_and_takes_prefixes_without_the_engine(recorded, camera, monkeypatch):
    folder, episodes = recorded

    def no_engine(*args, **kwargs):
        raise AssertionError("the ground truth was recorded again")

    monkeypatch.setattr(gt, "_record", no_engine)
    again = load_ground_truth(folder, GroundTruthSpec(seed=10_000, episodes=2, frames=20), camera,
                              progress=False)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(again, episodes))
    shorter = load_ground_truth(folder, GroundTruthSpec(seed=10_000, episodes=1, frames=8), camera,
                                progress=False)
    assert len(shorter) == 1 and len(shorter[0]) == 9
    assert np.array_equal(shorter[0].frames, episodes[0].frames[:9])
    assert np.array_equal(shorter[0].actions, episodes[0].actions[:9])


def test_asking_for_more_rerecords_a_superset(tmp_path, camera):
    folder = tmp_path / "gt"
    small = load_ground_truth(folder, GroundTruthSpec(episodes=1, frames=6), camera, progress=False)
    large = load_ground_truth(folder, GroundTruthSpec(episodes=2, frames=10), camera, progress=False)
    assert len(large) == 2 and len(large[0]) == 11
    assert np.array_equal(large[0].frames[:7], small[0].frames)  # engine and explorer are deterministic


def test_refuses_a_recording_made_for_something_else(recorded, camera, tmp_path):
    folder, _ = recorded
    with pytest.raises(WorldsimError, match="seed"):
        load_ground_truth(folder, GroundTruthSpec(seed=10_001, episodes=1, frames=5), camera,
                          progress=False)
    with pytest.raises(WorldsimError, match="encoding"):
        load_ground_truth(folder, GroundTruthSpec(seed=10_000, episodes=1, frames=5), load_scheme("keys"),
                          progress=False)
    (tmp_path / "other").mkdir()
    with pytest.raises(WorldsimError, match="not a ground-truth recording"):
        load_ground_truth(tmp_path / "other", GroundTruthSpec(episodes=1, frames=5), camera, progress=False)
