"""The game loop, headless, driven frame by frame with posted key events: pause, step, reset, start points, HUDs,
the keys overlay, record."""

import time
from types import MappingProxyType

import numpy as np
import pygame

from worldsim.input.devices import LiveInput
from worldsim.input.replay import read_action_log
from worldsim.input.sources import open_source
from worldsim.input.state import ControllerState
from worldsim.runtime import loop as loop_module
from worldsim.runtime.display import HudAssets, HudView, draw_hud, draw_notice, draw_status, fit_scale, wrap_text
from worldsim.runtime.loop import pressed_names


def frames(loop, n: int) -> None:
    for _ in range(n):
        loop.frame()


def test_pause_step_reset_hud_and_quit_keys(make_loop, press):
    loop = make_loop(LiveInput(gamepads=False))
    frames(loop, 3)
    assert loop.frames == 3 and loop.session.frame_index == 3
    press("p")
    frames(loop, 4)
    assert loop.paused and loop.frames == 3  # paused: the world does not advance
    press("n")
    loop.frame()
    assert loop.frames == 4 and loop.session.frame_index == 4  # n: exactly one frame
    frames(loop, 2)
    assert loop.frames == 4
    press("p")
    loop.frame()
    assert not loop.paused and loop.frames == 5
    press("r")
    loop.frame()
    assert loop.session.frame_index == 1  # reset to the first frame, then this iteration's step
    press("backspace")
    loop.frame()
    assert loop.session.frame_index == 1
    shown = loop.show_hud
    press("h")
    loop.frame()
    assert loop.show_hud != shown
    press("h")
    loop.frame()
    assert loop.show_hud == shown
    press("f3")
    loop.frame()
    assert loop.show_dev_hud
    press("escape")
    loop.frame()
    assert not loop.running


def test_keys_reach_the_condition_but_system_keys_do_not(make_loop, press, hold):
    loop = make_loop(LiveInput(gamepads=False))
    hold("w")
    hold("p")
    loop.frame()
    assert loop.source.state.keys == {"w"}  # "p" paused the game instead of reaching the controls
    press("p")
    loop.frame()
    assert dict(zip(loop.scheme.control_names, loop.hud.values.tolist()))["forward"] == 1.0


def test_reset_replays_the_same_world(make_loop, press):
    loop = make_loop(LiveInput(gamepads=False))  # no events: the same (neutral) controls every frame
    frames(loop, 5)
    before = [digest for _, _, digest, _ in loop.history.frames]
    press("r")
    frames(loop, 5)
    assert [digest for _, _, digest, _ in loop.history.frames] == before and len(set(before)) > 1


def test_recording_mid_game_keeps_the_history_for_replay(make_loop, tmp_path, press):
    loop = make_loop(open_source("scripted"))
    frames(loop, 4)
    press("f5")
    frames(loop, 6)
    press("f5")
    loop.frame()
    assert loop.recording is None and len(loop.saved) == 1
    video = loop.saved[0]
    log = read_action_log(video.with_name(video.stem + ".actions.jsonl"))
    assert log.header.video_first_frame == 4 and log.frames == 10  # 4 frames of history + the 6 recorded
    # replaying the log from its reset reproduces every frame, the history included
    replay = make_loop(open_source(f"replay:{log.path}"))
    replay.run()
    assert replay.replay.checked == 10 and replay.replay.exact


def test_recording_without_frames_leaves_no_files(make_loop, tmp_path, press):
    loop = make_loop(LiveInput(gamepads=False))
    press("p", "f5")
    loop.frame()
    assert loop.recording is not None
    press("f5")
    loop.frame()
    assert loop.recording is None and loop.saved == [] and "discarded" in loop.notices[-1]
    assert not (tmp_path / "recordings").exists() or not any((tmp_path / "recordings").iterdir())


def test_window_resize_keeps_the_frame_aspect(make_loop):
    loop = make_loop(LiveInput(gamepads=False))
    pygame.display.set_mode((300, 100), pygame.RESIZABLE)
    pygame.event.post(pygame.event.Event(pygame.VIDEORESIZE, size=(300, 100), w=300, h=100))
    loop.frame()
    rect = loop.window.rect
    assert rect.h == 100 and rect.w == 150 and rect.x == 75  # 3:2 world letterboxed in a 3:1 window
    assert len(loop.window.bars) == 2


def test_stats_and_hud_drawing(make_loop):
    loop = make_loop(open_source("scripted"), max_frames=6)
    stats = loop.run()
    assert stats["frames"] == 6 and not loop.running
    assert set(stats["stage_ms"]) == {"input", "condition", "generate", "decode", "display", "record"}
    assert stats["latency_ms"]["p95"] >= stats["latency_ms"]["p50"] > 0


def test_draw_hud_is_a_free_function():
    pygame.font.init()
    surface = pygame.Surface((200, 150))
    view = HudView(lines=["12.0 fps"], controls=("forward", "use"), values=np.array([-0.5, 1.0], np.float32),
                   low=np.array([-1.0, 0.0], np.float32), high=np.array([1.0, 1.0], np.float32),
                   badges=["PAUSED", "REC"], notice="gamepad connected")
    draw_hud(surface, view, HudAssets(14))
    pixels = pygame.surfarray.array3d(surface)
    assert pixels.any()  # something was drawn (text, bars, badges)


