"""Episode storage: alignment, chunking, atomic writes, corruption handling, index and splits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from data_fakes import FakeEnv, ScriptedPolicy

from worldsim.data.record import record
from worldsim.data.storage import (
    ChunkWriter,
    CorruptDataError,
    CorruptDataWarning,
    DatasetIndex,
    EpisodeWriter,
    assign_splits,
    atomic_write,
    load_episodes,
    read_chunk,
    write_chunk,
)
from worldsim.errors import WorldsimError


def chunk_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"frames": rng.integers(0, 255, (n, 6, 8, 3), dtype=np.uint8),
            "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            "conditions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
            "poses": rng.uniform(-1, 1, (n, 3)).astype(np.float32)}


def test_alignment_action_t_produced_frame_t(tmp_path, camera):
    # one yaw command at step 3 and one forward command at step 5: they must show up beside frames 3 and 5
    script = [[0, 0, 0, 0]] * 2 + [[0, 0, 1.0, 0]] + [[0, 0, 0, 0]] + [[1.0, 0, 0, 0]] + [[0, 0, 0, 0]] * 3
    record(FakeEnv(camera), ScriptedPolicy(script), tmp_path / "d", episodes=1, steps=8, seed=0,
           val_fraction=0, progress=False)
    (episode,) = load_episodes(tmp_path / "d")
    assert len(episode) == 9
    np.testing.assert_array_equal(episode.actions[0], 0)  # nothing led to the first frame
    np.testing.assert_array_equal(episode.actions[1:], np.array(script, dtype=np.float32))
    np.testing.assert_array_equal(episode.frames[:, 0, 0, 0], np.arange(9))  # frame t is the t-th observation
    turn = np.diff(episode.poses[:, 2])
    assert np.flatnonzero(turn != 0).tolist() == [2]  # pose changes between frames 2 and 3 only
    assert episode.actions[3, 2] == 1.0 and episode.conditions[3, 2] == 1.0
    moved = np.flatnonzero(np.any(np.diff(episode.poses[:, :2], axis=0) != 0, axis=1))
    assert moved.tolist() == [4] and episode.actions[5, 0] == 1.0
    np.testing.assert_array_equal(episode.conditions, camera.encoding.frame_vectors(episode.actions))


def test_multi_chunk_episode_round_trips(tmp_path, camera):
    frames = chunk_arrays(20)
    with ChunkWriter() as writer:
        episode = EpisodeWriter(tmp_path, 4, 99, {"map": "x"}, (6, 8, 3), 4, camera.encoding.frame_vectors,
                                writer, chunk_frames=7)
        for t in range(20):
            episode.append(frames["frames"][t], frames["actions"][t], frames["poses"][t])
        entry = episode.finish("val")
    assert [f.frames for f in entry.files] == [7, 7, 6] and entry.frames == 20 and entry.split == "val"
    index = DatasetIndex(tmp_path, {"encoding": camera.encoding_dict()}, [entry])
    index.save()
    (loaded,) = load_episodes(tmp_path)
    for key in ("frames", "actions", "poses"):
        np.testing.assert_array_equal(getattr(loaded, key), frames[key])
    assert loaded.metadata == {"map": "x"} and loaded.id == 4


def test_chunk_write_is_atomic_when_interrupted(tmp_path):
    path = tmp_path / "c.npz"
    write_chunk(path, chunk_arrays(5, seed=1), {"v": 1})
    before = path.read_bytes()

    def explode(f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, explode)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # the temporary file is gone too


def test_killed_writer_leaves_old_file_and_no_valid_partial(tmp_path):
    path = tmp_path / "c.npz"
    write_chunk(path, chunk_arrays(5, seed=1), {"v": 1})
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal
        from worldsim.data.storage import atomic_write
        def write(f):
            f.write(b"PK" * 100000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(path)!r}, write)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode != 0
    assert path.read_bytes() == before
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)
    arrays, meta = read_chunk(path)
    assert meta == {"v": 1} and len(arrays["frames"]) == 5


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "delete"])
def test_corrupt_chunks_are_skipped_with_a_warning_naming_the_file(fake_dataset, damage):
    index = DatasetIndex.load(fake_dataset)
    victim = fake_dataset / index.episodes[1].files[1].name
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # in the middle of the compressed frames: only the CRC check can notice
        victim.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        victim.unlink()
    with pytest.warns(CorruptDataWarning, match=victim.name):
        episodes = load_episodes(fake_dataset)
    assert [e.id for e in episodes] == [0, 2]
    with pytest.raises(CorruptDataError, match=victim.name):
        from worldsim.data.storage import read_episode

        read_episode(fake_dataset, index.episodes[1])


def test_chunk_from_another_episode_is_detected(fake_dataset):
    index = DatasetIndex.load(fake_dataset)
    a, b = index.episodes[0].files[0].name, index.episodes[1].files[0].name
    (fake_dataset / a).write_bytes((fake_dataset / b).read_bytes())
    with pytest.warns(CorruptDataWarning, match=a):
        assert [e.id for e in load_episodes(fake_dataset)] == [1, 2]


def test_index_lists_episodes_frames_splits_and_files(fake_dataset):
    data = json.loads((fake_dataset / "index.json").read_text())
    assert data["format"] == "worldsim-episodes" and data["frames"] == 21 + 21 + 13
    assert [e["frames"] for e in data["episodes"]] == [21, 21, 13]
    assert [len(e["files"]) for e in data["episodes"]] == [3, 3, 1]  # chunks of 8 frames for the first run
    assert sorted(e["split"] for e in data["episodes"][:2]) == ["train", "val"]
    assert data["splits"]["val"]["episodes"] == 1
    meta = data["episodes"][0]["metadata"]
    assert meta["engine"] == "fake" and meta["scheme"] == "camera" and meta["policy"]["name"] == "explore"
    assert meta["encoding"]["yaw_speed"] == 4.0 and meta["dataset_seed"] == 7 and "worldsim_version" in meta
    assert not list(fake_dataset.glob(".*.tmp"))


def test_splits_are_deterministic_by_episode():
    ids = list(range(20))
    a = assign_splits(ids, 0.25, seed=3)
    assert a == assign_splits(ids, 0.25, seed=3)
    assert list(a.values()).count("val") == 5
    assert a != assign_splits(ids, 0.25, seed=4)
    assert list(assign_splits([0, 1], 0.01, 0).values()).count("val") == 1  # a positive fraction gets one
    assert list(assign_splits([0], 0.5, 0).values()) == ["train"]  # never all of them
    assert set(assign_splits(ids, 0.0, 0).values()) == {"train"}
    with pytest.raises(WorldsimError, match="fraction"):
        assign_splits(ids, 1.0, 0)


def test_loading_a_missing_or_foreign_dataset_says_what_is_wrong(tmp_path):
    with pytest.raises(WorldsimError, match="no dataset directory"):
        DatasetIndex.load(tmp_path / "nope")
    with pytest.raises(WorldsimError, match="not a worldsim dataset"):
        DatasetIndex.load(tmp_path)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(CorruptDataError, match="index.json"):
        DatasetIndex.load(tmp_path)
    with pytest.raises(WorldsimError, match="unknown split"):
        DatasetIndex(tmp_path, {}).select("test")
