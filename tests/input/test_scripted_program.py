"""Scripted action programs: shipped ones play; malformed ones fail naming file, key and what's allowed."""

import json

import pytest

from worldsim.conditioning.scheme import load_scheme
from worldsim.config import ConfigError
from worldsim.input.program import DEFAULT_PROGRAM, MAX_SEGMENTS, ScriptedInput, load_program, shipped_programs
from worldsim.input.sources import Command, open_source
from worldsim.input.state import ControllerState


def write(tmp_path, text: str, name: str = "prog.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def play(source, frames: int):
    commands: list[Command] = []
    states = [source.poll([], commands) for _ in range(frames)]
    return states, commands


@pytest.mark.parametrize("name", sorted(shipped_programs()))
def test_shipped_programs_drive_every_shipped_scheme(name):
    program = load_program(name)
    states, _ = play(ScriptedInput(program), program.frames)
    for scheme in ("camera", "keys"):
        s = load_scheme(scheme)
        moving = sum(bool(s.action(state).any()) for state in states)
        assert moving > program.frames // 2, f"{name} barely moves scheme {scheme}"


def test_default_exploration_walks_turns_both_ways_strafes_and_stops():
    camera = load_scheme("camera")
    source = open_source("scripted")
    assert source.label == f"scripted: {DEFAULT_PROGRAM}" and source.length is None  # loops forever
    states, commands = play(source, 2 * load_program(DEFAULT_PROGRAM).frames)
    actions = [dict(zip(camera.control_names, camera.action(s).tolist())) for s in states]
    assert any(a["forward"] > 0 for a in actions) and any(a["forward"] < 0 for a in actions)
    assert any(a["yaw"] > 0 for a in actions) and any(a["yaw"] < 0 for a in actions)
    assert any(a["strafe"] > 0 for a in actions) and any(a["strafe"] < 0 for a in actions)
    assert any(not any(a.values()) for a in actions)
    assert commands == []


def test_program_segments_and_end(tmp_path):
    path = write(tmp_path, "segments:\n  - {frames: 2, keys: [w]}\n  - {frames: 1, axes: {right_x: 0.5}}\n")
    source = ScriptedInput(load_program(path))
    assert source.length == 3
    states, commands = play(source, 3)
    assert [s.keys for s in states] == [{"w"}, {"w"}, frozenset()]
    assert states[2].axes == {"right_x": 0.5} and states[2].gamepad_connected
    assert commands == []
    commands = []
    assert source.poll([], commands) == ControllerState() and commands == [Command.QUIT]


def test_json_programs_and_bare_lists(tmp_path):
    path = write(tmp_path, json.dumps([{"frames": 3, "mouse": [5, 0]}]), "p.json")
    program = load_program(path)
    assert program.name == "p" and program.segments[0].state().mouse_dx == 5.0


@pytest.mark.parametrize("text,where,allowed", [
    ("segments:\n  - {frames: 4, keys: [ww]}\n", "segments[0].keys", "backspace"),
    ("segments:\n  - {frames: 4}\n  - {frames: 0}\n", "segments[1].frames", "1 to"),
    ("segments:\n  - {frames: 4, jump: true}\n", "segments[0].jump", "frames, keys, mouse"),
    ("segments:\n  - {keys: [w]}\n", "segments[0].frames", "an integer"),
    ("segments:\n  - {frames: 4, axes: {right_x: 2}}\n", "segments[0].axes.right_x", "-1.0 to 1.0"),
    ("segments:\n  - {frames: 4, axes: {stick: 0.5}}\n", "segments[0].axes", "left_x"),
    ("segments:\n  - {frames: 4, axes: {trigger_left: -1}}\n", "segments[0].axes.trigger_left", "0.0 to 1.0"),
    ("segments:\n  - {frames: 4, buttons: [select]}\n", "segments[0].buttons", "dpad_up"),
    ("segments: []\n", "", "at least one segment"),
    ("loop: maybe\nsegments:\n  - {frames: 4}\n", "loop", "true or false"),
])
def test_malformed_programs_are_clear(tmp_path, text, where, allowed):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_program(path)
    message = str(err.value)
    assert str(path) in message and allowed in message
    if where:
        assert f"'{where}'" in message


def test_syntax_errors_name_the_line(tmp_path):
    with pytest.raises(ConfigError, match="line 2"):
        load_program(write(tmp_path, "segments:\n  - {frames: 4 keys: [w]}\n  - {frames: 4}\n"))
    with pytest.raises(ConfigError, match=r"p\.json.*line 2"):
        load_program(write(tmp_path, '[{"frames": 4},\n {"frames": }]', "p.json"))
    with pytest.raises(ConfigError, match="explore"):
        load_program(tmp_path / "missing.yaml")  # the message lists the shipped programs


@pytest.mark.parametrize("text,fragment", [
    (json.dumps([{"frames": 1}] * (MAX_SEGMENTS + 1)), f"'segments': too many segments (got {MAX_SEGMENTS + 1}); "
                                                       f"allowed: at most {MAX_SEGMENTS}"),
    (json.dumps([{"frames": 1, "keys": ["w"] * 200}] * 1000), "file too large"),
    ("[" * 20_000 + "]" * 20_000, "JSON nested too deeply"),
    ('[{"frames": ' + "1" * 5000 + "}]", "too many digits"),
], ids=["segments", "size", "depth", "digits"])
def test_json_programs_are_bounded(tmp_path, text, fragment):
    """A program of a million segments took over a minute to load; deep or huge JSON was a traceback."""
    path = write(tmp_path, text, "prog.json")
    with pytest.raises(ConfigError) as err:
        load_program(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("name", ["prog.yaml", "prog.json"])
def test_special_program_files_are_refused(tmp_path, make_special, name):
    path = make_special(tmp_path / name)
    with pytest.raises(ConfigError, match=f"is {make_special.kind}, not a regular file"):
        load_program(path)
