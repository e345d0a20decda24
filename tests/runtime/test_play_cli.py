"""`worldsim play` headless end to end: MP4 + action log + stats, bit-exact replay, user mistakes."""

import hashlib
import json

import imageio.v3 as iio
import numpy as np
import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.conditioning.scheme import load_scheme
from worldsim.input.replay import read_action_log
from worldsim.runtime import play_cli
from worldsim.runtime.session import WorldSession

FRAMES = 24
PROGRAM = "segments:\n  - {frames: 10, keys: [w]}\n  - {frames: 10, axes: {right_x: 0.8}}\n  - {frames: 10}\n"


def play(*args: str) -> int:
    return main(["play", "--headless", *args])


@pytest.fixture
def recorded(tiny_checkpoint, tmp_path):
    program = tmp_path / "walk.yaml"
    program.write_text(PROGRAM)
    out = tmp_path / "out.mp4"
    rc = play("--checkpoint", str(tiny_checkpoint), "--frames", str(FRAMES), "--input", f"scripted:{program}",
              "--record", str(out), "--stats", str(tmp_path / "stats.json"), "--seed", "5")
    assert rc == 0
    return out


def test_headless_run_writes_video_log_and_stats(recorded, tmp_path):
    video = iio.imread(recorded)
    assert video.shape == (FRAMES, 16, 24, 3)  # the tiny world's native resolution
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == FRAMES and stats["fps"] > 0
    assert set(stats["latency_ms"]) >= {"p50", "p95"}
    assert set(stats["stage_ms"]) >= {"input", "condition", "generate", "decode", "display"}
    assert all(isinstance(v, float) for v in stats["stage_ms"].values())
    log = read_action_log(tmp_path / "out.actions.jsonl")
    assert log.header.seed == 5 and log.header.scheme == "camera" and log.frames == FRAMES
    assert not list(tmp_path.glob(".*partial*"))  # temporary files were renamed into place


def test_replay_reproduces_the_frames_bit_for_bit(recorded, tiny_checkpoint, tmp_path, capsys):
    log_path = tmp_path / "out.actions.jsonl"
    rc = play("--checkpoint", str(tiny_checkpoint), "--input", f"replay:{log_path}",
              "--stats", str(tmp_path / "replay.json"))
    assert rc == 0
    replay = json.loads((tmp_path / "replay.json").read_text())["replay"]
    assert replay == {"frames_checked": FRAMES, "mismatches": 0, "first_mismatch": None, "bit_exact": True}
    assert "bit-exact" in capsys.readouterr().out
    # independently of the loop: a session fed the logged states gives the logged hashes
    log = read_action_log(log_path)
    session = WorldSession(load_checkpoint(tiny_checkpoint), load_scheme("camera"), seed=log.header.seed)
    session.reset()
    for entry in log.entries[1:]:
        frame = np.ascontiguousarray(session.step(session.scheme.encode(entry.state, session.grid)))
        assert hashlib.sha256(frame).hexdigest() == entry.frame_hash


def test_replay_with_another_seed_reports_the_difference(recorded, tiny_checkpoint, tmp_path, capsys):
    rc = play("--checkpoint", str(tiny_checkpoint), "--input", f"replay:{tmp_path / 'out.actions.jsonl'}",
              "--seed", "6")
    assert rc == 1 and "replay differs" in capsys.readouterr().err


def test_existing_recording_is_never_overwritten_silently(recorded, tiny_checkpoint, capsys):
    before = recorded.read_bytes()
    rc = play("--checkpoint", str(tiny_checkpoint), "--frames", "3", "--record", str(recorded))
    assert rc == 2 and "--overwrite" in capsys.readouterr().err and recorded.read_bytes() == before
    rc = play("--checkpoint", str(tiny_checkpoint), "--frames", "3", "--record", str(recorded), "--overwrite")
    assert rc == 0 and iio.imread(recorded).shape[0] == 3


def test_no_trained_world_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(play_cli, "DEFAULT_CHECKPOINT", tmp_path / "checkpoints" / "doom-camera")
    assert main(["play"]) == 2
    err = capsys.readouterr().err
    assert "no world to play yet" in err and "worldsim train" in err and "--checkpoint DIR" in err


