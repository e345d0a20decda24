"""Kiosk mode: the pure state machines with a fake clock, then the game loop in kiosk mode with posted events."""

import time
from types import MappingProxyType

import pygame
import pytest

from worldsim.cli import main
from worldsim.config import ConfigError
from worldsim.input.devices import LiveInput
from worldsim.input.state import ControllerState
from worldsim.runtime import loop as loop_module
from worldsim.runtime.kiosk import (
    PLAYER_LOG_NAME,
    IdleWatch,
    Kiosk,
    KioskConfig,
    QuitCombo,
    Transition,
    player_is_active,
)
from worldsim.runtime.profile import load_profile, profile_from_data

IDLE = ControllerState()
WALKING = ControllerState(keys=frozenset({"w"}))
QUIT_KEYS = frozenset({"left ctrl", "left shift", "q"})


# ---- pure state machines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state,active", [
    (IDLE, False),
    (WALKING, True),
    (ControllerState(buttons=frozenset({"a"})), True),
    (ControllerState(mouse_buttons=frozenset({"left"})), True),
    (ControllerState(axes=MappingProxyType({"left_x": 0.2})), False),  # inside the dead zone: stick drift
    (ControllerState(axes=MappingProxyType({"left_x": -0.5})), True),
    (ControllerState(mouse_dx=3.0, mouse_dy=4.0), False),  # 5 px: a bumped mouse
    (ControllerState(mouse_dx=30.0), True),
])
def test_what_counts_as_a_player(state, active):
    assert player_is_active(state, dead_zone=0.3, mouse_px=8.0) is active


def test_mouse_motion_can_be_ignored_entirely():
    assert not player_is_active(ControllerState(mouse_dx=500.0), dead_zone=0.3, mouse_px=0.0)


def test_idle_watch_starts_attracting_wakes_for_a_player_and_falls_asleep_again():
    idle = IdleWatch(idle_timeout_s=10.0, now_s=0.0)
    assert idle.attracting
    assert idle.update(1.0, active=False) is Transition.NONE and idle.attracting
    assert idle.update(2.0, active=True) is Transition.PLAYER and not idle.attracting
    assert idle.update(3.0, active=True) is Transition.NONE
    assert idle.update(12.9, active=False) is Transition.NONE  # 9.9 s since the last input
    assert idle.update(13.0, active=False) is Transition.ATTRACT and idle.attracting
    assert idle.update(14.0, active=False) is Transition.NONE


def test_quit_combo_needs_every_key_held_for_the_whole_time():
    combo = QuitCombo(("left ctrl", "left shift", "q"), hold_s=2.0)
    assert not combo.update(0.0, frozenset({"left ctrl", "q"}))  # not all of them
    assert not combo.update(0.0, QUIT_KEYS)
    assert not combo.update(1.9, QUIT_KEYS | {"w"})  # extra keys do not matter
    assert not combo.update(1.95, frozenset({"left ctrl", "left shift"}))  # let go: starts over
    assert not combo.update(2.0, QUIT_KEYS)
    assert not combo.update(3.9, QUIT_KEYS)
    assert combo.update(4.0, QUIT_KEYS)


def test_kiosk_resets_at_the_session_limit_and_quits_on_the_combo():
    kiosk = Kiosk(KioskConfig(idle_timeout_s=5.0, max_session_frames=100, quit_hold_s=1.0), now_s=0.0)
    assert kiosk.update(0.1, WALKING, False, frames_since_reset=0) is Transition.PLAYER
    assert kiosk.update(0.2, WALKING, False, frames_since_reset=99) is Transition.NONE
    assert kiosk.update(0.3, WALKING, False, frames_since_reset=100) is Transition.SESSION_LIMIT
    assert kiosk.update(0.4, IDLE, True, frames_since_reset=1) is Transition.NONE  # a system key is a player
    assert kiosk.update(5.3, IDLE, False, frames_since_reset=2) is Transition.NONE
    assert kiosk.update(5.4, IDLE, False, frames_since_reset=3) is Transition.ATTRACT
    quitting = ControllerState(keys=QUIT_KEYS)
    assert kiosk.update(6.0, quitting, False, 4) is Transition.PLAYER  # the operator counts as a player...
    assert kiosk.update(6.5, quitting, False, 5) is Transition.NONE
    assert kiosk.update(7.0, quitting, False, 6) is Transition.QUIT  # ...until the combination has been held


