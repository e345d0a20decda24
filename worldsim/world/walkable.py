"""The walkable area of a map, learned from where the recording engine's player has been.

A grid of square cells over the map (map units, x right, y up). A cell is walkable when a recorded player centre
was in it; gaps narrower than a cell between recorded paths are closed, and enclosed holes smaller than `max_hole`
cells are filled (an explorer crosses a room on a few paths; a room's floor between them is floor). What lies
outside stays a wall: the movement model is not allowed to leave the area, so a player stops at its edge or slides
along it, and no rollout walks out of the explored map.

Moves are checked in sub-steps of half a cell, so a fast move cannot tunnel through a wall one cell thick.
Doors (doors.py) mark cells of the area that are walls while their door is shut: `contains` and `move` take which
doors are shut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class WalkableMap:
    origin: tuple[float, float]  # map coordinates of the lower-left corner of cell (0, 0)
    cell: float  # map units per cell side
    grid: np.ndarray  # (rows along y, columns along x) bool: True where the player's centre may be
    doors: np.ndarray | None = None  # (rows, columns) int16: the door whose cell it is, -1 for none

    @classmethod
    def fit(cls, positions: np.ndarray, cell: float = 8.0, max_hole: int = 64, margin: int = 4) -> WalkableMap:
        """The area covered by recorded player positions (N, 2) (map units)."""
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
        return cls((float(low[0]), float(low[1])), float(cell), grid)

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

    def _path_clear(self, start: np.ndarray, delta: np.ndarray, shut: np.ndarray | None) -> bool:
        steps = max(1, int(np.ceil(np.abs(delta).max() / (self.cell / 2))))
        points = start + delta * (np.arange(1, steps + 1)[:, None] / steps)
        return bool(self.contains(points, shut).all())

    def move(self, xy: np.ndarray, delta: np.ndarray, shut: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Move a point by `delta` (2,) inside the area (`shut` doors are walls): the whole move, else slide along
        x or y, else stay. Returns the new point and which axes were blocked (2,) bool."""
        xy, delta = np.asarray(xy, dtype=np.float64), np.asarray(delta, dtype=np.float64)
        if self._path_clear(xy, delta, shut):
            return xy + delta, np.zeros(2, dtype=bool)
        for axis in np.argsort(-np.abs(delta)):  # slide along the larger component first
            along = np.zeros(2)
            along[axis] = delta[axis]
            if along[axis] != 0 and self._path_clear(xy, along, shut):
                blocked = np.ones(2, dtype=bool)
                blocked[axis] = False
                return xy + along, blocked
        return xy.copy(), np.ones(2, dtype=bool)

    def nearest_inside(self, xy: np.ndarray) -> np.ndarray:
        """The centre of the walkable cell nearest to a point (a start point off the learned area is moved on)."""
        if self.contains(xy):
            return np.asarray(xy, dtype=np.float64)
        rows, cols = np.nonzero(self.grid)
        centres = np.stack([self.origin[0] + (cols + 0.5) * self.cell, self.origin[1] + (rows + 0.5) * self.cell], 1)
        return centres[np.argmin(((centres - np.asarray(xy)[:2]) ** 2).sum(1))]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        doors = {} if self.doors is None else {"doors": torch.from_numpy(self.doors.astype(np.int16))}
        return {"grid": torch.from_numpy(self.grid.astype(np.uint8)),
                "origin_cell": torch.tensor([*self.origin, self.cell], dtype=torch.float64), **doors}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> WalkableMap:
        x, y, cell = tensors["origin_cell"].tolist()
        doors = tensors["doors"].numpy().astype(np.int16) if "doors" in tensors else None
        return cls((x, y), cell, tensors["grid"].numpy().astype(bool), doors)


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
