"""The minimap: the walkable area seen from above, with the player's position, heading and recent trail.

It sits in the window's top right corner, under the HUD's badges, in a square box a quarter of the window's shorter
side (the map's aspect ratio kept inside it). The walkable grid is rendered once per window size into a cached
translucent surface (floor light, walls dark, doors amber, and the map's wall lines when the movement has them);
each frame only the trail (a polyline), the heading (a short line) and the player (a dot) are drawn over it. Trail
points are converted to screen pixels once, when they are added (all of them again only when the window changes
size), so a frame costs one blit and three draw calls.

The trail keeps the last TRAIL_FRAMES positions: a kiosk that runs for days holds the same few kilobytes.
Map y goes up, screen y goes down: the map is flipped on the way to the screen.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pygame

from worldsim.runtime.display import HUD_MARGIN
from worldsim.world.movement import PlayerState
from worldsim.world.walkable import WalkableMap

TRAIL_FRAMES = 600  # positions kept: 25 s at 24 fps
BOX_FRACTION = 0.25  # the box's side, as a fraction of the window's shorter side
DOT_FRACTION = 0.02  # the player's dot radius, as a fraction of the box's side (so it reads on any screen)
HEADING_DOTS = 3.0  # the heading line's length, in dot radii
FLOOR = (225, 225, 225, 140)  # translucent: the world stays visible under the map
WALL = (15, 15, 15, 200)
DOOR = (230, 150, 30, 220)  # cells a door closes (worldsim/world/doors.py), shut or open
WALL_LINE = (70, 70, 70, 230)  # the map's walls (worldsim/world/walls.py)
BORDER = (235, 235, 235, 200)
TRAIL = (90, 200, 255)
PLAYER = (255, 60, 60)


class Minimap:
    """The trail of recent positions and the map rendered for the current window; `draw` puts both on screen."""

    def __init__(self, walkable: WalkableMap, top: int = 0, trail_frames: int = TRAIL_FRAMES):
        self.walkable = walkable
        self.top = top  # pixels kept free above the box (the HUD's badges)
        rows, cols = walkable.grid.shape
        self.extent = (cols * walkable.cell, rows * walkable.cell)  # map units covered by the grid (x, y)
        self.trail: deque[tuple[float, float]] = deque(maxlen=trail_frames)  # map units
        self.points: deque[tuple[int, int]] = deque(maxlen=trail_frames)  # the same trail in screen pixels
        self.rect = pygame.Rect(0, 0, 0, 0)  # where the map is drawn, set by layout()
        self._surface_size: tuple[int, int] | None = None
        self._image: pygame.Surface | None = None
        self._scale = (1.0, 1.0)  # pixels per map unit (x, y)
        self.dot_radius = 2  # pixels; these three grow with the box, set by layout()
        self.heading_length = 6.0
        self.trail_width = 1

    def reset(self) -> None:
        """A new rollout: forget the trail."""
        self.trail.clear()
        self.points.clear()

    def add(self, player: PlayerState | None) -> None:
        """The player's position after a step (or a reset); nothing when the world tracks no pose."""
        if player is None:
            return
        self.trail.append((player.x, player.y))
        if self._image is not None:
            self.points.append(self.to_screen(player.x, player.y))

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        """The pixel of a map point (map units) on the window, as laid out now."""
        sx, sy = self._scale
        return (int(self.rect.x + (x - self.walkable.origin[0]) * sx),
                int(self.rect.bottom - (y - self.walkable.origin[1]) * sy))

    def layout(self, surface_size: tuple[int, int]) -> None:
        """Fit the map into the top right box of a window this size and render it (once per window size)."""
        win_w, win_h = surface_size
        side = max(8, round(BOX_FRACTION * min(win_w, win_h)))
        map_w, map_h = self.extent
        fit = side / max(map_w, map_h)
        w, h = max(1, round(map_w * fit)), max(1, round(map_h * fit))
        self.rect = pygame.Rect(win_w - HUD_MARGIN - w, self.top + HUD_MARGIN, w, h)
        self._scale = (w / map_w, h / map_h)
        self.dot_radius = max(2, round(side * DOT_FRACTION))
        self.heading_length = HEADING_DOTS * self.dot_radius
        self.trail_width = max(1, self.dot_radius // 2)
        self._image = self._render((w, h))
        self._surface_size = surface_size
        self.points.clear()
        self.points.extend(self.to_screen(x, y) for x, y in self.trail)

    def _render(self, size: tuple[int, int]) -> pygame.Surface:
        kind = self.walkable.grid.astype(np.intp)  # 0 wall, 1 floor, 2 door
        if self.walkable.doors is not None:
            kind[self.walkable.grid & (self.walkable.doors >= 0)] = 2
        grid = kind[::-1]  # (rows, cols): screen row 0 is the map's top (largest y)
        rgba = np.array([WALL, FLOOR, DOOR], np.uint8)[grid]  # (rows, cols, 4), contiguous
        cells = pygame.image.frombuffer(rgba, (grid.shape[1], grid.shape[0]), "RGBA")
        # crisp cells when each gets a pixel or more; averaged when shrunk, so a corridor one cell wide stays
        resize = pygame.transform.scale if size[0] >= grid.shape[1] else pygame.transform.smoothscale
        image = resize(cells, size)  # a copy: `rgba` may go
        if self.walkable.walls is not None:
            for x1, y1, x2, y2 in self.walkable.walls.segments:
                start, end = self._to_image(x1, y1, size), self._to_image(x2, y2, size)
                pygame.draw.line(image, WALL_LINE, start, end)
        pygame.draw.rect(image, BORDER, image.get_rect(), 1)
        return image.convert_alpha() if pygame.display.get_surface() is not None else image

    def _to_image(self, x: float, y: float, size: tuple[int, int]) -> tuple[int, int]:
        return (int((x - self.walkable.origin[0]) * size[0] / self.extent[0]),
                int(size[1] - (y - self.walkable.origin[1]) * size[1] / self.extent[1]))

    def draw(self, surface: pygame.Surface, player: PlayerState | None) -> None:
        """The map, the trail, and the player's heading and position, in `surface`'s top right corner."""
        if surface.get_size() != self._surface_size:
            self.layout(surface.get_size())
        surface.blit(self._image, self.rect)
        if len(self.points) > 1:
            pygame.draw.lines(surface, TRAIL, False, self.points, self.trail_width)
        if player is not None:
            x, y = self.to_screen(player.x, player.y)
            angle = math.radians(player.heading)  # map y up, screen y down: the sine changes sign
            tip = (x + self.heading_length * math.cos(angle), y - self.heading_length * math.sin(angle))
            pygame.draw.line(surface, PLAYER, (x, y), tip, self.trail_width + 1)
            pygame.draw.circle(surface, PLAYER, (x, y), self.dot_radius)
