"""Scripted action programs: a list of segments, each holding some controls for a number of frames.

    name: explore
    loop: true
    segments:
      - {frames: 24, keys: [w]}                 # walk forward for 24 frames
      - {frames: 12, axes: {right_x: 0.5}}      # turn right at half stick (implies a connected gamepad)
      - {frames: 8, mouse: [12, 0]}             # mouse moved 12 px right each frame
      - {frames: 6}                             # stand still

A program drives the physical controls (keys, sticks), not the model's condition, so one program plays any
scheme that binds those controls. Programs are YAML or JSON (a mapping as above, or just the list of
segments); shipped ones live in assets/programs and are named without the extension (`--input
scripted:explore`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pygame

from worldsim.config import ASSETS_DIR, ConfigError, from_dict, load_json, load_yaml, rng
from worldsim.input.sources import Command
from worldsim.input.state import GAMEPAD_AXES, GAMEPAD_BUTTONS, KEY_NAMES, MOUSE_BUTTONS, ControllerState

PROGRAMS_DIR = ASSETS_DIR / "programs"
DEFAULT_PROGRAM = "explore"  # what `--input scripted` plays without a file
MAX_SEGMENT_FRAMES = 1_000_000
MAX_SEGMENTS = 10_000  # a hand-written program has tens; a million took over a minute to load
MAX_MOUSE_PIXELS = 10_000.0
TRIGGERS = ("trigger_left", "trigger_right")


@dataclass(frozen=True)
class Segment:
    frames: int = field(metadata=rng(1, MAX_SEGMENT_FRAMES))
    keys: tuple[str, ...] = ()
    mouse: tuple[float, float] = field(default=(0.0, 0.0), metadata=rng(-MAX_MOUSE_PIXELS, MAX_MOUSE_PIXELS))
    mouse_buttons: tuple[str, ...] = ()
    axes: dict[str, float] = field(default_factory=dict, metadata=rng(-1.0, 1.0))
    buttons: tuple[str, ...] = ()

    def state(self) -> ControllerState:
        """The controls held during this segment; sticks or pad buttons imply a connected gamepad."""
        return ControllerState(
            keys=frozenset(self.keys), mouse_dx=self.mouse[0], mouse_dy=self.mouse[1],
            mouse_buttons=frozenset(self.mouse_buttons), axes=MappingProxyType(dict(self.axes)),
            buttons=frozenset(self.buttons), gamepad_connected=bool(self.axes or self.buttons))


@dataclass(frozen=True)
class ActionProgram:
    segments: tuple[Segment, ...]
    name: str = "program"
    description: str = ""
    loop: bool = False  # start over after the last segment (an endless program)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a program needs at least one segment")

    @property
    def frames(self) -> int:
        """Frames of one pass through the segments."""
        return sum(s.frames for s in self.segments)


def shipped_programs() -> dict[str, Path]:
    """The program registry: name -> file shipped in assets/programs."""
    return {p.stem: p for p in sorted([*PROGRAMS_DIR.glob("*.yaml"), *PROGRAMS_DIR.glob("*.json")])}


def load_program(name_or_path: str | Path) -> ActionProgram:
    """A shipped program by name or a YAML/JSON file by path; a mistake is a ConfigError naming file, key."""
    registry = shipped_programs()
    path = registry.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():  # a folder, FIFO or device is refused by the loader, naming what it is
        raise ConfigError(path, "", "no such program file or shipped program name", str(name_or_path),
                          ", ".join(registry) + ", or a path to a .yaml/.json file")
    data = load_json(path) if path.suffix.lower() == ".json" else load_yaml(path)
    return program_from_data(data, path)


def program_from_data(data: Any, file: str | Path | None = None) -> ActionProgram:
    if isinstance(data, list):
        data = {"segments": data}
    if isinstance(data, dict) and "name" not in data and file is not None:
        data = {**data, "name": Path(file).stem}
    segments = data.get("segments") if isinstance(data, dict) else None
    if isinstance(segments, list) and len(segments) > MAX_SEGMENTS:
        raise ConfigError(file, "segments", "too many segments", len(segments), f"at most {MAX_SEGMENTS}")
    program = from_dict(ActionProgram, data, file=file)
    for i, segment in enumerate(program.segments):
        _check_names(segment, file, f"segments[{i}]")
    return program


def _check_names(segment: Segment, file: str | Path | None, path: str) -> None:
    tables = (("keys", segment.keys, KEY_NAMES), ("mouse_buttons", segment.mouse_buttons, MOUSE_BUTTONS),
              ("buttons", segment.buttons, frozenset(GAMEPAD_BUTTONS)),
              ("axes", tuple(segment.axes), GAMEPAD_AXES))
    for what, names, allowed in tables:
        for name in names:
            if name not in allowed:
                raise ConfigError(file, f"{path}.{what}", f"unknown {what[:-1].replace('_', ' ')} name", name,
                                  ", ".join(sorted(allowed)))
    for trigger in TRIGGERS:
        if segment.axes.get(trigger, 0.0) < 0.0:
            raise ConfigError(file, f"{path}.axes.{trigger}", "out of range", segment.axes[trigger],
                              "0.0 to 1.0 (triggers are one-sided)")


class ScriptedInput:
    """Plays a program frame by frame; a program that does not loop ends the run (a QUIT command)."""

    expected_hash = None
    expected_pose = None
    start = None

    def __init__(self, program: ActionProgram):
        self.program = program
        self.label = f"scripted: {program.name}"
        self.length = None if program.loop else program.frames
        self.notices: list[str] = []
        # Resolved once: the hot path hands out the same state object for every frame of a segment.
        self._states = [s.state() for s in program.segments]
        self._frames = [s.frames for s in program.segments]
        self._segment = 0
        self._left = self._frames[0]

    def poll(self, events: list[pygame.event.Event], commands: list[Command]) -> ControllerState:
        if self._left == 0:
            self._segment += 1
            if self._segment == len(self._states):
                if not self.program.loop:
                    commands.append(Command.QUIT)
                    self._segment -= 1  # stay finished: later polls end the run too
                    return ControllerState()
                self._segment = 0
            self._left = self._frames[self._segment]
        self._left -= 1
        return self._states[self._segment]

    def close(self) -> None:
        pass
