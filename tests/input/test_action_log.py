"""Action logs: a written log reads back; malformed ones fail naming file, line and what is allowed."""

import json
import tracemalloc

import pytest

from worldsim.input import replay
from worldsim.input.replay import (
    MAX_LINE_BYTES,
    RESET_LINE,
    ActionLogError,
    ActionLogHeader,
    ReplayInput,
    frame_line,
    header_line,
    read_action_log,
    reset_line,
)
from worldsim.input.sources import Command, open_source
from worldsim.input.state import ControllerState

HEADER = ActionLogHeader(scheme="camera", encoding={"type": "camera"}, seed=3, steps=1, checkpoint="abc")
HASH = "0" * 64


def write_log(tmp_path, lines: list[str]):
    path = tmp_path / "run.actions.jsonl"
    path.write_text("".join(lines))
    return path


def state_line(state: ControllerState, frame: int = 1) -> str:
    return frame_line(frame, json.dumps(state.to_json()), HASH)


def test_log_round_trip_and_replay_order(tmp_path):
    walk = ControllerState(keys=frozenset({"w"}))
    look = ControllerState(axes={"right_x": 0.5}, gamepad_connected=True)
    path = write_log(tmp_path, [header_line(HEADER), RESET_LINE, state_line(walk), state_line(look, 2),
                                RESET_LINE, state_line(walk)])
    log = read_action_log(path)
    assert log.header == HEADER and log.frames == 3
    source = open_source(f"replay:{path}")
    assert isinstance(source, ReplayInput) and source.length == 3
    commands: list[Command] = []
    assert source.poll([], commands) == walk and commands == [] and source.expected_hash == HASH
    assert source.poll([], commands) == look
    assert source.poll([], commands) == walk and commands == [Command.RESET]
    commands.clear()
    source.poll([], commands)
    assert commands == [Command.QUIT]


def test_a_logged_pose_reads_back_to_the_same_floats(tmp_path):
    pose = (123.456789012345, -0.1 + 0.2, 359.99999999999994)
    line = frame_line(1, json.dumps(ControllerState().to_json()), HASH, pose)
    log = read_action_log(write_log(tmp_path, [header_line(HEADER), RESET_LINE, line]))
    assert log.entries[1].pose == pose


