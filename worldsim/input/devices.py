"""Live input: keyboard, mouse and gamepads (with hot-plug) -> ControllerState.

Gamepads go through SDL's game-controller API (`pygame._sdl2.controller`), which gives every mapped pad the
same layout; pads SDL has no mapping for, or a pygame without that module, fall back to the raw joystick API.
SDL sends a device-added event for pads present at start-up as well as for pads plugged in later, so one code
path opens both, and unplugging mid-game only releases what the pad held: the game keeps running on the
keyboard until it comes back.

Opening devices is the only side effect here; the state change per event is `events.update`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pygame

from worldsim.input import events as ev
from worldsim.input.sources import Command
from worldsim.input.state import ControllerState

try:  # the SDL game-controller API is pygame-ce's (and pygame 2's) private-but-stable _sdl2 module
    from pygame._sdl2 import controller as sdl_controller
except ImportError:  # pragma: no cover - depends on the pygame build
    sdl_controller = None


@dataclass
class Pad:
    """An opened gamepad: its SDL instance id (what its events carry), a name for notices, how to close it."""

    instance_id: int
    name: str
    api: str  # "controller" (SDL mapping) or "joystick" (raw fallback)
    close: Callable[[], None]


def open_sdl_controller(device_index: int) -> Pad:
    pad = sdl_controller.Controller(device_index)
    return Pad(pad.as_joystick().get_instance_id(), pad.name, "controller", pad.quit)


def open_sdl_joystick(device_index: int) -> Pad:
    stick = pygame.joystick.Joystick(device_index)
    return Pad(stick.get_instance_id(), stick.get_name(), "joystick", stick.quit)


def sdl_is_controller(device_index: int) -> bool:
    return sdl_controller is not None and sdl_controller.is_controller(device_index)


class Gamepads:
    """The pads currently plugged in, opened and closed as SDL reports them.

    The openers are parameters so tests can plug in fake pads with synthetic device events.
    """

    def __init__(self, open_controller: Callable[[int], Pad] | None = None,
                 open_joystick: Callable[[int], Pad] = open_sdl_joystick,
                 is_controller: Callable[[int], bool] = sdl_is_controller):
        # No controller opener given: SDL's controller API where this pygame has it, else raw joysticks only.
        default_controller = open_sdl_controller if sdl_controller is not None else None
        self.open_controller = open_controller or default_controller
        self.open_joystick = open_joystick
        self.is_controller = is_controller
        self.pads: dict[int, Pad] = {}  # instance id -> pad

    @staticmethod
    def init_sdl() -> str | None:
        """Start SDL's joystick and controller subsystems; a notice if gamepads cannot work here."""
        try:
            pygame.joystick.init()
            if sdl_controller is not None:
                sdl_controller.init()
        except pygame.error as err:  # no joystick support in this SDL build or sandbox: keyboard only
            return f"gamepads unavailable ({err}); keyboard and mouse still work"
        return None

    @property
    def connected(self) -> bool:
        return bool(self.pads)

    def handle_device_event(self, event: pygame.event.Event) -> str | None:
        """Open or close the pad a device event is about; returns a notice for the player, if any."""
        if event.type == pygame.CONTROLLERDEVICEADDED and self.open_controller is not None:
            return self._open(self.open_controller, event.device_index)
        if event.type == pygame.JOYDEVICEADDED:
            if self.open_controller is not None and self.is_controller(event.device_index):
                return None  # SDL also sends CONTROLLERDEVICEADDED for this pad: it is opened from that one
            return self._open(self.open_joystick, event.device_index)
        if event.type in ev.GAMEPAD_REMOVED:
            pad = self.pads.pop(event.instance_id, None)
            if pad is None:  # the second of the controller/joystick pair of removal events
                return None
            pad.close()
            return f"gamepad disconnected: {pad.name}" + ("" if self.pads else " (keyboard still works)")
        return None

    def _open(self, opener: Callable[[int], Pad], device_index: int) -> str | None:
        try:
            pad = opener(device_index)
        except pygame.error as err:  # unplugged again before we got to it, or no permission on the device
            return f"gamepad could not be opened: {err}"
        if pad.instance_id in self.pads:
            return None
        self.pads[pad.instance_id] = pad
        return f"gamepad connected: {pad.name}"

    def owns(self, event: pygame.event.Event) -> bool:
        """Whether an input event comes from a pad opened through the API that event belongs to (SDL reports a
        mapped controller's input twice, as controller and as joystick events: only one of them counts)."""
        pad = self.pads.get(event.instance_id)
        if pad is None:
            return False
        return pad.api == ("controller" if event.type in ev.CONTROLLER_INPUT else "joystick")

    def close(self) -> None:
        for pad in self.pads.values():
            pad.close()
        self.pads.clear()


class LiveInput:
    """Keyboard and mouse, plus gamepads when `gamepads` is true: the player's own hands."""

    length = None
    expected_hash = None
    expected_pose = None
    start = None

    def __init__(self, gamepads: bool | Gamepads = True):
        self.gamepads = Gamepads() if gamepads is True else (gamepads or None)
        self.state = ControllerState()
        self.notices: list[str] = []
        if gamepads is True:
            notice = Gamepads.init_sdl()
            if notice is not None:
                self.notices.append(notice)

    @property
    def label(self) -> str:
        """What the HUD and the stats name: the pads actually plugged in, not the `--input` asked for."""
        if self.gamepads is not None and self.gamepads.connected:
            return "gamepad: " + ", ".join(pad.name for pad in self.gamepads.pads.values())
        return "keyboard + mouse"

    def poll(self, events: list[pygame.event.Event], commands: list[Command]) -> ControllerState:
        state = ev.next_frame(self.state)
        pads = self.gamepads
        for event in events:
            kind = event.type
            if kind in ev.CONTROLLER_INPUT or kind in ev.JOYSTICK_INPUT:
                if pads is not None and pads.owns(event):
                    state = ev.update(state, event)
            elif kind in ev.GAMEPAD_ADDED or kind in ev.GAMEPAD_REMOVED:
                if pads is None:
                    continue
                notice = pads.handle_device_event(event)
                if notice is not None:
                    self.notices.append(notice)
                if kind in ev.GAMEPAD_REMOVED:
                    state = ev.release_gamepad(state)
                state = dataclasses.replace(state, gamepad_connected=pads.connected)
            else:
                state = ev.update(state, event)
        self.state = state
        return state

    def close(self) -> None:
        if self.gamepads is not None:
            self.gamepads.close()
