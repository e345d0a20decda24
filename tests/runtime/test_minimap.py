"""The minimap, headless: the walkable area, the player's dot and heading, the bounded trail, and the loop's toggle."""

import dataclasses

import numpy as np
import pygame
import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.input.devices import LiveInput
from worldsim.input.replay import ActionLogHeader
from worldsim.runtime.display import HUD_MARGIN
from worldsim.runtime.loop import GameLoop
from worldsim.runtime.minimap import PLAYER, TRAIL, Minimap
from worldsim.runtime.profile import load_profile
from worldsim.runtime.session import WorldSession
from worldsim.world.movement import PlayerState
from worldsim.world.walkable import WalkableMap
from worldsim.world.walls import Walls

ROOM = 160.0  # map units: a square room, walked all over, with walls (the fit's margin) around it


@pytest.fixture(scope="module")
def room() -> WalkableMap:
    xs, ys = np.meshgrid(np.arange(0.0, ROOM, 4.0), np.arange(0.0, ROOM, 4.0))
    return WalkableMap.fit(np.stack([xs.ravel(), ys.ravel()], 1))


def drawn(minimap: Minimap, player: PlayerState | None, size=(800, 600)) -> pygame.Surface:
    surface = pygame.Surface(size)
    surface.fill((0, 0, 0))
    minimap.draw(surface, player)
    return surface


def test_minimap_draws_the_area_the_player_and_the_trail(room):
    minimap = Minimap(room, top=10)
    for x in np.arange(20.0, 100.0, 2.0):  # walking east along y = 40
        minimap.add(PlayerState(float(x), 40.0, 0.0))
    player = PlayerState(100.0, 40.0, 0.0)
    surface = drawn(minimap, player)
    # 1. the box: a quarter of the shorter side, in the top right corner under the HUD's badges
    rect = minimap.rect
    assert max(rect.size) == 150 and rect.right == 800 - HUD_MARGIN and rect.top == 10 + HUD_MARGIN
    # 2. the player's dot where it is, its heading (east) to its right, not above it
    x, y = minimap.to_screen(player.x, player.y)
    assert rect.collidepoint(x, y) and surface.get_at((x, y))[:3] == PLAYER
    assert surface.get_at((x + 3 * minimap.dot_radius - 1, y))[:3] == PLAYER
    assert surface.get_at((x, y - 3 * minimap.dot_radius + 1))[:3] != PLAYER
    # 3. the trail behind it
    tx, ty = minimap.to_screen(40.0, 40.0)
    assert surface.get_at((tx, ty))[:3] == TRAIL
    # 4. floor light, walls (the margin around the room) dark
    floor = minimap.to_screen(ROOM - 10, ROOM - 10)
    wall = minimap.to_screen(room.origin[0] + 1.5 * room.cell, room.origin[1] + 1.5 * room.cell)
    assert min(surface.get_at(floor)[:3]) > 100 and max(surface.get_at(wall)[:3]) < 40


def test_door_cells_are_drawn_amber(room):
    doors = np.full(room.grid.shape, -1, dtype=np.int16)
    rows, cols = room.cells(np.array([80.0, 80.0]))
    doors[rows - 2:rows + 3, cols - 2:cols + 3] = 0  # a door of 5 x 5 cells in the middle of the room
    minimap = Minimap(dataclasses.replace(room, doors=doors))
    surface = drawn(minimap, None)
    r, g, b = surface.get_at(minimap.to_screen(80.0, 80.0))[:3]
    assert r > g > b + 40  # amber over the black background
    floor = surface.get_at(minimap.to_screen(30.0, 30.0))[:3]
    assert max(floor) - min(floor) < 10  # where the floor stays grey


def test_the_maps_walls_are_drawn_as_lines(room):
    walls = Walls(np.array([[40.0, 0.0, 40.0, 150.0]]))  # a wall line across the floor at x = 40
    minimap = Minimap(dataclasses.replace(room, walls=walls))
    surface = drawn(minimap, None)
    line = surface.get_at(minimap.to_screen(40.0, 80.0))[:3]
    floor = surface.get_at(minimap.to_screen(80.0, 80.0))[:3]
    assert sum(line) < sum(floor) - 100  # dark on the light floor
    plain = drawn(Minimap(room), None).get_at(minimap.to_screen(40.0, 80.0))[:3]
    assert sum(plain) > sum(line) + 100  # no line without walls


