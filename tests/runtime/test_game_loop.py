"""The game loop, headless, driven frame by frame with posted key events: pause, step, reset, HUD, record."""

import numpy as np
import pygame

from worldsim.input.devices import LiveInput
from worldsim.input.replay import read_action_log
from worldsim.input.sources import open_source
from worldsim.runtime.display import HudAssets, HudView, draw_hud


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
    press("f1")
    loop.frame()
    assert loop.show_hud != shown
    press("h")
    loop.frame()
    assert loop.show_hud == shown
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
    before = [digest for _, _, digest in loop.history.frames]
    press("r")
    frames(loop, 5)
    assert [digest for _, _, digest in loop.history.frames] == before and len(set(before)) > 1


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
