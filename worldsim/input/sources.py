"""Input sources: what the game loop polls once per frame for the player's controls.

Every source (live keyboard/mouse/gamepad, a scripted program, a replayed log) returns the same
`ControllerState`, so the loop, the scheme and the model never know where the controls came from. Besides
controls, a source may ask the loop for a `Command` (a replay resets the world where the recording did; a
finished program ends the run) and may leave a notice for the HUD (a gamepad was plugged in).

`--input` specs: `keyboard`, `gamepad`, `scripted` (the built-in exploration program), `scripted:NAME|FILE`,
`replay:FILE`.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Protocol

import pygame

from worldsim.errors import WorldsimError
from worldsim.input.state import ControllerState


class Command(enum.Enum):
    """What a key, a pad button or a source can ask of the game loop (besides controlling the world)."""

    QUIT = "quit"
    PAUSE = "pause"  # toggle
    STEP = "step"  # one frame while paused
    RESET = "reset"  # back to the start point
    NEXT_START = "next_start"  # the checkpoint's next start frame, then a reset
    RECORD = "record"  # toggle recording
    HELP = "help"  # toggle the keys overlay
    HUD = "hud"  # toggle the player's HUD (fps, what is pressed)
    MINIMAP = "minimap"  # toggle the minimap (a world with a learned movement)
    DEV_HUD = "dev_hud"  # toggle the developer's HUD (per-stage times, latency, control values)
    FULLSCREEN = "fullscreen"  # toggle


class InputSource(Protocol):
    label: str  # shown in the HUD: "keyboard", "scripted: explore", "replay: run.actions.jsonl"
    length: int | None  # frames it can provide; None = endless (live input, a looping program)
    expected_hash: str | None  # replay only: the recorded hash of the frame the last polled state produced
    expected_pose: tuple[float, float, float] | None  # replay only: the pose it recorded after that frame, if any
    notices: list[str]  # messages for the HUD, taken (and cleared) by the loop
    # a replay: the start frame its latest reset went back to, which the loop's reset then uses; None: the
    # loop's own choice (the player's start point)
    start: int | None

    def poll(self, events: list[pygame.event.Event], commands: list[Command]) -> ControllerState:
        """This frame's controls, given this frame's events; may append commands for the loop."""
        ...

    def close(self) -> None:
        ...


INPUT_KINDS = ("keyboard", "gamepad", "scripted", "replay")
INPUT_SPEC_HELP = "keyboard, gamepad, scripted, scripted:NAME|FILE or replay:FILE"


def parse_input_spec(spec: str) -> tuple[str, str | None]:
    """`scripted:moves.yaml` -> ("scripted", "moves.yaml"); refuses unknown kinds with the allowed forms."""
    kind, _, argument = spec.partition(":")
    if kind not in INPUT_KINDS:
        raise WorldsimError(f"--input {spec!r}: unknown input; allowed: {INPUT_SPEC_HELP}")
    if kind in ("keyboard", "gamepad") and argument:
        raise WorldsimError(f"--input {spec!r}: {kind} takes no file; allowed: {INPUT_SPEC_HELP}")
    if kind == "replay" and not argument:
        raise WorldsimError(f"--input {spec!r}: replay needs the action log to play, "
                            "e.g. replay:run.actions.jsonl")
    return kind, argument or None


def open_source(spec: str) -> InputSource:
    """Build the source an `--input` spec names (files are read and validated now, not mid-game)."""
    from worldsim.input.devices import LiveInput
    from worldsim.input.program import DEFAULT_PROGRAM, ScriptedInput, load_program
    from worldsim.input.replay import ReplayInput, read_action_log

    kind, argument = parse_input_spec(spec)
    if kind == "keyboard":
        return LiveInput(gamepads=False)
    if kind == "gamepad":
        return LiveInput(gamepads=True)
    if kind == "scripted":
        return ScriptedInput(load_program(argument or DEFAULT_PROGRAM))
    return ReplayInput(read_action_log(Path(argument)))