def test_the_keys_overlay_shows_at_start_and_any_key_closes_it(make_loop, press, hold, monkeypatch):
    shown = []
    monkeypatch.setattr(loop_module, "draw_help", lambda surface, title, lines, assets: shown.append(lines))
    loop = make_loop(LiveInput(gamepads=False))
    loop.frame()
    keys = dict(shown[-1])
    assert keys["F1"] == "show these keys" and keys["Esc"] == "quit" and keys["Tab / PgDn"].startswith("next start")
    assert keys["W / Up"] == "forward" and keys["mouse left/right"] == "turn"  # the scheme's controls too
    assert "F1" in loop.help_title
    hold("w")  # any key closes it, and still drives the world
    loop.frame()
    assert loop.help_until_s == 0.0 and len(shown) == 1 and loop.hud.values[0] == 1.0
    press("f1")  # F1 opens it again, until a key
    frames(loop, 3)
    assert len(shown) == 4
    press("f1")
    loop.frame()
    assert len(shown) == 4 and not loop.help_until_s


def test_the_keys_overlay_closes_by_itself(make_loop, monkeypatch):
    shown = []
    monkeypatch.setattr(loop_module, "draw_help", lambda surface, title, lines, assets: shown.append(title))
    loop = make_loop(LiveInput(gamepads=False), profile_changes={"help_s": 0.5})
    loop.help_until_s = 1.0  # long past
    loop.frame()
    assert shown == [] and loop.help_until_s == 0.0
    quiet = make_loop(LiveInput(gamepads=False), profile_changes={"help_on_start": False})
    assert quiet.help_until_s == 0.0


def test_the_players_hud_is_one_line_and_says_paused(make_loop, press, hold, monkeypatch):
    lines = []
    monkeypatch.setattr(loop_module, "draw_status", lambda surface, view, assets: lines.append(view.status))
    loop = make_loop(LiveInput(gamepads=False), profile_changes={"hud_refresh_s": 0.02})
    hold("w")
    hold("left")
    frames(loop, 2)
    time.sleep(0.03)  # past hud_refresh_s: the next frame rebuilds the text, with frame times to show
    loop.frame()
    assert lines[-1].endswith("fps   Left W")
    press("p")
    time.sleep(0.03)
    loop.frame()
    assert lines[-1].startswith("paused") and "fps" not in lines[-1]
    assert "keyboard + mouse" in loop.hud.lines[-1]  # the developer's HUD names no gamepad that is not there


def test_pressed_names():
    state = ControllerState(keys=frozenset({"d", "space"}), buttons=frozenset({"a"}), mouse_dx=2.0,
                            axes=MappingProxyType({"left_x": 0.9, "left_y": -0.8, "right_x": 0.1}))
    assert pressed_names(state) == "D Space pad A left stick mouse"
    assert pressed_names(ControllerState()) == ""


def test_the_players_hud_covers_a_corner_not_the_view():
    pygame.font.init()
    surface = pygame.Surface((512, 384))
    draw_status(surface, HudView(status="24 fps   W Left", badges=["REC"]), HudAssets(16))
    covered = pygame.surfarray.array3d(surface).any(axis=2)
    assert covered.mean() < 0.05 and not covered[:, 60:-40].any()  # a line at the top, nothing below it


def test_long_notices_wrap_and_shorten_paths_in_the_middle():
    pygame.font.init()
    assets = HudAssets(16)
    path = "/home/someone/projects/worldsim/recordings/worldsim-20260101-120000-with-a-long-name.mp4"
    lines = assets.wrapped(f"saved {path} (240 frames) and worldsim-20260101-120000.actions.jsonl", 200)
    assert all(assets.font.size(line)[0] <= 200 for line in lines) and 1 < len(lines) <= 3
    shortened = next(line for line in lines if "..." in line)
    assert shortened.startswith("/home") and shortened.endswith(".mp4")
    surface = pygame.Surface((200, 150))
    draw_notice(surface, f"saved {path}", assets)
    assert pygame.surfarray.array3d(surface)[:, -40:].any()
    assert wrap_text("one two three four", 7, len, max_lines=2) == ["one two", "thre..."]


def test_the_window_fits_the_screen():
    assert fit_scale((96, 128), [(1920, 1080)]) == 9  # 1152x864: the largest multiple inside 80% of the screen
    assert fit_scale((96, 128), [(1024, 768)]) == 6
    assert fit_scale((96, 128), [(100, 100)]) == 1 and fit_scale((96, 128), []) == 4


def test_next_start_cycles_the_checkpoints_start_frames(make_loop, press):
    loop = make_loop(LiveInput(gamepads=False))
    first = loop.frame_image.copy()
    press("tab")
    loop.frame()
    assert loop.start_index == 1 and loop.session.frame_index == 1 and "start point 2 of 2" in loop.notices[-1]
    press("r")  # a reset stays at this start point
    loop.frame()
    assert loop.start_index == 1
    press("page down")  # and round again
    loop.frame()
    assert loop.start_index == 0
    loop.reset()
    assert np.array_equal(loop.frame_image, first)


def test_a_recording_after_changing_the_start_point_replays_exactly(make_loop, press):
    loop = make_loop(open_source("scripted"))
    frames(loop, 2)
    press("tab")
    frames(loop, 3)
    press("f5")
    frames(loop, 3)
    press("tab")  # a reset to the next start point while recording
    frames(loop, 3)
    press("f5")
    loop.frame()
    video = loop.saved[0]
    log = read_action_log(video.with_name(video.stem + ".actions.jsonl"))
    assert [entry.start for entry in log.entries if entry.state is None] == [1, 0]
    replay = make_loop(open_source(f"replay:{log.path}"))
    assert replay.start_index == 1  # the log's first reset names its start point
    replay.run()
    assert replay.replay.checked == log.frames and replay.replay.exact
