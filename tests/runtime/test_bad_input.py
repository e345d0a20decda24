"""Bad input through `worldsim play`: a clear one-line message and no traceback for every malformed or hostile
file (profiles, schemes, programs, checkpoints, action logs), and nothing the user had is overwritten or lost."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from worldsim.cli import main
from worldsim.testing import random_checkpoint

DEEP = "a: " + "[" * 200 + "]" * 200 + "\n"
HOSTILE_YAML = {
    "python tag": ("!!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    "custom tag": ("name: !secret x\n", "invalid YAML"),
    "deep nesting": (DEEP, "nested too deeply"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "syntax": ("name: [unclosed\n", "invalid YAML"),
    "duplicate key": ("name: a\nname: b\n", "duplicate key"),
    "binary": ("\x00\x01\x02\xff", "invalid YAML"),
}


def play(capsys, *args: str) -> str:
    """Run `worldsim play --headless ARGS`, expect exit status 2, return the one-line message."""
    rc = main(["play", "--headless", "--frames", "2", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


# ---- YAML: profiles, schemes, programs --------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
@pytest.mark.parametrize("kind", ["profile", "scheme", "program"])
def test_hostile_yaml_is_refused_with_a_message(tiny_checkpoint, tmp_path, capsys, kind, case):
    text, message = HOSTILE_YAML[case]
    path = write(tmp_path, f"{kind}.yaml", text)
    option = {"profile": ["--profile", str(path)], "scheme": ["--scheme", str(path)],
              "program": ["--input", f"scripted:{path}"]}[kind]
    err = play(capsys, "--checkpoint", str(tiny_checkpoint), *option)
    assert str(path) in err
    if not (kind == "scheme" and case == "not a mapping"):  # a scheme says "a scheme must be a mapping"
        assert message in err


@pytest.mark.parametrize("text,message", [
    ("window_scale: 100000000000000000000\n", "'window_scale': out of range"),
    ("target_fps: .inf\n", "not a finite number"),
    ("hud: yes please\n", "'hud': wrong type"),
    ("kiosk:\n  quit_keys: [escape]\n", "'escape' is also a system key"),
    ("kiosk:\n  idle_timeout_s: 1e400\n", "'kiosk.idle_timeout_s'"),
    ("supervisor: 3\n", "'supervisor': expected a mapping"),
    ("kiosk:\n  attract_program: nope\n", "no such program file or shipped program name"),
])
def test_profile_values_are_checked(tiny_checkpoint, tmp_path, capsys, text, message):
    path = write(tmp_path, "profile.yaml", text)
    assert message in play(capsys, "--checkpoint", str(tiny_checkpoint), "--kiosk", "--profile", str(path),
                           "--log-dir", str(tmp_path / "logs"))


@pytest.mark.parametrize("text,message", [
    ("segments:\n  - {frames: 99999999999}\n", "'segments[0].frames': out of range"),
    ("segments:\n  - {frames: 3, keys: [warp]}\n", "unknown key name"),
    ("segments:\n  - {frames: 3, axes: {right_x: 7}}\n", "out of range"),
    ("segments: []\n", "at least one segment"),
])
def test_program_values_are_checked(tiny_checkpoint, tmp_path, capsys, text, message):
    path = write(tmp_path, "program.yaml", text)
    assert message in play(capsys, "--checkpoint", str(tiny_checkpoint), "--input", f"scripted:{path}")


# ---- checkpoints ------------------------------------------------------------------------------------------


@pytest.fixture
def broken_checkpoint(tiny_checkpoint, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def test_truncated_weights(broken_checkpoint, capsys):
    weights = broken_checkpoint / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "is it truncated?" in play(capsys, "--checkpoint", str(broken_checkpoint))


def test_weights_of_the_wrong_shape(broken_checkpoint, tmp_path, capsys):
    other = random_checkpoint(tmp_path / "other", dim=64)  # another width: every matrix has another shape
    shutil.copy(other / "generator.safetensors", broken_checkpoint / "generator.safetensors")
    assert "config.yaml implies" in play(capsys, "--checkpoint", str(broken_checkpoint))


def test_pickle_checkpoints_are_refused(tmp_path, capsys):
    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, pickled)
    assert "pickle checkpoints are refused" in play(capsys, "--checkpoint", str(pickled))
    directory = tmp_path / "pickled"
    directory.mkdir()
    shutil.copy(pickled, directory / "model.pt")
    assert "pickle files are refused" in play(capsys, "--checkpoint", str(directory))


def test_hostile_checkpoint_config(broken_checkpoint, capsys):
    (broken_checkpoint / "config.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert "invalid YAML" in play(capsys, "--checkpoint", str(broken_checkpoint))


# ---- action logs ------------------------------------------------------------------------------------------

HEADER = {"format": "worldsim-actions", "version": 1, "scheme": "camera", "encoding": {}, "seed": 0, "steps": 1,
          "checkpoint": "x"}


@pytest.mark.parametrize("lines,message", [
    ([], "empty file"),
    (["not json"], "invalid JSON"),
    (['{"format": "something-else"}'], "not a worldsim action log header"),
    ([json.dumps({**HEADER, "version": 99})], "newer than this worldsim"),
    ([json.dumps({**HEADER, "seed": "zero"})], "'seed': wrong type"),
    ([json.dumps(HEADER), '{"frame": 1, "state": {}}'], "must start with a reset line"),
    ([json.dumps(HEADER), '{"reset": true}', '{"frame": 1, "state": {"keys": ["warp"]}}'], "'keys' must be"),
    ([json.dumps(HEADER), '{"reset": true}', '{"frame": 1, "state": {"mouse": [1e300, 0]}}'], "'mouse' must be"),
    ([json.dumps(HEADER), '{"reset": true}', '{"frame": 1, "sta'], "line 3: invalid JSON"),  # cut mid-write
])
def test_corrupt_action_logs(tiny_checkpoint, tmp_path, capsys, lines, message):
    log = write(tmp_path, "run.actions.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    assert message in play(capsys, "--checkpoint", str(tiny_checkpoint), "--input", f"replay:{log}")


def test_binary_action_log(tiny_checkpoint, tmp_path, capsys):
    log = write(tmp_path, "run.actions.jsonl", bytes(range(256)) * 4)
    err = play(capsys, "--checkpoint", str(tiny_checkpoint), "--input", f"replay:{log}")
    # read line by line: the first line (bytes 0-9) is UTF-8 but not JSON
    assert f"{log}, line 1: invalid JSON" in err
    log = write(tmp_path, "run.actions.jsonl", b"\xff\xfe" * 4)
    assert "cannot read action log" in play(capsys, "--checkpoint", str(tiny_checkpoint), "--input",
                                            f"replay:{log}")


# ---- nothing the user had is lost -------------------------------------------------------------------------


def test_record_refuses_to_replace_a_log_beside_a_new_video(tiny_checkpoint, tmp_path, capsys):
    log = write(tmp_path, "run.actions.jsonl", "precious\n")
    assert "--overwrite" in play(capsys, "--checkpoint", str(tiny_checkpoint), "--record", str(tmp_path / "run.mp4"))
    assert log.read_text() == "precious\n" and not (tmp_path / "run.mp4").exists()


def test_a_crash_mid_recording_leaves_only_partial_files_the_next_recording_clears(tiny_checkpoint, tmp_path):
    """Killed while recording (SIGKILL: no cleanup runs), the final names never hold a half-written file."""
    out = tmp_path / "run.mp4"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    child = subprocess.Popen([sys.executable, "-m", "worldsim", "play", "--headless", "--checkpoint",
                              str(tiny_checkpoint), "--frames", "1000000", "--record", str(out), "--threads", "1"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        partial = []
        while time.monotonic() < deadline and not any(p.stat().st_size > 10_000 for p in partial):
            time.sleep(0.2)  # wait until both partial files are being written
            partial = list(tmp_path.glob(".run*partial*"))
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert len(partial) == 2, partial  # the video and the action log, under temporary names
    assert not out.exists() and not (tmp_path / "run.actions.jsonl").exists()
    # the next recording into the folder clears them (a live player's are not touched)
    live = write(tmp_path, f".other.partial-{os.getpid()}.mp4", b"still being written")
    assert main(["play", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "3", "--record",
                 str(tmp_path / "next.mp4"), "--threads", "1"]) == 0
    assert not any(p.exists() for p in partial) and live.exists()


def test_an_unwritable_log_directory_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    blocker = write(tmp_path, "logs", "a file where the log directory should be")
    assert "cannot write the log" in play(capsys, "--checkpoint", str(tiny_checkpoint), "--kiosk",
                                          "--log-dir", str(blocker / "sub"))


def test_stats_file_is_not_replaced_without_overwrite(tiny_checkpoint, tmp_path, capsys):
    stats = write(tmp_path, "stats.json", "precious\n")
    err = play(capsys, "--checkpoint", str(tiny_checkpoint), "--stats", str(stats))
    assert f"{stats} already exists; pass --overwrite" in err and stats.read_text() == "precious\n"
    assert "is a folder" in play(capsys, "--checkpoint", str(tiny_checkpoint), "--stats", str(tmp_path),
                                 "--overwrite")
    assert main(["play", "--headless", "--frames", "2", "--checkpoint", str(tiny_checkpoint), "--stats", str(stats),
                 "--overwrite"]) == 0
    assert json.loads(stats.read_text())["frames"] == 2


# ---- special files and unbounded counts ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["checkpoint config", "profile", "scheme", "program", "action log"])
def test_special_files_are_refused_at_once(tiny_checkpoint, broken_checkpoint, tmp_path, capsys, make_special,
                                           kind):
    """A FIFO would block forever, /dev/zero read gigabytes: each is one line naming the file, before reading."""
    if kind == "checkpoint config":
        path = make_special(broken_checkpoint / "config.yaml")
        err = play(capsys, "--checkpoint", str(broken_checkpoint))
    else:
        path = make_special(tmp_path / f"special-{kind.replace(' ', '-')}")
        option = {"profile": ["--profile", str(path)], "scheme": ["--scheme", str(path)],
                  "program": ["--input", f"scripted:{path}"], "action log": ["--input", f"replay:{path}"]}[kind]
        err = play(capsys, "--checkpoint", str(tiny_checkpoint), *option)
    assert str(path) in err and f"is {make_special.kind}, not a regular file" in err


@pytest.mark.parametrize("old,new,message", [
    ("fps: 17.5", "fps: 0", "'fps': out of range (got 0.0); allowed: 0.1 to 1000.0"),
    ("steps: 1", "steps: -3", "'sampling.steps': out of range (got -3); allowed: 1 to 1000"),
    ("steps: 1", "steps: 1000000000", "'sampling.steps': out of range"),
])
def test_checkpoint_rates_and_counts_are_bounded(broken_checkpoint, tmp_path, capsys, old, new, message):
    config = broken_checkpoint / "config.yaml"
    config.write_text(config.read_text().replace(old, new))
    assert message in play(capsys, "--checkpoint", str(broken_checkpoint), "--record", str(tmp_path / "run.mp4"))
    assert not (tmp_path / "run.mp4").exists()


def test_steps_option_is_bounded(tiny_checkpoint, capsys):
    assert "--steps must be at most 1000, got 1001" in play(capsys, "--checkpoint", str(tiny_checkpoint),
                                                            "--steps", "1001")
