"""`worldsim record` end to end through the CLI, on tiny runs of the real engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldsim.cli import main
from worldsim.data.storage import DatasetIndex, load_episodes, read_episode

pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")


def record(out, *extra: str) -> int:
    return main(["record", "--env", "doom", "--episodes", "2", "--steps", "30", "--out", str(out),
                 "--seed", "5", "--no-progress", *extra])


def test_record_writes_a_dataset(tmp_path, capsys):
    assert record(tmp_path / "d", "--val-fraction", "0.5") == 0
    index = DatasetIndex.load(tmp_path / "d")
    assert [e.frames for e in index.episodes] == [31, 31]
    assert sorted(e.split for e in index.episodes) == ["train", "val"]
    assert index.info["resolution"] == [160, 120] and index.info["frame_skip"] == 2
    episode = load_episodes(tmp_path / "d", "train")[0]
    assert episode.frames.shape == (31, 120, 160, 3) and episode.actions.shape == (31, 4)
    meta = episode.metadata
    assert meta["engine"] == "vizdoom" and meta["map"] == "MAP01" and meta["policy"]["name"] == "explore"
    assert meta["engine_version"] and meta["encoding"]["type"] == "camera"
    assert "2 episodes, 62 frames" in capsys.readouterr().out
    assert not list(tmp_path.glob("_vizdoom*"))


def test_same_seed_records_identical_arrays(tmp_path):
    assert record(tmp_path / "a") == 0
    assert record(tmp_path / "b") == 0
    for a, b in zip(load_episodes(tmp_path / "a"), load_episodes(tmp_path / "b"), strict=True):
        for key in ("frames", "actions", "conditions", "poses"):
            x, y = getattr(a, key), getattr(b, key)
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), key
    assert record(tmp_path / "c", "--seed", "6") == 0
    other = load_episodes(tmp_path / "c")[0]
    assert not np.array_equal(other.actions, load_episodes(tmp_path / "a")[0].actions)


def test_existing_data_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "d"
    assert record(out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert record(out) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a folder of someone's files is not a dataset, even with --append
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert record(tmp_path / "mine", "--append") == 2
    assert "not a worldsim dataset" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_append_adds_new_episodes(tmp_path):
    out = tmp_path / "d"
    assert record(out) == 0
    first = load_episodes(out)
    assert record(out, "--append") == 0  # same seed: still new episodes (seeds come from the episode ids)
    index = DatasetIndex.load(out)
    assert [e.id for e in index.episodes] == [0, 1, 2, 3]
    episodes = load_episodes(out)
    np.testing.assert_array_equal(episodes[0].frames, first[0].frames)
    assert not np.array_equal(episodes[2].actions, episodes[0].actions)
    assert record(out, "--append", "--scheme", "keys") == 2  # different encoding: refused


def test_keys_scheme_and_shipped_config(tmp_path):
    assert record(tmp_path / "k", "--scheme", "keys", "--config", "freedoom2_map02") == 0
    (episode, _) = load_episodes(tmp_path / "k")
    assert episode.actions.shape == (31, 7) and set(np.unique(episode.actions)) <= {0.0, 1.0}
    assert episode.conditions.shape == (31, 8) and episode.metadata["map"] == "MAP02"


@pytest.mark.parametrize("args, message", [
    (["--config", "no_such_world"], "no such doom config"),
    (["--scheme", "nope"], "no such scheme"),
    (["--val-fraction", "1.5"], "validation fraction"),
    (["--steps", "0"], "at least 1"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    assert record(tmp_path / "d", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_config_value_names_the_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("map: MAP77\n")
    assert record(tmp_path / "d", "--config", str(config)) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'map'" in err and "MAP01" in err


def test_index_is_valid_json_after_recording(tmp_path):
    assert record(tmp_path / "d") == 0
    data = json.loads((tmp_path / "d" / "index.json").read_text())
    assert data["frames"] == 62 and len(data["episodes"]) == 2


# ---- killed recordings: the engine dies with the recorder, a rerun finishes the dataset ----------------------

KILL_ARGS = ["--episodes", "8", "--steps", "150", "--chunk-frames", "1"]  # 1-frame chunks: slow enough to kill


def children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is `pid`."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if entry.name.isdigit() and int(ppid) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def running(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"  # zombies are dead
    except OSError:
        return False


def shared_memory(instance: str) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"ViZDoom*{instance}"))


def wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def start_recording(out: Path) -> tuple[subprocess.Popen, int, str, Path]:
    """`worldsim record` in a child process, once its first episode is in the index: (process, engine pid,
    engine instance id, scratch folder)."""
    process = subprocess.Popen([sys.executable, "-m", "worldsim", "record", "--env", "doom", "--out", str(out),
                                "--seed", "5", "--no-progress", *KILL_ARGS], stderr=subprocess.PIPE)

    def recorded() -> bool:
        try:
            return bool(json.loads((out / "index.json").read_text())["episodes"])
        except (OSError, ValueError, KeyError):
            return False

    wait_for(recorded, "the recording never got through its first episode", 60.0)
    (engine, command), = ((p, c) for p, c in children(process.pid).items() if "+viz_instance_id" in c)
    instance = command.split("+viz_instance_id ")[1].split()[0]
    scratch = Path(command.split("-config ")[1].split()[0]).parent
    assert shared_memory(instance) and scratch.is_dir()
    return process, engine, instance, scratch


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and /dev/shm are Linux's")


@linux_only
def test_a_killed_record_takes_its_engine_along_and_a_rerun_finishes_the_dataset(tmp_path, capsys):
    out = tmp_path / "d"
    process, engine, instance, scratch = start_recording(out)
    try:
        process.kill()
        process.wait(timeout=10)
        wait_for(lambda: not running(engine), "the engine outlived its recorder")
        wait_for(lambda: not shared_memory(instance), "the engine's shared memory outlived its recorder")
        wait_for(lambda: not scratch.exists(), "the engine's scratch folder outlived its recorder")
    finally:
        process.kill()
    index = DatasetIndex.load(out)
    assert not index.complete and 0 < len(index.episodes) < 8
    assert main(["record", "--env", "doom", "--out", str(out), "--seed", "5", "--no-progress", *KILL_ARGS]) == 0
    assert "continuing an interrupted recording" in capsys.readouterr().err
    assert main(["record", "--env", "doom", "--out", str(tmp_path / "straight"), "--seed", "5", "--no-progress",
                 *KILL_ARGS]) == 0
    resumed, straight = DatasetIndex.load(out), DatasetIndex.load(tmp_path / "straight")
    assert resumed.complete
    assert [(e.id, e.split, e.frames) for e in resumed.episodes] == \
        [(e.id, e.split, e.frames) for e in straight.episodes]
    a, b = read_episode(out, resumed.episodes[-1]), read_episode(tmp_path / "straight", straight.episodes[-1])
    assert a.frames.tobytes() == b.frames.tobytes() and a.actions.tobytes() == b.actions.tobytes()


@linux_only
def test_an_engine_whose_recorder_and_watchdog_were_killed_is_cleaned_by_the_next_start(tmp_path):
    out = tmp_path / "d"
    process, engine, instance, scratch = start_recording(out)
    try:
        (watchdog,) = (p for p, c in children(process.pid).items() if "worldsim.data.doom_guard" in c)
        os.kill(watchdog, signal.SIGKILL)
        process.kill()
        process.wait(timeout=10)
        time.sleep(0.5)
        assert running(engine) and shared_memory(instance)  # orphaned: nothing was left to clean up
        assert main(["record", "--env", "doom", "--out", str(out), "--seed", "5", "--no-progress",
                     *KILL_ARGS]) == 0
        assert not running(engine) and not shared_memory(instance) and not scratch.exists()
        assert DatasetIndex.load(out).complete
    finally:
        process.kill()
        if running(engine) and instance in Path(f"/proc/{engine}/cmdline").read_text(errors="replace"):
            os.kill(engine, signal.SIGKILL)  # (only the engine this test started)
