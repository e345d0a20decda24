"""pygame events -> ControllerState, as a pure state update: `update(state, event) -> new state`.

The tables below translate pygame-ce's numeric codes (key codes, SDL game-controller axes and buttons,
joystick indices, mouse buttons) into the names `ControllerState` and the schemes use. No device is opened
here and nothing is mutated, so tests drive this module with synthetic `pygame.event.Event`s and compare
states.

Which events reach `update` is the caller's business: `devices.LiveInput` forwards the ones from devices it
has opened, so a game controller (which SDL reports both as a controller and as a joystick) is counted once.
"""

from __future__ import annotations

import dataclasses
import string
from types import MappingProxyType

import pygame

from worldsim.input.state import ControllerState

# ---- tables: pygame codes -> names ------------------------------------------------------------------------

_NAMED_KEYS = {
    pygame.K_UP: "up", pygame.K_DOWN: "down", pygame.K_LEFT: "left", pygame.K_RIGHT: "right",
    pygame.K_SPACE: "space", pygame.K_RETURN: "return", pygame.K_ESCAPE: "escape", pygame.K_TAB: "tab",
    pygame.K_BACKSPACE: "backspace", pygame.K_LSHIFT: "left shift", pygame.K_RSHIFT: "right shift",
    pygame.K_LCTRL: "left ctrl", pygame.K_RCTRL: "right ctrl", pygame.K_LALT: "left alt",
    pygame.K_RALT: "right alt", pygame.K_PAGEUP: "page up", pygame.K_PAGEDOWN: "page down",
    pygame.K_HOME: "home", pygame.K_END: "end", pygame.K_INSERT: "insert", pygame.K_DELETE: "delete",
    pygame.K_MINUS: "-",
    pygame.K_EQUALS: "=", pygame.K_LEFTBRACKET: "[", pygame.K_RIGHTBRACKET: "]", pygame.K_SEMICOLON: ";",
    pygame.K_QUOTE: "'", pygame.K_COMMA: ",", pygame.K_PERIOD: ".", pygame.K_SLASH: "/",
    pygame.K_BACKSLASH: "\\", pygame.K_BACKQUOTE: "`",
}
# Key code -> the name `pygame.key.name` gives it (built from constants: that function needs pygame.init()).
KEY_CODES: dict[int, str] = {
    **{getattr(pygame, f"K_{c}"): c for c in string.ascii_lowercase + string.digits},
    **{getattr(pygame, f"K_F{i}"): f"f{i}" for i in range(1, 13)},
    **_NAMED_KEYS,
}
MOUSE_BUTTON_CODES: dict[int, str] = {1: "left", 2: "middle", 3: "right"}

# SDL game-controller API: every mapped pad reports the same layout.
CONTROLLER_AXES: dict[int, str] = {
    pygame.CONTROLLER_AXIS_LEFTX: "left_x", pygame.CONTROLLER_AXIS_LEFTY: "left_y",
    pygame.CONTROLLER_AXIS_RIGHTX: "right_x", pygame.CONTROLLER_AXIS_RIGHTY: "right_y",
    pygame.CONTROLLER_AXIS_TRIGGERLEFT: "trigger_left", pygame.CONTROLLER_AXIS_TRIGGERRIGHT: "trigger_right",
}
CONTROLLER_BUTTONS: dict[int, str] = {
    pygame.CONTROLLER_BUTTON_A: "a", pygame.CONTROLLER_BUTTON_B: "b", pygame.CONTROLLER_BUTTON_X: "x",
    pygame.CONTROLLER_BUTTON_Y: "y", pygame.CONTROLLER_BUTTON_BACK: "back",
    pygame.CONTROLLER_BUTTON_GUIDE: "guide", pygame.CONTROLLER_BUTTON_START: "start",
    pygame.CONTROLLER_BUTTON_LEFTSTICK: "left_stick", pygame.CONTROLLER_BUTTON_RIGHTSTICK: "right_stick",
    pygame.CONTROLLER_BUTTON_LEFTSHOULDER: "left_shoulder",
    pygame.CONTROLLER_BUTTON_RIGHTSHOULDER: "right_shoulder", pygame.CONTROLLER_BUTTON_DPAD_UP: "dpad_up",
    pygame.CONTROLLER_BUTTON_DPAD_DOWN: "dpad_down", pygame.CONTROLLER_BUTTON_DPAD_LEFT: "dpad_left",
    pygame.CONTROLLER_BUTTON_DPAD_RIGHT: "dpad_right",
}
CONTROLLER_AXIS_MAX = 32767  # SDL reports controller axes as int16
TRIGGERS = frozenset({"trigger_left", "trigger_right"})

# Raw joystick fallback (pads SDL has no controller mapping for): the common DirectInput layout. Unmapped
# pads vary, so this is a best guess; a pad SDL knows always goes through the controller tables above.
JOYSTICK_AXES: dict[int, str] = {0: "left_x", 1: "left_y", 2: "right_x", 3: "right_y"}
JOYSTICK_BUTTONS: dict[int, str] = {0: "a", 1: "b", 2: "x", 3: "y", 4: "left_shoulder", 5: "right_shoulder",
                                    6: "back", 7: "start", 8: "left_stick", 9: "right_stick"}
