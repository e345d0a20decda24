"""Action logs: a written log reads back; malformed ones fail naming file, line and what is allowed."""

import json

import pytest

from worldsim.input.replay import (
    RESET_LINE,
    ActionLogError,
    ActionLogHeader,
    ReplayInput,
    frame_line,
    header_line,
    read_action_log,
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
