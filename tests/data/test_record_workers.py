"""`worldsim record --workers N`: episodes played by N engine processes give the data of one process."""

from __future__ import annotations

import json
import shutil

import pytest

from worldsim.cli import main
from worldsim.data.storage import ARRAYS, INDEX_FILE, DatasetIndex, load_episodes

pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")


def record(out, *extra: str) -> int:
    return main(["record", "--env", "doom", "--episodes", "4", "--steps", "20", "--out", str(out), "--seed", "3",
                 "--val-fraction", "0.25", "--chunk-frames", "8", "--no-progress", *extra])


def assert_same_data(a, b) -> None:
    """Byte for byte: every episode's arrays, and the index's entries except the chunk files' byte counts."""
    index_a, index_b = DatasetIndex.load(a), DatasetIndex.load(b)
    assert index_a.complete and index_b.complete
    entries = lambda index: [(e.id, e.frames, e.split, e.seed, e.metadata, [(f.name, f.frames) for f in e.files])
                             for e in index.episodes]  # noqa: E731
    assert entries(index_a) == entries(index_b)
    episodes_a, episodes_b = load_episodes(a), load_episodes(b)
    assert len(episodes_a) == 4
    for x, y in zip(episodes_a, episodes_b, strict=True):
        for key in ARRAYS:
            u, v = getattr(x, key), getattr(y, key)
            assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes(), (x.id, key)


def test_two_workers_record_what_one_records(tmp_path, capsys):
    assert record(tmp_path / "one") == 0
    assert record(tmp_path / "two", "--workers", "2") == 0
    assert "4 episodes, 84 frames" in capsys.readouterr().out
    assert_same_data(tmp_path / "one", tmp_path / "two")
    assert len(list((tmp_path / "two").glob("ep000000-c*.npz"))) == 3  # 21 frames in chunks of 8
    assert not list(tmp_path.glob("_vizdoom*"))


def test_workers_finish_an_interrupted_recording_as_one_process_would(tmp_path):
    """A recording stopped after episodes 0 and 2 (as workers leave it) is finished by a rerun with workers."""
    assert record(tmp_path / "one") == 0
    shutil.copytree(tmp_path / "one", tmp_path / "resumed")
    path = tmp_path / "resumed" / INDEX_FILE
    index = json.loads(path.read_text())
    index["episodes"] = [e for e in index["episodes"] if e["id"] in (0, 2)]
    index["recording"]["complete"] = False
    path.write_text(json.dumps(index))  # the chunks of episodes 1 and 3 stay: unlisted, the rerun removes them
    assert record(tmp_path / "resumed", "--workers", "2") == 0
    assert_same_data(tmp_path / "one", tmp_path / "resumed")


@pytest.mark.parametrize("args,message", [
    (["--episodes", "2", "--workers", "2", "--input", "keyboard"], "--input keyboard plays in one process"),
    (["--episodes", "2", "--workers", "-1"], "--workers must be at least 0"),
    (["--recipe", "smoke", "--episodes", "2", "--seed", "1"], "--recipe sets --episodes, --seed: drop them"),
    (["--recipe", "nope"], "no such recipe"),
])
def test_bad_worker_and_recipe_arguments_are_one_line(tmp_path, capsys, args, message):
    assert main(["record", "--out", str(tmp_path / "d"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_a_recipe_records_its_data_set(tmp_path):
    assert main(["record", "--recipe", "smoke", "--out", str(tmp_path / "smoke"), "--workers", "2",
                 "--no-progress"]) == 0
    index = DatasetIndex.load(tmp_path / "smoke")
    request = index.recording["request"]
    assert (request["episodes"], request["steps"], request["seed"]) == (3, 40, 0) and index.complete


def test_recording_a_recipe_again_has_nothing_to_do(tmp_path, capsys):
    args = ["record", "--recipe", "smoke", "--out", str(tmp_path / "smoke"), "--no-progress"]
    assert main(args) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "smoke").iterdir()}
    assert main(args) == 0
    assert "holds recipe smoke's data already (3 episodes, 123 frames); nothing to record" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "smoke").iterdir()} == before