JOYSTICK_HAT_X = {-1: "dpad_left", 1: "dpad_right"}
JOYSTICK_HAT_Y = {1: "dpad_up", -1: "dpad_down"}  # hats report up as +1, the opposite of stick axes
HAT_BUTTONS = frozenset({"dpad_up", "dpad_down", "dpad_left", "dpad_right"})

GAMEPAD_ADDED = frozenset({pygame.CONTROLLERDEVICEADDED, pygame.JOYDEVICEADDED})
GAMEPAD_REMOVED = frozenset({pygame.CONTROLLERDEVICEREMOVED, pygame.JOYDEVICEREMOVED})
CONTROLLER_INPUT = frozenset({pygame.CONTROLLERAXISMOTION, pygame.CONTROLLERBUTTONDOWN,
                              pygame.CONTROLLERBUTTONUP})
JOYSTICK_INPUT = frozenset({pygame.JOYAXISMOTION, pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP,
                            pygame.JOYHATMOTION})

_NO_AXES = MappingProxyType({})

# ---- the pure update --------------------------------------------------------------------------------------


def update(state: ControllerState, event: pygame.event.Event) -> ControllerState:
    """The controller state after `event`; events that do not concern controls return `state` unchanged."""
    kind = event.type
    if kind == pygame.KEYDOWN or kind == pygame.KEYUP:
        name = KEY_CODES.get(event.key)
        if name is None:
            return state
        keys = state.keys | {name} if kind == pygame.KEYDOWN else state.keys - {name}
        return dataclasses.replace(state, keys=keys)
    if kind == pygame.MOUSEMOTION:
        dx, dy = event.rel
        return dataclasses.replace(state, mouse_dx=state.mouse_dx + dx, mouse_dy=state.mouse_dy + dy)
    if kind == pygame.MOUSEBUTTONDOWN or kind == pygame.MOUSEBUTTONUP:
        name = MOUSE_BUTTON_CODES.get(event.button)
        if name is None:
            return state
        down = kind == pygame.MOUSEBUTTONDOWN
        held = state.mouse_buttons | {name} if down else state.mouse_buttons - {name}
        return dataclasses.replace(state, mouse_buttons=held)
    if kind == pygame.CONTROLLERAXISMOTION:
        name = CONTROLLER_AXES.get(event.axis)
        if name is None:
            return state
        return _with_axis(state, name, event.value / CONTROLLER_AXIS_MAX)
    if kind == pygame.CONTROLLERBUTTONDOWN or kind == pygame.CONTROLLERBUTTONUP:
        name = CONTROLLER_BUTTONS.get(event.button)
        return state if name is None else _with_button(state, name, kind == pygame.CONTROLLERBUTTONDOWN)
    if kind == pygame.JOYAXISMOTION:
        name = JOYSTICK_AXES.get(event.axis)
        return state if name is None else _with_axis(state, name, event.value)
    if kind == pygame.JOYBUTTONDOWN or kind == pygame.JOYBUTTONUP:
        name = JOYSTICK_BUTTONS.get(event.button)
        return state if name is None else _with_button(state, name, kind == pygame.JOYBUTTONDOWN)
    if kind == pygame.JOYHATMOTION:
        x, y = event.value
        pressed = {JOYSTICK_HAT_X.get(x), JOYSTICK_HAT_Y.get(y)} - {None}
        return dataclasses.replace(state, buttons=(state.buttons - HAT_BUTTONS) | pressed)
    if kind in GAMEPAD_ADDED:
        return dataclasses.replace(state, gamepad_connected=True)
    if kind in GAMEPAD_REMOVED:
        return release_gamepad(state)
    if kind == pygame.WINDOWFOCUSLOST:
        # Key-ups of keys released while another window has focus never arrive: release everything held.
        return dataclasses.replace(state, keys=frozenset(), mouse_buttons=frozenset())
    return state


def release_gamepad(state: ControllerState) -> ControllerState:
    """The pad is gone: nothing it held stays held, so an unplugged pad never leaves the player walking."""
    return dataclasses.replace(state, axes=_NO_AXES, buttons=frozenset(), gamepad_connected=False)


def next_frame(state: ControllerState) -> ControllerState:
    """Start a new frame: mouse motion is per frame (held keys, buttons and stick positions carry over)."""
    if state.mouse_dx == 0.0 and state.mouse_dy == 0.0:
        return state
    return dataclasses.replace(state, mouse_dx=0.0, mouse_dy=0.0)


def _with_axis(state: ControllerState, name: str, value: float) -> ControllerState:
    low = 0.0 if name in TRIGGERS else -1.0
    axes = dict(state.axes)
    axes[name] = max(low, min(1.0, float(value)))
    return dataclasses.replace(state, axes=MappingProxyType(axes))


def _with_button(state: ControllerState, name: str, down: bool) -> ControllerState:
    return dataclasses.replace(state, buttons=state.buttons | {name} if down else state.buttons - {name})