def test_automatic_resets_go_to_the_next_start_point_a_player_keeps_the_shown_one():
    kiosk = Kiosk(KioskConfig(), now_s=0.0)
    assert kiosk.start_after(Transition.ATTRACT, 2, 3) == 0 and kiosk.start_after(Transition.SESSION_LIMIT, 0, 3) == 1
    assert kiosk.start_after(Transition.PLAYER, 1, 3) == 1 and kiosk.start_after(Transition.NONE, 1, 3) == 1
    fixed = Kiosk(KioskConfig(rotate_starts=False), now_s=0.0)
    assert fixed.start_after(Transition.SESSION_LIMIT, 1, 3) == 1


# ---- profile ----------------------------------------------------------------------------------------------


def test_shipped_kiosk_profile():
    profile = load_profile("kiosk")
    assert profile.fullscreen and profile.hide_cursor and not profile.hud and profile.keys.quit == ()
    assert not profile.help_on_start and profile.keys.next_start == () and profile.kiosk.rotate_starts
    assert set(profile.kiosk.quit_keys) == QUIT_KEYS and profile.kiosk.quit_hold_s == 2.0
    assert profile.supervisor.heartbeat_timeout_s > profile.kiosk.heartbeat_s


@pytest.mark.parametrize("data,message", [
    ({"kiosk": {"quit_keys": []}}, "a kiosk needs a key combination to quit"),
    ({"kiosk": {"quit_keys": ["hyper"]}}, "'kiosk.quit_keys': unknown name"),
    ({"kiosk": {"quit_keys": ["escape", "q"]}}, "'escape' is also a system key"),
    ({"kiosk": {"idle_timeout_s": -1}}, "'kiosk.idle_timeout_s': out of range"),
    ({"kiosk": {"max_session_frames": 1e30}}, "'kiosk.max_session_frames': wrong type"),
    ({"kiosk": {"attract": "explore"}}, "'kiosk.attract': unknown key"),
    ({"supervisor": {"heartbeat_timeout_s": "soon"}}, "'supervisor.heartbeat_timeout_s': wrong type"),
    ({"recovery": {"snapshot_every": 0}}, "'recovery.snapshot_every': out of range"),
    ({"pacing": {"adaptive": "yes"}}, "'pacing.adaptive': wrong type"),
])
def test_malformed_kiosk_sections(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        profile_from_data(data, "kiosk.yaml")


# ---- the loop in kiosk mode -------------------------------------------------------------------------------


def kiosk_loop(make_loop, source=None, **changes):
    config = KioskConfig(**{"idle_timeout_s": 1000.0, "quit_hold_s": 0.05, **changes})
    return make_loop(source or LiveInput(gamepads=False), kiosk=config)


def frames(loop, n: int) -> None:
    for _ in range(n):
        loop.frame()


def test_attract_mode_drives_the_world_until_a_player_arrives(make_loop, hold, monkeypatch):
    overlays = []
    monkeypatch.setattr(loop_module, "draw_overlay", lambda surface, text, assets: overlays.append(text))
    loop = kiosk_loop(make_loop)
    frames(loop, 5)
    assert loop.kiosk.attracting and loop.session.frame_index == 5
    forward = loop.scheme.control_names.index("forward")
    assert loop.hud.values[forward] == 1.0  # the exploration program walks forward first
    assert overlays == ["press any button to play"] * 5
    hold("d")  # a visitor strafes: a fresh start for them, driven by their keys from the first frame
    loop.frame()
    assert not loop.kiosk.attracting and loop.session.frame_index == 1
    assert loop.kiosk_counts["player"] == 1 and len(overlays) == 5
    assert loop.hud.values[loop.scheme.control_names.index("strafe")] == 1.0


def test_idle_player_returns_to_attract_mode_with_a_fresh_world(make_loop, press):
    loop = kiosk_loop(make_loop, idle_timeout_s=0.5)
    press("w")  # a tap within one frame counts: nothing is held afterwards
    loop.frame()
    assert not loop.kiosk.attracting and loop.session.frame_index == 1
    time.sleep(0.55)
    loop.frame()
    assert loop.kiosk.attracting and loop.session.frame_index == 1 and loop.kiosk_counts["attract"] == 1


def test_session_limit_resets_the_world(make_loop, hold):
    loop = kiosk_loop(make_loop, max_session_frames=4)
    hold("w")
    frames(loop, 4)  # the first one wakes the kiosk (a reset), then 4 frames since
    assert loop.session.frame_index == 4
    loop.frame()
    assert loop.session.frame_index == 1 and loop.kiosk_counts["session_limit"] == 1


@pytest.mark.parametrize("rotate", [True, False])
def test_automatic_resets_rotate_the_start_points(make_loop, hold, rotate):
    loop = kiosk_loop(make_loop, max_session_frames=2, rotate_starts=rotate)
    assert loop.help_until_s == 0.0  # no keys overlay: attract mode is what a visitor sees first
    hold("w")
    frames(loop, 3)  # a player arrives (a fresh start where the invitation was), then the session limit
    assert loop.kiosk_counts["session_limit"] == 1 and loop.start_index == (1 if rotate else 0)
    frames(loop, 2)
    assert loop.kiosk_counts["session_limit"] == 2 and loop.start_index == 0  # two start frames: round again


def test_quit_needs_the_combination_held_and_window_close_is_ignored(make_loop, hold):
    loop = kiosk_loop(make_loop)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    loop.frame()
    assert loop.running  # a visitor's alt+F4 does nothing
    for name in ("left ctrl", "left shift", "q"):
        hold(name)
    loop.frame()
    assert loop.running
    time.sleep(0.06)
    loop.frame()
    assert not loop.running


def test_play_kiosk_logs_to_a_file_and_prints_nothing(tiny_checkpoint, tmp_path, capsys):
    rc = main(["play", "--kiosk", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "5",
               "--log-dir", str(tmp_path / "logs"), "--stats", str(tmp_path / "stats.json")])
    out = capsys.readouterr()
    assert rc == 0 and out.out == "" and out.err == ""
    text = (tmp_path / "logs" / PLAYER_LOG_NAME).read_text()
    assert "kiosk player starting" in text and "worldsim play: 5 frames" in text and "kiosk player done" in text


def test_play_kiosk_error_goes_to_the_log_and_the_exit_status(tiny_checkpoint, tmp_path, capsys):
    program = tmp_path / "bad.yaml"
    program.write_text("segments: [{frames: 0}]\n")
    profile = tmp_path / "kiosk.yaml"
    profile.write_text(f"fullscreen: true\nkiosk:\n  attract_program: {program}\n")
    rc = main(["play", "--kiosk", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "5",
               "--profile", str(profile), "--log-dir", str(tmp_path / "logs")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'segments[0].frames': out of range" in err and "Traceback" not in err
    assert "out of range" in (tmp_path / "logs" / PLAYER_LOG_NAME).read_text()


# ---- SIGTERM: the supervisor's stop, systemd, `kill` ------------------------------------------------------


def test_stop_signal_is_a_flag_and_restores_the_previous_handler():
    import signal

    from worldsim.runtime.kiosk import StopSignal

    previous = signal.getsignal(signal.SIGTERM)
    stop = StopSignal()
    stop.install()
    assert signal.getsignal(signal.SIGTERM) != previous
    signal.raise_signal(signal.SIGTERM)
    assert stop.received
    stop.uninstall()
    assert signal.getsignal(signal.SIGTERM) == previous


def test_sigterm_quits_the_kiosk_cleanly_and_finishes_its_recording(tiny_checkpoint, tmp_path):
    """The player in its own process, recording, then SIGTERM: it must exit 0 with the recording in place."""
    import os
    import signal
    import subprocess
    import sys

    logs, video = tmp_path / "logs", tmp_path / "rec.mp4"
    player = subprocess.Popen(
        [sys.executable, "-m", "worldsim", "play", "--kiosk", "--headless", "--checkpoint", str(tiny_checkpoint),
         "--frames", "1000000", "--fps", "20", "--threads", "1", "--record", str(video), "--log-dir", str(logs),
         "--heartbeat", str(tmp_path / "beat")], env={**os.environ, "SDL_VIDEODRIVER": "dummy"})
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "beat").exists():  # the loop is running (and recording)
            assert player.poll() is None and time.monotonic() < deadline, "the player never started"
            time.sleep(0.05)
        time.sleep(0.5)
        player.send_signal(signal.SIGTERM)
        assert player.wait(timeout=20) == 0
    finally:
        player.kill()
    assert video.exists() and video.stat().st_size > 0 and (tmp_path / "rec.actions.jsonl").exists()
    assert not list(tmp_path.glob(".*partial*"))
    assert "SIGTERM: quitting" in (logs / PLAYER_LOG_NAME).read_text()