def test_map_y_goes_up_on_screen_and_heading_turns_with_it(room):
    minimap = Minimap(room)
    player = PlayerState(80.0, 80.0, 90.0)  # facing +y: up on the screen
    surface = drawn(minimap, player)
    x, y = minimap.to_screen(player.x, player.y)
    assert minimap.to_screen(80.0, 150.0)[1] < y < minimap.to_screen(80.0, 10.0)[1]
    assert surface.get_at((x, y - 3 * minimap.dot_radius + 1))[:3] == PLAYER
    assert surface.get_at((x + 3 * minimap.dot_radius - 1, y))[:3] != PLAYER


def test_trail_is_bounded_and_reset_clears_it(room):
    minimap = Minimap(room, trail_frames=50)
    drawn(minimap, None)  # laid out: points are converted as they come
    for i in range(120):
        minimap.add(PlayerState(10.0 + i, 40.0, 0.0))
    assert len(minimap.trail) == len(minimap.points) == 50 and minimap.trail[0] == (80.0, 40.0)
    minimap.add(None)  # a world that tracks no pose adds nothing
    assert len(minimap.trail) == 50
    minimap.reset()
    assert not minimap.trail and not minimap.points


def test_a_new_window_size_lays_the_map_out_again(room):
    minimap = Minimap(room)
    minimap.add(PlayerState(20.0, 40.0, 0.0))
    minimap.add(PlayerState(100.0, 40.0, 0.0))
    drawn(minimap, None)
    surface = drawn(minimap, None, size=(400, 300))
    assert max(minimap.rect.size) == 75 and minimap.rect.right == 400 - HUD_MARGIN
    assert surface.get_at(minimap.to_screen(60.0, 40.0))[:3] == TRAIL  # the trail follows the new layout


# ---- in the game loop ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_checkpoint(tmp_path_factory):
    """A random-weight world with a learned movement (fitted on a toy room) and start poses."""
    from worldsim.testing import random_world_checkpoint

    return random_world_checkpoint(tmp_path_factory.mktemp("ckpt") / "world")


@pytest.fixture
def loops():
    made = []
    yield made
    for loop in made:
        if loop.running:
            loop.close()


def make_loop(loops, path, profile: str = "desktop") -> GameLoop:
    session = WorldSession(load_checkpoint(path))
    # a window large enough for a minimap with room in it; no keys overlay over it
    profile = dataclasses.replace(load_profile(profile), window_scale=16, help_on_start=False, fullscreen=False)
    header = ActionLogHeader(scheme="camera", encoding=session.scheme.encoding_dict(), seed=0, steps=1,
                             checkpoint="test")
    loop = GameLoop(session, LiveInput(gamepads=False), profile, header, fps=None)
    loops.append(loop)
    return loop


def player_pixel(loop: GameLoop) -> tuple[int, ...]:
    return tuple(loop.window.surface.get_at(loop.minimap.to_screen(loop.session.player.x, loop.session.player.y)))


def test_the_loop_draws_the_minimap_and_the_key_toggles_it(loops, world_checkpoint, press, hold):
    loop = make_loop(loops, world_checkpoint)
    assert loop.minimap is not None and loop.show_minimap
    assert len(loop.minimap.trail) == 1  # the start point
    hold("w")
    for _ in range(4):
        loop.frame()
    assert len(loop.minimap.trail) == 5 and loop.minimap.trail[-1] == (loop.session.player.x, loop.session.player.y)
    assert player_pixel(loop)[:3] == PLAYER
    press("m")
    loop.frame()
    assert not loop.show_minimap and player_pixel(loop)[:3] != PLAYER
    press("m")
    loop.frame()
    assert loop.show_minimap and player_pixel(loop)[:3] == PLAYER
    press("r")
    loop.frame()
    assert len(loop.minimap.trail) == 2  # reset: the start point and this iteration's step


def test_kiosk_has_no_minimap_unless_its_profile_turns_it_on(loops, world_checkpoint):
    kiosk = load_profile("kiosk")
    assert not kiosk.minimap and kiosk.keys.minimap == ()
    loop = make_loop(loops, world_checkpoint, "kiosk")
    loop.frame()
    assert loop.minimap is not None and not loop.show_minimap


def test_a_world_without_movement_has_no_minimap(make_loop, press):
    loop = make_loop(LiveInput(gamepads=False))
    assert loop.minimap is None
    press("m")
    loop.frame()
    assert "no minimap" in loop.notices[-1]