@pytest.mark.parametrize("args,message", [
    (["--input", "joystick"], "unknown input; allowed: keyboard, gamepad"),
    (["--input", "keyboard"], "never ends by itself; pass --frames N"),
    (["--frames", "0"], "--frames must be at least 1"),
    (["--frames", "2", "--record", "out.avi"], "recordings are MP4 files"),
    (["--frames", "2", "--scheme", "keys"], "does not match the encoding"),
    (["--frames", "2", "--profile", "nope"], "no such profile file or shipped profile name"),
    (["--frames", "2", "--input", "scripted:nope.yaml"], "no such program file"),
    (["--frames", "2", "--device", "gpu7"], "not a torch device"),
])
def test_user_mistakes_are_one_line_errors(tiny_checkpoint, capsys, args, message):
    assert play("--checkpoint", str(tiny_checkpoint), *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_checkpoint_directory(tmp_path, capsys):
    assert play("--checkpoint", str(tmp_path / "nope"), "--frames", "2") == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


@pytest.mark.parametrize("display", [None, ":0"])
def test_no_display_stops_at_once_naming_headless(tiny_checkpoint, monkeypatch, capsys, display):
    """Over SSH SDL falls back to its invisible offscreen driver by itself: that must not play unseen."""
    import sys

    import pygame

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display is None:
        monkeypatch.delenv("DISPLAY", raising=False)
    else:
        monkeypatch.setenv("DISPLAY", display)
    monkeypatch.setattr(pygame.display, "init", lambda: None)
    monkeypatch.setattr(pygame.display, "get_driver", lambda: "offscreen")
    assert main(["play", "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and "--headless" in err and err.count("\n") == 1
    assert ("over SSH" in err) == (display is None)


def test_a_display_sdl_cannot_open_is_one_line(tiny_checkpoint, monkeypatch, capsys):
    import pygame

    def init():
        raise pygame.error("x11 not available")

    monkeypatch.delenv("SDL_VIDEODRIVER")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(pygame.display, "init", init)
    assert main(["play", "--checkpoint", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "x11 not available" in err and "--headless" in err and err.count("\n") == 1


def test_an_invisible_driver_asked_for_is_the_headless_mode(monkeypatch):
    from worldsim.runtime.display import require_display

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # as tests and --headless ask for it
    require_display()


def test_a_training_run_folder_plays_its_latest_stage(tiny_checkpoint, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run / "long" / "checkpoint")
    assert play("--checkpoint", str(run), "--frames", "2") == 0
    assert f"playing its latest stage, {run / 'long' / 'checkpoint'}" in capsys.readouterr().err


def test_a_world_that_tracks_the_pose_logs_it_and_replays_it_exactly(tmp_path):
    from worldsim.testing import random_world_checkpoint

    world = random_world_checkpoint(tmp_path / "world")
    program = tmp_path / "walk.yaml"
    program.write_text(PROGRAM)
    out = tmp_path / "out.mp4"
    assert play("--checkpoint", str(world), "--frames", str(FRAMES), "--input", f"scripted:{program}",
                "--record", str(out)) == 0
    log_path = tmp_path / "out.actions.jsonl"
    poses = [entry.pose for entry in read_action_log(log_path).entries[1:]]
    assert len(poses) == FRAMES and all(p is not None for p in poses) and len(set(poses)) > 1
    assert play("--checkpoint", str(world), "--input", f"replay:{log_path}",
                "--stats", str(tmp_path / "replay.json")) == 0
    assert json.loads((tmp_path / "replay.json").read_text())["replay"]["bit_exact"]
    # a log whose poses were edited no longer replays exactly, though every frame's hash still matches
    edited = tmp_path / "edited.actions.jsonl"
    lines = log_path.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    last["pose"][0] += 1.0
    edited.write_text("".join(lines[:-1]) + json.dumps(last) + "\n")
    assert play("--checkpoint", str(world), "--input", f"replay:{edited}",
                "--stats", str(tmp_path / "edited.json")) == 1
    assert json.loads((tmp_path / "edited.json").read_text())["replay"]["first_mismatch"] == FRAMES