@pytest.mark.parametrize("lines,message", [
    ([], "empty file"),
    (['{"scheme": "camera"}\n'], "line 1: not a worldsim action log"),
    (["not json\n"], "line 1: invalid JSON"),
    ([header_line(HEADER).replace('"seed": 3', '"seed": "x"')], "line 1: 'seed': wrong type"),
    ([header_line(HEADER).replace('"version": 1', '"version": 99')], "newer than this worldsim"),
    ([header_line(HEADER), '{"frame": 1, "state": {}}\n'], "line 2: an action log must start with a reset"),
    ([header_line(HEADER), RESET_LINE, '{"state": {"keys": ["ww"]}}\n'], "line 3: 'state': 'keys'"),
    ([header_line(HEADER), RESET_LINE, '{"state": {}, "hash": 1}\n'], "line 3: unknown key 'hash'"),
    ([header_line(HEADER), RESET_LINE, '{"frame": 1}\n'], "line 3: expected a 'state'"),
    ([header_line(HEADER), RESET_LINE, '{"state": {}, "sha256": "12"}\n'], "line 3: 'sha256' must be 64 hex"),
    ([header_line(HEADER), RESET_LINE, "[1, 2]\n"], "line 3: expected a JSON object"),
    ([header_line(HEADER), '{"reset": true, "start": -1}\n'], "line 2: 'start' must be the index of a start frame"),
    ([header_line(HEADER), '{"reset": true, "start": true}\n'], "line 2: 'start' must be the index"),
    ([header_line(HEADER), RESET_LINE, '{"frame": 1, "state": {}, "start": 1}\n'],
     "line 3: 'start' belongs on a reset line"),
    ([header_line(HEADER), RESET_LINE, '{"frame": 1, "state": {}, "pose": [1, 2]}\n'],
     "line 3: 'pose' must be [x, y, heading]"),
    ([header_line(HEADER), RESET_LINE, '{"frame": 1, "state": {}, "pose": [1, 2, NaN]}\n'],
     "line 3: 'pose' must be [x, y, heading], three finite numbers"),
])
def test_malformed_logs_are_clear(tmp_path, lines, message):
    path = write_log(tmp_path, lines)
    with pytest.raises(ActionLogError) as err:
        read_action_log(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_log_and_bad_specs(tmp_path):
    with pytest.raises(ActionLogError, match="no such action log"):
        open_source(f"replay:{tmp_path / 'nope.actions.jsonl'}")
    with pytest.raises(Exception, match="replay needs the action log"):
        open_source("replay")


def header_with(**changes) -> str:
    return json.dumps({**json.loads(header_line(HEADER)), **changes}) + "\n"


WALK = state_line(ControllerState(keys=frozenset({"w"})))


@pytest.mark.parametrize("lines,message", [
    ([header_with(steps=-1), RESET_LINE], "line 1: 'steps': out of range (got -1); allowed: 1 to 1000"),
    ([header_with(steps=0), RESET_LINE], "'steps': out of range (got 0)"),
    ([header_with(steps=10 ** 9), RESET_LINE], "'steps': out of range (got 1000000000)"),
    ([header_with(threads=10 ** 9), RESET_LINE], "'threads': out of range"),
    ([header_with(fps=-1), RESET_LINE], "'fps': out of range"),
    ([header_with(video_first_frame=5), RESET_LINE, WALK], "'video_first_frame' is 5, but the log holds 1 frames"),
    ([header_line(HEADER), RESET_LINE, WALK.replace('"frame": 1', '"frame": 0')],
     "line 3: 'frame' is 0, but this is frame line 1 since the last reset; allowed: 1 to 1"),
    ([header_line(HEADER), RESET_LINE, WALK, WALK.replace('"frame": 1', '"frame": 3')], "line 4: 'frame' is 3"),
    ([header_line(HEADER), RESET_LINE, WALK.replace('"frame": 1', '"frame": "1"')], "line 3: 'frame' must be"),
    ([header_line(HEADER), RESET_LINE, '{"state": {}}\n'], "line 3: 'frame' must be the frame's number"),
    ([header_line(HEADER), RESET_LINE, WALK.replace(HASH, "g" * 64)], "line 3: 'sha256' must be 64 hex digits"),
    ([header_line(HEADER), RESET_LINE, "[" * 20_000 + "]" * 20_000 + "\n"], "line 3: JSON nested too deeply"),
    ([header_line(HEADER), RESET_LINE, '{"frame": ' + "1" * 5000 + "}\n"], "line 3: a number in the JSON has too"),
    ([header_line(HEADER), RESET_LINE, " " * (MAX_LINE_BYTES + 1) + "\n"], "line 3: line too long"),
])
def test_header_and_entries_are_checked_against_the_content(tmp_path, lines, message):
    path = write_log(tmp_path, lines)
    with pytest.raises(ActionLogError) as err:
        read_action_log(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_frames_restart_at_each_reset_and_may_rewind(tmp_path):
    """After a fault the world rewinds to a snapshot and the recording goes on from the snapshot's number."""
    lines = [header_line(HEADER), RESET_LINE, WALK, state_line(ControllerState(), 2), state_line(ControllerState(), 3),
             state_line(ControllerState(), 2), RESET_LINE, WALK]
    assert read_action_log(write_log(tmp_path, lines)).frames == 5


def test_special_and_oversized_logs_are_refused(tmp_path, make_special, monkeypatch):
    path = make_special(tmp_path / "special.actions.jsonl")
    with pytest.raises(ActionLogError, match=f"cannot read action log: is {make_special.kind}, not a regular"):
        read_action_log(path)
    monkeypatch.setattr(replay, "MAX_LOG_BYTES", 100)
    path = write_log(tmp_path, [header_line(HEADER), RESET_LINE, WALK])
    with pytest.raises(ActionLogError, match="file too large .*; allowed: at most 100 bytes"):
        read_action_log(path)


def test_logs_are_streamed_not_held_in_memory(tmp_path):
    """A long log is checked and replayed line by line: memory does not grow with its length."""
    frames = 10_000
    states = [ControllerState(mouse_dx=float(i % 997)) for i in range(frames)]  # all different, like a mouse
    path = write_log(tmp_path, [header_line(HEADER), RESET_LINE,
                                *(state_line(s, i) for i, s in enumerate(states, 1))])
    assert path.stat().st_size > 1_500_000
    tracemalloc.start()
    try:
        log = read_action_log(path)
        source = ReplayInput(log)
        for expected in states:
            assert source.poll([], []) == expected
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    source.close()
    assert log.frames == frames and peak < 1_000_000


def test_resets_name_their_start_frame(tmp_path):
    """A reset to another start point says which; the first start frame is written as logs always were."""
    assert reset_line(0) == RESET_LINE
    walk = ControllerState(keys=frozenset({"w"}))
    path = write_log(tmp_path, [header_line(HEADER), reset_line(2), state_line(walk), reset_line(0),
                                state_line(walk)])
    assert [entry.start for entry in read_action_log(path).entries if entry.state is None] == [2, 0]
    source = open_source(f"replay:{path}")
    assert source.start == 2  # the loop's first reset goes there
    commands: list[Command] = []
    source.poll([], commands)
    source.poll([], commands)
    assert commands == [Command.RESET] and source.start == 0
