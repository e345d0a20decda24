"""Synthetic pygame events -> ControllerState -> scheme.encode: keyboard, mouse and gamepads with hot-plug."""

import numpy as np
import pygame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldsim.conditioning.scheme import load_scheme
from worldsim.input.devices import Gamepads, LiveInput, Pad
from worldsim.input.events import KEY_CODES, next_frame, update
from worldsim.input.state import ControllerState

GRID = (6, 8)
PAD_ID = 7


def key(kind: int, name: str) -> pygame.event.Event:
    code = {n: c for c, n in KEY_CODES.items()}[name]
    return pygame.event.Event(kind, key=code)


def axis(value: float, which: int = pygame.CONTROLLER_AXIS_RIGHTX, pad: int = PAD_ID) -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=pad, axis=which,
                              value=round(value * 32767))


def added(index: int = 0) -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERDEVICEADDED, device_index=index)


def removed(pad: int = PAD_ID) -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERDEVICEREMOVED, instance_id=pad)


class FakePads:
    """Stands in for SDL: opening device index i gives a pad with instance id PAD_ID + i."""

    def __init__(self):
        self.opened: list[int] = []
        self.closed: list[int] = []

    def open(self, index: int, api: str = "controller") -> Pad:
        self.opened.append(index)
        return Pad(PAD_ID + index, f"Fake Pad {index}", api, lambda: self.closed.append(index))

    def gamepads(self, controller_api: bool = True) -> Gamepads:
        return Gamepads(open_controller=self.open if controller_api else None,
                        open_joystick=lambda i: self.open(i, "joystick"),
                        is_controller=lambda i: controller_api)


@pytest.fixture
def camera():
    return load_scheme("camera")


def action(scheme, state: ControllerState) -> dict[str, float]:
    condition = scheme.encode(state, GRID)
    return dict(zip(scheme.control_names, condition.action.tolist()))


def test_keys_through_the_event_queue_reach_the_condition(camera):
    pygame.display.init()
    try:
        pygame.event.clear()
        for event in (key(pygame.KEYDOWN, "w"), key(pygame.KEYDOWN, "right")):
            pygame.event.post(event)
        source = LiveInput(gamepads=False)
        state = source.poll(pygame.event.get(), [])
    finally:
        pygame.display.quit()
    assert state.keys == {"w", "right"}
    neutral = camera.encode(ControllerState(), GRID)
    pressed = camera.encode(state, GRID)
    assert action(camera, state) == {"forward": 1.0, "strafe": 0.0, "yaw": 1.0, "use": 0.0}
    assert not np.array_equal(pressed.tokens, neutral.tokens)  # the ray maps move with the command
    released = update(update(state, key(pygame.KEYUP, "w")), key(pygame.KEYUP, "right"))
    assert released == ControllerState()


def test_unknown_keys_and_focus_loss():
    state = update(ControllerState(), pygame.event.Event(pygame.KEYDOWN, key=pygame.K_KP_5))
    assert state == ControllerState()  # keypad keys are not in the key table: ignored
    state = update(state, key(pygame.KEYDOWN, "w"))
    state = update(state, pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=3))
    assert state.keys == {"w"} and state.mouse_buttons == {"right"}
    state = update(state, pygame.event.Event(pygame.WINDOWFOCUSLOST))
    assert state.keys == frozenset() and state.mouse_buttons == frozenset()


def test_mouse_motion_is_per_frame(camera):
    state = ControllerState()
    for dx in (4, 6, 10):
        motion = pygame.event.Event(pygame.MOUSEMOTION, rel=(dx, -1), pos=(0, 0), buttons=(0, 0, 0))
        state = update(state, motion)
    assert (state.mouse_dx, state.mouse_dy) == (20, -3)
    assert action(camera, state)["yaw"] == pytest.approx(1.0)  # 20 px * 0.05 per px, clamped
    assert next_frame(state).mouse_dx == 0.0 and action(camera, next_frame(state))["yaw"] == 0.0


