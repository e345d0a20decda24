"""Faults the game loop rides out: gamepads unplugged mid-game, focus loss, display changes, a lost display,
and running out of memory while the world is built."""

import pygame
import pytest
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.input.devices import LiveInput
from worldsim.runtime import loop as loop_module
from worldsim.runtime import play_cli

PAD_ID = 7


def added() -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERDEVICEADDED, device_index=0)


def removed() -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERDEVICEREMOVED, instance_id=PAD_ID)


def stick(value: float) -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=PAD_ID, axis=pygame.CONTROLLER_AXIS_LEFTY,
                              value=round(value * 32767))


def test_unplugging_the_pad_keeps_playing_and_says_so_without_a_hud(make_loop, fake_pads, monkeypatch):
    drawn = []
    monkeypatch.setattr(loop_module, "draw_notice", lambda surface, notice, assets: drawn.append(notice))
    loop = make_loop(LiveInput(gamepads=fake_pads.gamepads()), profile_changes={"hud": False})
    forward = loop.scheme.control_names.index("forward")
    pygame.event.post(added())
    loop.frame()
    assert drawn[-1] == "gamepad connected: Fake Pad 0"
    pygame.event.post(stick(-1.0))  # stick pushed forward
    loop.frame()
    assert loop.hud.values[forward] == 1.0
    pygame.event.post(removed())
    loop.frame()
    assert drawn[-1] == "gamepad disconnected: Fake Pad 0 (keyboard still works)" and fake_pads.closed == [0]
    assert loop.hud.values[forward] == 0.0  # the stick the pad held is released, the world keeps running
    before = loop.frames
    pygame.event.post(added())
    pygame.event.post(stick(-1.0))
    loop.frame()
    assert loop.frames == before + 1 and loop.hud.values[forward] == 1.0
    assert drawn[-1] == "gamepad connected: Fake Pad 0"


def test_focus_loss_releases_held_keys(make_loop, hold):
    loop = make_loop(LiveInput(gamepads=False))
    hold("w")
    loop.frame()
    assert loop.source.state.keys == {"w"}
    pygame.event.post(pygame.event.Event(pygame.WINDOWFOCUSLOST))
    loop.frame()  # the key-up happens in another window and never arrives
    assert loop.source.state.keys == frozenset()
    pygame.event.post(pygame.event.Event(pygame.WINDOWFOCUSGAINED))
    loop.frame()
    assert loop.running


@pytest.mark.parametrize("event", [pygame.WINDOWDISPLAYCHANGED, pygame.RENDER_DEVICE_RESET,
                                   pygame.RENDER_TARGETS_RESET])
def test_display_changes_recreate_the_surfaces_and_recentre(make_loop, event):
    loop = make_loop(LiveInput(gamepads=False))
    loop.frame()
    old_native = loop.window.native
    pygame.event.post(pygame.event.Event(event, display_index=0))
    loop.frame()
    window = loop.window
    assert window.recoveries == 1 and window.native is not old_native
    assert window.surface is pygame.display.get_surface()
    w, h = window.surface.get_size()
    assert window.rect.center == (w // 2, h // 2)
    assert loop.stats()["display_recoveries"] == 1


def test_a_lost_display_is_retried_while_the_world_keeps_running(make_loop, monkeypatch):
    loop = make_loop(LiveInput(gamepads=False))
    loop.frame()
    real_flip, real_recover = pygame.display.flip, loop.window.recover
    failures = {"flip": 1, "recover": 1}

    def flip():
        if failures["flip"]:
            failures["flip"] -= 1
            raise pygame.error("display surface quit")
        real_flip()

    def recover():
        if failures["recover"]:
            failures["recover"] -= 1
            raise pygame.error("no available video device")
        real_recover()

    monkeypatch.setattr(loop_module.pygame.display, "flip", flip)
    monkeypatch.setattr(loop.window, "recover", recover)
    monkeypatch.setattr(loop_module, "DISPLAY_RETRY_S", 0.0)
    loop.frame()  # flip fails, re-creating the display fails too
    assert not loop.display_ok and loop.frames == 2
    loop.frame()  # retried: the display is back
    assert loop.display_ok and loop.frames == 3 and loop.window.recoveries == 1


# ---- out of memory at start-up ----------------------------------------------------------------------------


def test_out_of_memory_is_recognised():
    assert play_cli.is_out_of_memory(MemoryError())
    assert play_cli.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert play_cli.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert not play_cli.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_out_of_memory_falls_back_to_half_precision(tiny_checkpoint, monkeypatch, capsys):
    real_warm = play_cli._warm_session
    tried = []

    def warm(checkpoint, scheme, device, dtype, seed, steps, backend=None):
        tried.append(dtype)
        if dtype == torch.float32:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")
        return real_warm(checkpoint, scheme, device, dtype, seed, steps, backend)

    monkeypatch.setattr(play_cli, "_warm_session", warm)
    session = play_cli.open_session(load_checkpoint(tiny_checkpoint), None, torch.device("cpu"), torch.float32,
                                    0, None)
    assert tried == [torch.float32, torch.bfloat16] and session.dtype == torch.bfloat16
    assert "out of memory on cpu (float32); trying cpu (bfloat16)" in capsys.readouterr().err


def test_out_of_memory_everywhere_says_what_to_do(tiny_checkpoint, monkeypatch, capsys):
    def warm(*args):
        raise MemoryError()

    monkeypatch.setattr(play_cli, "_warm_session", warm)
    rc = main(["play", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "out of memory while building the world on cpu (bfloat16)" in err and "--dtype bfloat16" in err


def test_fallback_order_ends_on_the_cpu():
    fallbacks = play_cli.memory_fallbacks(torch.device("cuda"), torch.float32)
    assert fallbacks[0] == (torch.device("cuda"), torch.float32)
    assert fallbacks[1][1] in (torch.bfloat16, torch.float16)
    assert fallbacks[-1] == (torch.device("cpu"), torch.float32)
