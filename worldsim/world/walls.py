"""Walls: the map's line segments that stop the player, tested against the player's square box.

The walkable area (walkable.py) is learned on a grid of 8-unit cells from where recorded players have been, so its
edge is where they happened to turn back, give or take a cell, and a player of the world stops short of a wall or
walks into it by a few units; the engine stops it exactly. When the map file is known (Doom: worldsim/data/doom_map.py
reads which lines always block), the walls make the edge exact. Doom's player is a square box, 32 units a side
whatever its heading; a place is free when no wall segment crosses the box.

Everything is float64 numpy and deterministic, like the rest of the movement.
"""

from __future__ import annotations

import numpy as np
import torch

PLAYER_RADIUS = 16.0  # Doom: half the side of the player's square box
RAY_CHUNK_ELEMENTS = 32_768  # rays x walls intersected at once by `ray_distances`: arrays that stay in cache


class Walls:
    def __init__(self, segments: np.ndarray):
        self.segments = np.ascontiguousarray(segments, dtype=np.float64).reshape(-1, 4)  # x1, y1, x2, y2
        self._low = np.minimum(self.segments[:, :2], self.segments[:, 2:])
        self._high = np.maximum(self.segments[:, :2], self.segments[:, 2:])

    def __len__(self) -> int:
        return len(self.segments)

    def crossing(self, points: np.ndarray, radius: float = PLAYER_RADIUS) -> tuple[np.ndarray, np.ndarray]:
        """Which walls cross the box of `radius` around each point (K, 2): (K, M) bool over the M walls returned as
        indices (M,), those near the points at all (the rest cross none)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        low, high = points.min(0) - radius, points.max(0) + radius
        near = np.nonzero((self._high >= low).all(1) & (self._low <= high).all(1))[0]
        return _box_crosses(points, self.segments[near], radius), near

    def clear(self, points: np.ndarray, radius: float = PLAYER_RADIUS, ignore: np.ndarray | None = None) -> np.ndarray:
        """(K,) whether the box around each point (K, 2) is free of walls; `ignore`: wall indices that do not count
        (those a player already overlaps, so it can walk out of them)."""
        crosses, near = self.crossing(points, radius)
        if ignore is not None and len(ignore):
            crosses = crosses[:, ~np.isin(near, ignore)]
        return ~crosses.any(1)

    def direction(self, point: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray | None:
        """The unit direction of the wall the box at `point` (2,) runs into, None when it touches none or walls of
        different directions (a corner)."""
        crosses, near = self.crossing(point)
        hit = near[crosses[0]]
        if ignore is not None:
            hit = hit[~np.isin(hit, ignore)]
        if not len(hit):
            return None
        along = self.segments[hit, 2:] - self.segments[hit, :2]
        along /= np.linalg.norm(along, axis=1, keepdims=True)
        if (np.abs(along[:, 0] * along[0, 1] - along[:, 1] * along[0, 0]) > 1e-9).any():
            return None
        return along[0]

    def ray_distances(self, origin: np.ndarray, directions: np.ndarray, far: float = 4096.0) -> np.ndarray:
        """Distance (..., K) from each `origin` (..., 2) along its unit directions (..., K, 2) to the nearest wall
        they meet (`far` when they meet none): what a camera there sees in those directions, in this 2.5D map."""
        origins = np.asarray(origin, dtype=np.float64)
        flat_origins, flat_directions = origins.reshape(-1, 2), directions.reshape(-1, *directions.shape[-2:])
        # cameras cast at once: a few (cameras, K, walls) arrays of about RAY_CHUNK_ELEMENTS, cache-sized
        chunk = max(1, RAY_CHUNK_ELEMENTS // max(1, directions.shape[-2] * len(self.segments)))
        distances = [self._cast(flat_origins[i:i + chunk], flat_directions[i:i + chunk], far)
                     for i in range(0, len(flat_origins), chunk)]
        return np.concatenate(distances).reshape(directions.shape[:-1])

    def _cast(self, origins: np.ndarray, directions: np.ndarray, far: float) -> np.ndarray:
        """(M, 2) origins, (M, K, 2) directions -> (M, K) distances."""
        start, span = self.segments[:, :2], self.segments[:, 2:] - self.segments[:, :2]
        cross = directions[..., 0, None] * span[:, 1] - directions[..., 1, None] * span[:, 0]  # (M, K, N)
        offset = start[None] - origins[:, None]  # (M, N, 2)
        ahead = (offset[..., 0] * span[:, 1] - offset[..., 1] * span[:, 0])[:, None]  # (M, 1, N): one per camera
        with np.errstate(divide="ignore", invalid="ignore"):
            along = ahead / cross
            at = (offset[:, None, :, 0] * directions[..., 1, None] - offset[:, None, :, 1] * directions[..., 0, None]
                  ) / cross
        hit = (along > 1e-6) & (at >= 0) & (at <= 1) & np.isfinite(along)
        return np.minimum(np.where(hit, along, np.inf).min(-1, initial=np.inf), far)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"segments": torch.from_numpy(self.segments.copy())}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Walls:
        return cls(tensors["segments"].numpy())


def _box_crosses(points: np.ndarray, segments: np.ndarray, radius: float) -> np.ndarray:
    """(K, M) whether segment m crosses (or touches) the axis-aligned box of `radius` around point k: they overlap
    along x, along y and along the segment's normal (the separating axis test)."""
    start, end = segments[None, :, :2], segments[None, :, 2:]
    middle, half = (start + end) / 2, np.abs(end - start) / 2
    offset = points[:, None, :] - middle  # (K, M, 2)
    overlap = (np.abs(offset) <= half + radius).all(-1)
    normal = np.stack([end[..., 1] - start[..., 1], start[..., 0] - end[..., 0]], -1)  # (1, M, 2), not unit
    return overlap & (np.abs((offset * normal).sum(-1)) <= radius * np.abs(normal).sum(-1))
