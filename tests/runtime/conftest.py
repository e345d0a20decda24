"""Shared pieces of the runtime tests: a game loop over the tiny checkpoint, driven by posted events."""

import dataclasses

import pygame
import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.input.replay import ActionLogHeader
from worldsim.runtime.loop import GameLoop
from worldsim.runtime.profile import load_profile
from worldsim.runtime.session import WorldSession


def key_event(kind: int, name: str) -> pygame.event.Event:
    from worldsim.input.events import KEY_CODES

    return pygame.event.Event(kind, key={n: c for c, n in KEY_CODES.items()}[name])


def post_presses(*names: str) -> None:
    """Post key presses (down and up) as the window would deliver them."""
    for name in names:
        pygame.event.post(key_event(pygame.KEYDOWN, name))
        pygame.event.post(key_event(pygame.KEYUP, name))


@pytest.fixture
def press():
    """press("p", "n"): post key presses for the loop's next iteration."""
    return post_presses


@pytest.fixture
def hold():
    """hold("w"): post a key-down only (the key stays held)."""
    return lambda name: pygame.event.post(key_event(pygame.KEYDOWN, name))


@pytest.fixture
def make_loop(tiny_checkpoint, tmp_path):
    """A headless GameLoop factory: make_loop(source, profile_changes={...}, **GameLoop kwargs); loops are closed
    after the test."""
    loops = []

    def make(source, seed: int = 0, profile_changes: dict | None = None, **kwargs) -> GameLoop:
        checkpoint = load_checkpoint(tiny_checkpoint)
        session = WorldSession(checkpoint, seed=seed)
        profile = dataclasses.replace(load_profile("desktop"), record_dir=str(tmp_path / "recordings"),
                                      window_scale=2, **(profile_changes or {}))
        header = ActionLogHeader(scheme="camera", encoding=session.scheme.encoding_dict(), seed=seed, steps=1,
                                 checkpoint="test")
        kwargs.setdefault("fps", None)
        loop = GameLoop(session, source, profile, header, **kwargs)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        if loop.running or loop.recording is not None:
            loop.close()
        loop.stop_signal.uninstall()  # a kiosk loop that quit without close() still holds SIGTERM


class FakePads:
    """Stands in for SDL's controller API: device index i opens a pad with instance id PAD_ID + i."""

    PAD_ID = 7

    def __init__(self):
        self.closed: list[int] = []

    def gamepads(self):
        from worldsim.input.devices import Gamepads, Pad

        def open_pad(index: int) -> Pad:
            return Pad(self.PAD_ID + index, f"Fake Pad {index}", "controller", lambda: self.closed.append(index))

        return Gamepads(open_controller=open_pad, open_joystick=open_pad, is_controller=lambda i: True)


@pytest.fixture
def fake_pads():
    return FakePads()
