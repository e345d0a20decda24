"""An interrupted recording: the index knows it is unfinished, the same command finishes it (same episodes, same
split), other arguments are refused, and what the killed recorder left behind is cleared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from data_fakes import FakeEnv, dead_pid

from worldsim.data.policies import ExploreConfig, ExplorePolicy
from worldsim.data.record import record
from worldsim.data.storage import DatasetIndex, load_episodes, lock_dataset, write_chunk
from worldsim.errors import WorldsimError

ARGS = {"episodes": 5, "steps": 10, "seed": 3, "val_fraction": 0.4, "chunk_frames": 4, "progress": False}


class InterruptedPolicy(ExplorePolicy):
    """The explorer, with a Ctrl-C after `stop_after` actions (its metadata is the explorer's)."""

    def __init__(self, scheme, stop_after: int):
        super().__init__(scheme)
        self.left = stop_after

    def act(self, frame, pose):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().act(frame, pose)


def interrupted(camera, root: Path, stop_after: int = 25) -> DatasetIndex:
    with pytest.raises(KeyboardInterrupt):
        record(FakeEnv(camera), InterruptedPolicy(camera, stop_after), root, **ARGS)
    return DatasetIndex.load(root)


def assert_same_dataset(a: Path, b: Path) -> None:
    x, y = DatasetIndex.load(a), DatasetIndex.load(b)
    assert [(e.id, e.split, e.frames, e.seed) for e in sorted(x.episodes, key=lambda e: e.id)] == \
        [(e.id, e.split, e.frames, e.seed) for e in sorted(y.episodes, key=lambda e: e.id)]
    for p, q in zip(sorted(load_episodes(a), key=lambda e: e.id), sorted(load_episodes(b), key=lambda e: e.id),
                    strict=True):
        for key in ("frames", "actions", "conditions", "poses"):
            np.testing.assert_array_equal(getattr(p, key), getattr(q, key))


def test_a_killed_recording_is_finished_by_the_same_command(tmp_path, camera, capsys):
    """SIGKILL in the middle of the fourth episode, then the same call: the data of an uninterrupted run."""
    root = tmp_path / "d"
    script = textwrap.dedent(f"""
        import os, signal
        from data_fakes import FakeEnv
        from worldsim.conditioning import load_scheme
        from worldsim.data.policies import ExploreConfig, ExplorePolicy
        from worldsim.data.record import record

        class Killed(ExplorePolicy):
            acts = 0
            def act(self, frame, pose):
                Killed.acts += 1
                if Killed.acts == 3 * 10 + 7:  # the fourth episode has written a chunk the index does not list
                    os.kill(os.getpid(), signal.SIGKILL)
                return super().act(frame, pose)

        camera = load_scheme("camera")
        record(FakeEnv(camera), Killed(camera), {str(root)!r}, background_writes=False, **{ARGS!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    index = DatasetIndex.load(root)
    assert not index.complete and index.missing() == [3, 4]
    assert (root / "ep000003-c000.npz").exists()  # an orphan chunk
    stale = root / f".ep000003-c001.npz.{dead_pid()}.1.tmp"
    live = root / f".ep000004-c000.npz.{os.getpid()}.1.tmp"  # (a live writer's: not ours to delete)
    stale.write_bytes(b"half")
    live.write_bytes(b"half")

    record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    assert "continuing an interrupted recording (3 of 5 episodes recorded)" in capsys.readouterr().err
    assert DatasetIndex.load(root).complete and not stale.exists() and live.exists()
    live.unlink()
    record(FakeEnv(camera), ExplorePolicy(camera), tmp_path / "straight", **ARGS)
    assert_same_dataset(root, tmp_path / "straight")
    listed = {f.name for e in DatasetIndex.load(root).episodes for f in e.files}
    assert {p.name for p in root.glob("ep*.npz")} == listed


def test_a_rerun_with_other_arguments_is_refused_naming_the_difference(tmp_path, camera):
    root = tmp_path / "d"
    index = interrupted(camera, root)
    assert index.missing() == [2, 3, 4]
    before = (root / "index.json").read_bytes()
    with pytest.raises(WorldsimError, match=r"unfinished recording \(2 of 5 episodes recorded\).*steps: 10 in "
                                            r"the dataset, 12 now"):
        record(FakeEnv(camera), ExplorePolicy(camera), root, **{**ARGS, "steps": 12})
    with pytest.raises(WorldsimError, match=r"policy.config.ease: 0.35 in the dataset, 0.5 now"):
        record(FakeEnv(camera), ExplorePolicy(camera, ExploreConfig(ease=0.5)), root, **ARGS)
    with pytest.raises(WorldsimError, match="finish it first .* without --append"):
        record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS, append=True)
    assert (root / "index.json").read_bytes() == before
    # the same arguments finish it; then it is complete, and only --append adds to it
    record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    with pytest.raises(WorldsimError, match="already exists and is not empty"):
        record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    index = record(FakeEnv(camera), ExplorePolicy(camera), root, **{**ARGS, "episodes": 2}, append=True)
    assert index.complete and [e.id for e in index.episodes] == list(range(7))


def test_ctrl_c_in_the_first_episode_starts_over_with_any_arguments(tmp_path, camera):
    root = tmp_path / "d"
    index = interrupted(camera, root, stop_after=5)
    assert not index.episodes and not index.complete
    index = record(FakeEnv(camera), ExplorePolicy(camera), root, **{**ARGS, "steps": 6})
    assert index.complete and [e.frames for e in index.episodes] == [7] * 5


def test_one_recorder_at_a_time(tmp_path, camera):
    root = tmp_path / "d"
    with lock_dataset(root), pytest.raises(WorldsimError, match="another worldsim process is recording"):
        record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    assert record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS).complete  # released with its holder


def test_datasets_from_before_the_recording_was_kept_count_as_complete(tmp_path, camera):
    root = tmp_path / "d"
    record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    data = json.loads((root / "index.json").read_text())
    del data["recording"]
    (root / "index.json").write_text(json.dumps(data))
    index = DatasetIndex.load(root)
    assert index.complete and index.missing() == [] and len(index.episodes) == 5


def test_readers_never_delete_leftovers_the_next_recorder_does(tmp_path, camera):
    """Leftovers are only cleared by a recorder holding the lock (no other recorder can own them then)."""
    root = tmp_path / "d"
    interrupted(camera, root)
    orphan = root / "ep000009-c000.npz"
    write_chunk(orphan, {"frames": np.zeros((1, 2, 2, 3), np.uint8), "actions": np.zeros((1, 4), np.float32),
                         "conditions": np.zeros((1, 4), np.float32), "poses": np.zeros((1, 3), np.float32)}, {})
    DatasetIndex.load(root)
    assert orphan.exists()
    record(FakeEnv(camera), ExplorePolicy(camera), root, **ARGS)
    assert not orphan.exists()
