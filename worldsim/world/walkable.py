"""The walkable area of a map, learned from where the recording engine's player has been.

A grid of square cells over the map (map units, x right, y up). A cell is walkable when a recorded player centre
was in it; gaps narrower than a cell between recorded paths are closed, and enclosed holes smaller than `max_hole`
cells are filled (an explorer crosses a room on a few paths; a room's floor between them is floor). What lies
outside stays a wall: the movement model is not allowed to leave the area, so a player stops at its edge or slides
along it, and no rollout walks out of the explored map.

Moves are checked in sub-steps of half a cell, so a fast move cannot tunnel through a wall one cell thick. A
blocked move slides along what stopped it: a whole frame's move (`move`), or one engine tic's as Doom does it
(`slide`, for the engine's physics).
Doors (doors.py) mark cells of the area that are walls while their door is shut: `contains` and `move` take which
doors are shut. With the map's walls (walls.py) the area reaches `reach` units past the recorded positions up to
them, and moves stop at them exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from worldsim.world.walls import PLAYER_RADIUS, Walls

SLIDE_FUDGE = 1 / 32  # Doom stops a blocked move this share short of the wall it meets
SLIDE_HITS = 2  # walls a tic's move slides along before Doom's stairstep
SLIDE_BISECTIONS = 10  # halvings that find where a move meets a wall: to a 1,024th of the move


@dataclass(frozen=True)
class WalkableMap:
    origin: tuple[float, float]  # map coordinates of the lower-left corner of cell (0, 0)
    cell: float  # map units per cell side
    grid: np.ndarray  # (rows along y, columns along x) bool: True where the player's centre may be
    doors: np.ndarray | None = None  # (rows, columns) int16: the door whose cell it is, -1 for none
    walls: Walls | None = None  # the map's walls, when its file is known

    @classmethod
    def fit(cls, positions: np.ndarray, cell: float = 8.0, max_hole: int = 64, margin: int = 4,
            walls: Walls | None = None, reach: float = 0.0) -> WalkableMap:
        """The area covered by recorded player positions (N, 2) (map units); with the map's `walls`, reaching
        `reach` units further up to them (`with_walls`)."""
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] < 2 or not len(positions):
            raise ValueError(f"positions must be (N, 2) with N > 0, got shape {positions.shape}")
        if not cell > 0:
            raise ValueError(f"cell must be positive, got {cell}")
        low = positions[:, :2].min(0) - margin * cell
        shape = (np.ceil((positions[:, :2].max(0) + margin * cell - low) / cell).astype(int) + 1)[::-1]
        grid = np.zeros(tuple(shape), dtype=bool)
        cols, rows = ((positions[:, :2] - low) // cell).astype(int).T
        grid[rows, cols] = True
        grid = _erode(_dilate(grid))  # close one-cell gaps between recorded paths
        grid = _fill_holes(grid, max_hole)
        walkable = cls((float(low[0]), float(low[1])), float(cell), grid)
        return walkable if walls is None else walkable.with_walls(walls, reach)

    def with_walls(self, walls: Walls, reach: float = 0.0) -> WalkableMap:
        """This area bounded by the map's walls: it grows by `reach` units (the recorded players seldom touched
        every wall of a room they crossed) and loses the cells no free place of the player's box lies in; what stays
        is what the recorded area reaches without crossing a wall. Door cells are dropped: build the doors again."""
        pad = int(np.ceil(reach / self.cell)) + 1
        learned = np.pad(self.grid, pad)
        origin = (self.origin[0] - pad * self.cell, self.origin[1] - pad * self.cell)
        grown = learned.copy()
        for _ in range(pad - 1):
            grown = _dilate(grown)
        rows, cols = np.nonzero(grown)
        centres = np.stack([origin[0] + (cols + 0.5) * self.cell, origin[1] + (rows + 0.5) * self.cell], 1)
        # a box shrunk by half a cell that a wall crosses means every place in the cell has one in the player's box
        free = np.zeros_like(grown)
        free[rows, cols] = walls.clear(centres, PLAYER_RADIUS - self.cell / 2)
        reached = learned & free
        while True:  # flood from the recorded cells through free ones
            more = _dilate(reached) & free
            if (more == reached).all():
                break
            reached = more
        return WalkableMap(origin, self.cell, reached, None, walls)

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, dtype=np.float64)
        cols = np.floor((xy[..., 0] - self.origin[0]) / self.cell).astype(np.int64)
        rows = np.floor((xy[..., 1] - self.origin[1]) / self.cell).astype(np.int64)
        return rows, cols

    def contains(self, xy: np.ndarray, shut: np.ndarray | None = None) -> np.ndarray:
        """Whether each point (..., 2) lies in the walkable area (outside the grid is not); with `shut` (D,) bool,
        the cells of the shut doors are not."""
        rows, cols = self.cells(xy)
        inside = (rows >= 0) & (rows < self.grid.shape[0]) & (cols >= 0) & (cols < self.grid.shape[1])
        rows, cols = np.clip(rows, 0, self.grid.shape[0] - 1), np.clip(cols, 0, self.grid.shape[1] - 1)
        inside &= self.grid[rows, cols]
        if shut is not None and self.doors is not None and shut.any():
            door = self.doors[rows, cols]
            inside &= ~((door >= 0) & shut[np.maximum(door, 0)])
        return inside

    def door_at(self, xy: np.ndarray) -> int:
        """The door whose cells hold the point (2,), -1 for none."""
        if self.doors is None or not self.contains(xy):
            return -1
        rows, cols = self.cells(xy)
        return int(self.doors[rows, cols])

    def _free(self, points: np.ndarray, shut: np.ndarray | None, stuck: np.ndarray | None) -> np.ndarray:
        free = self.contains(points, shut)
        if self.walls is not None:
            free &= self.walls.clear(points, ignore=stuck)
        return free

    def _path(self, start: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Points along a move, half a cell apart at most (a move cannot tunnel through a wall a cell thick)."""
        steps = max(1, int(np.ceil(np.abs(delta).max() / (self.cell / 2))))
        return start + delta * (np.arange(1, steps + 1)[:, None] / steps)

    def move(self, xy: np.ndarray, delta: np.ndarray, shut: np.ndarray | None = None) -> np.ndarray:
        """Move a point by `delta` (2,) inside the area (`shut` doors are walls): the whole move, else the move
        slid along the wall it meets, else along x or y (the larger first), else the player stays.

        Measured against the engine's player on held-out play, this beats going up to the wall first and sliding
        only the rest (as Doom's code reads): with two engine tics a frame, a player that meets a wall mid-frame
        has lost most of the frame's move along it too."""
        xy, delta = np.asarray(xy, dtype=np.float64), np.asarray(delta, dtype=np.float64)
        stuck = None
        if self.walls is not None:  # walls the player's box already overlaps do not hold it: it may walk out
            crosses, near = self.walls.crossing(xy[None])
            stuck = near[crosses[0]]
        points = self._path(xy, delta)
        free = self._free(points, shut, stuck)
        if free.all():
            return xy + delta
        wall = None if self.walls is None else self.walls.direction(points[int(np.argmin(free))], stuck)
        slides = [] if wall is None else [wall * float(delta @ wall)]
        for axis in np.argsort(-np.abs(delta), kind="stable"):
            along = np.zeros(2)
            along[axis] = delta[axis]
            slides.append(along)
        for along in slides:
            if along.any() and self._free(self._path(xy, along), shut, stuck).all():
                return xy + along
        return xy.copy()

    def slide(self, xy: np.ndarray, momentum: np.ndarray,
              shut: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One engine tic of a player at `xy` (2,) moving by its `momentum` (2,), the way Doom's P_SlideMove
        does it: the position and momentum after it. A blocked move goes up to the wall it meets (less a 32nd), and
        what is left of it, along the wall, becomes the momentum and is moved (twice at most); a move that meets no
        single wall (a corner) tries its y part, then its x part, keeping the momentum.

        Per tic this beats sliding the whole move (`move`): on 120 held-out minutes the mean position error over a
        minute, open loop, falls from 15.5 to 11.2 map units (median over the minutes)."""
        xy, momentum = np.asarray(xy, dtype=np.float64), np.asarray(momentum, dtype=np.float64)
        stuck = None
        if self.walls is not None:
            crosses, near = self.walls.crossing(xy[None])
            stuck = near[crosses[0]]

        def free(start: np.ndarray, delta: np.ndarray) -> bool:
            return bool(delta.any()) and bool(self._free(self._path(start, delta), shut, stuck).all())

        if not momentum.any() or free(xy, momentum):
            return xy + momentum, momentum
        for _ in range(SLIDE_HITS):
            reach, blocked = self._reach(xy, momentum, shut, stuck)
            wall = None if self.walls is None else self.walls.direction(xy + blocked * momentum, stuck)
            if wall is None:
                break
            ahead = reach - SLIDE_FUDGE
            if ahead > 0:
                xy = xy + ahead * momentum
            left = min(1.0, 1.0 - (max(ahead, 0.0) + SLIDE_FUDGE))
            if left <= 0:
                return xy, momentum
            momentum = wall * float(left * momentum @ wall)
            if free(xy, momentum):
                return xy + momentum, momentum
        for step in (np.array([0.0, momentum[1]]), np.array([momentum[0], 0.0])):  # Doom's stairstep
            if free(xy, step):
                return xy + step, momentum
        return xy, momentum

    def _reach(self, xy: np.ndarray, delta: np.ndarray, shut: np.ndarray | None,
               stuck: np.ndarray | None) -> tuple[float, float]:
        """The share of a blocked move the player can make: (free, blocked) bounds SLIDE_BISECTIONS halvings apart."""
        free, blocked = 0.0, 1.0
        for _ in range(SLIDE_BISECTIONS):
            middle = (free + blocked) / 2
            if self._free(self._path(xy, delta * middle), shut, stuck).all():
                free = middle
            else:
                blocked = middle
        return free, blocked

    def nearest_inside(self, xy: np.ndarray) -> np.ndarray:
        """The centre of the walkable cell nearest to a point (a start point off the learned area is moved on)."""
        if self.contains(xy):
            return np.asarray(xy, dtype=np.float64)
        rows, cols = np.nonzero(self.grid)
        centres = np.stack([self.origin[0] + (cols + 0.5) * self.cell, self.origin[1] + (rows + 0.5) * self.cell], 1)
        return centres[np.argmin(((centres - np.asarray(xy)[:2]) ** 2).sum(1))]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        doors = {} if self.doors is None else {"doors": torch.from_numpy(self.doors.astype(np.int16))}
        walls = {} if self.walls is None else {f"walls.{k}": v for k, v in self.walls.to_tensors().items()}
        return {"grid": torch.from_numpy(self.grid.astype(np.uint8)),
                "origin_cell": torch.tensor([*self.origin, self.cell], dtype=torch.float64), **doors, **walls}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> WalkableMap:
        x, y, cell = tensors["origin_cell"].tolist()
        doors = tensors["doors"].numpy().astype(np.int16) if "doors" in tensors else None
        walls = Walls.from_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("walls.")}) \
            if "walls.segments" in tensors else None
        return cls((x, y), cell, tensors["grid"].numpy().astype(bool), doors, walls)


def _dilate(grid: np.ndarray) -> np.ndarray:
    out = grid.copy()
    out[1:] |= grid[:-1]
    out[:-1] |= grid[1:]
    out[:, 1:] |= grid[:, :-1]
    out[:, :-1] |= grid[:, 1:]
    return out


def _erode(grid: np.ndarray) -> np.ndarray:
    return ~_dilate(~grid)


def _fill_holes(grid: np.ndarray, max_hole: int) -> np.ndarray:
    """Fill the 4-connected regions of non-walkable cells that do not touch the border and have at most
    `max_hole` cells."""
    out = grid.copy()
    seen = grid.copy()
    rows, cols = grid.shape
    for r0, c0 in zip(*np.nonzero(~grid)):
        if seen[r0, c0]:
            continue
        region, touches, queue = [], False, deque([(r0, c0)])
        seen[r0, c0] = True
        while queue:
            r, c = queue.popleft()
            region.append((r, c))
            touches |= r in (0, rows - 1) or c in (0, cols - 1)
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < rows and 0 <= nc < cols and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        if not touches and len(region) <= max_hole:
            out[tuple(np.array(region).T)] = True
    return out
