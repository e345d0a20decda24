"""A person recording with keyboard and mouse: pure event handling, and the window loop driven headless."""

from __future__ import annotations

import numpy as np
import pygame
import pytest
from data_fakes import FakeEnv

from worldsim.data.human import KeyboardMouse, KeyboardPolicy
from worldsim.data.record import record
from worldsim.data.storage import load_episodes


def key(kind: int, name: str) -> pygame.event.Event:
    code = getattr(pygame, "K_" + (name if len(name) == 1 else name.upper()))  # K_w, K_LEFT, K_ESCAPE
    return pygame.event.Event(kind, key=code)


def test_events_update_held_keys_mouse_and_quit():
    state = KeyboardMouse()
    state.handle(key(pygame.KEYDOWN, "w"))
    state.handle(key(pygame.KEYDOWN, "left"))
    state.handle(pygame.event.Event(pygame.MOUSEMOTION, rel=(5, -2)))
    state.handle(pygame.event.Event(pygame.MOUSEMOTION, rel=(3, 0)))
    state.handle(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=3))
    state.handle(key(pygame.KEYUP, "left"))
    first = state.take_state()
    assert first.keys == {"w"} and first.mouse_buttons == {"right"}
    assert (first.mouse_dx, first.mouse_dy) == (8, -2)
    second = state.take_state()  # mouse motion is per frame; held keys persist
    assert second.keys == {"w"} and (second.mouse_dx, second.mouse_dy) == (0, 0)
    state.handle(pygame.event.Event(pygame.WINDOWFOCUSLOST))
    assert state.take_state().keys == frozenset()
    assert not state.quit
    state.handle(key(pygame.KEYDOWN, "escape"))
    assert state.quit


@pytest.fixture
def window():
    yield
    pygame.display.quit()


def test_keyboard_recording_headless(tmp_path, camera, window):
    env = FakeEnv(camera, resolution=(32, 24))
    policy = KeyboardPolicy(camera, env.resolution, fps=None, scale=2)
    assert policy.screen.get_size() == (64, 48)
    pygame.event.post(key(pygame.KEYDOWN, "w"))
    pygame.event.post(key(pygame.KEYDOWN, "right"))
    index = record(env, policy, tmp_path / "mine", episodes=1, steps=6, seed=0, val_fraction=0,
                   progress=False)
    (episode,) = load_episodes(index.root)
    assert len(episode) == 7
    np.testing.assert_array_equal(episode.actions[1:], [[1.0, 0.0, 1.0, 0.0]] * 6)  # w: forward, right: yaw
    assert np.all(np.diff(episode.poses[:, 2]) != 0)
    assert episode.metadata["policy"]["name"] == "keyboard"


def test_quitting_keeps_what_was_played(tmp_path, camera, window):
    env = FakeEnv(camera, resolution=(32, 24))
    policy = KeyboardPolicy(camera, env.resolution, fps=None, scale=1)
    pygame.event.post(key(pygame.KEYDOWN, "a"))
    calls = {"n": 0}
    act = policy.act

    def act_then_quit(frame, pose):
        calls["n"] += 1
        if calls["n"] == 4:  # the player closes the window during the 4th frame
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return act(frame, pose)

    policy.act = act_then_quit
    index = record(env, policy, tmp_path / "mine", episodes=3, steps=50, seed=0, val_fraction=0,
                   progress=False)
    assert [e.frames for e in index.episodes] == [4]  # frames 0-3; the 4th frame's events asked to stop
    (episode,) = load_episodes(index.root)
    np.testing.assert_array_equal(episode.actions[1:, 1], -1.0)  # 'a' strafes left


def test_record_cli_keyboard_plays_the_real_engine(tmp_path, window, monkeypatch):
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.cli import main

    pygame.display.init()
    pygame.display.set_mode((8, 8))
    pygame.event.post(key(pygame.KEYDOWN, "w"))
    act, frames = KeyboardPolicy.act, []

    def act_then_close(self, frame, pose):
        frames.append(frame)
        if len(frames) == 6:  # the player closes the window while the 6th frame is shown
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return act(self, frame, pose)

    monkeypatch.setattr(KeyboardPolicy, "act", act_then_close)
    code = main(["record", "--env", "doom", "--input", "keyboard", "--episodes", "1", "--steps", "200",
                 "--out", str(tmp_path / "mine"), "--no-progress", "--scale", "1"])
    assert code == 0
    (episode,) = load_episodes(tmp_path / "mine")
    assert len(episode) == 6  # stopped by the window closing, not by --steps
    np.testing.assert_array_equal(episode.frames, np.array(frames))  # recorded: what the player saw
    assert np.all(episode.actions[1:, 0] == 1.0)  # 'w' held: full forward
    assert np.hypot(*(episode.poses[-1, :2] - episode.poses[0, :2])) > 5.0