def test_gamepad_unplug_and_replug_keeps_playing(camera):
    fakes = FakePads()
    source = LiveInput(gamepads=fakes.gamepads())
    state = source.poll([added(0), axis(1.0), key(pygame.KEYDOWN, "w")], [])
    assert state.gamepad_connected and action(camera, state)["yaw"] == pytest.approx(1.0)
    assert source.notices == ["gamepad connected: Fake Pad 0"]
    # unplugged with the stick held: the stick is released, the keyboard keeps driving
    state = source.poll([removed()], [])
    assert not state.gamepad_connected and state.axes == {}
    assert action(camera, state) == {"forward": 1.0, "strafe": 0.0, "yaw": 0.0, "use": 0.0}
    assert fakes.closed == [0] and "disconnected" in source.notices[-1]
    state = source.poll([axis(-1.0)], [])  # a stale event of the unplugged pad changes nothing
    assert action(camera, state)["yaw"] == 0.0
    # plugged back in: the same pad drives again
    state = source.poll([added(0), axis(-1.0)], [])
    assert state.gamepad_connected and action(camera, state)["yaw"] == pytest.approx(-1.0)
    assert fakes.opened == [0, 0]


def test_controller_input_is_not_counted_twice_as_joystick_input():
    fakes = FakePads()
    source = LiveInput(gamepads=fakes.gamepads())
    joy_added = pygame.event.Event(pygame.JOYDEVICEADDED, device_index=0)
    state = source.poll([joy_added, added(0)], [])  # SDL sends both for a mapped pad
    assert fakes.opened == [0] and len(source.gamepads.pads) == 1
    stray = pygame.event.Event(pygame.JOYAXISMOTION, instance_id=PAD_ID, axis=0, value=1.0)
    state = source.poll([stray], [])
    assert state.axes == {}


def test_joystick_fallback_for_unmapped_pads(camera):
    fakes = FakePads()
    source = LiveInput(gamepads=fakes.gamepads(controller_api=False))
    events = [pygame.event.Event(pygame.JOYDEVICEADDED, device_index=0),
              pygame.event.Event(pygame.JOYAXISMOTION, instance_id=PAD_ID, axis=1, value=-1.0),
              pygame.event.Event(pygame.JOYHATMOTION, instance_id=PAD_ID, hat=0, value=(1, 0)),
              pygame.event.Event(pygame.JOYBUTTONDOWN, instance_id=PAD_ID, button=0)]
    state = source.poll(events, [])
    assert state.axes == {"left_y": -1.0} and state.buttons == {"dpad_right", "a"}
    assert action(camera, state) == {"forward": 1.0, "strafe": 0.0, "yaw": 1.0, "use": 1.0}
    state = source.poll([pygame.event.Event(pygame.JOYDEVICEREMOVED, instance_id=PAD_ID)], [])
    assert state == ControllerState()


def test_keyboard_input_ignores_gamepads():
    source = LiveInput(gamepads=False)
    state = source.poll([added(0), axis(1.0)], [])
    assert state == ControllerState() and source.notices == []


def test_triggers_are_one_sided():
    trigger = pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=1,
                                 axis=pygame.CONTROLLER_AXIS_TRIGGERLEFT, value=-5)
    assert update(ControllerState(), trigger).axes == {"trigger_left": 0.0}


KEY_NAMES = sorted(set(KEY_CODES.values()))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEY_NAMES), st.booleans()), max_size=30))
def test_held_keys_are_the_pressed_and_not_released(presses):
    state, held = ControllerState(), set()
    for name, down in presses:
        state = update(state, key(pygame.KEYDOWN if down else pygame.KEYUP, name))
        (held.add if down else held.discard)(name)
    assert state.keys == held
    assert ControllerState.from_json(state.to_json()) == state  # what the action log stores round-trips
