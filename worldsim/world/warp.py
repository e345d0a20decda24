"""The recycled frame warped by the player's move: a 2.5D reprojection with depth from the map's walls.

The generator is shown its recycled latent turned by the commanded yaw (GeneratorConfig.yaw_reprojection), exact for
a turn. A move forward or sideways it has to draw itself. In a 2.5D map a camera column's depth is one ray cast: the
wall point each latent column shows is found from the pose it was seen from, and seen from the new pose it lies in
another column, nearer or farther. So the warp moves each column to where its wall point is seen, and scales it
about the horizon by its depth before over after (things come closer and grow). Floors, steps, doors and sprites
are not in the rays: each column moves as its wall does.

`worldsim eval` reports it as a teacher-forced yardstick (`warped_previous`) for worlds with the map's walls:
the real previous frame warped by the engine's own move (benchmarks/warp_yardstick.py prints it alone). At play,
`sampling.warp_move` warps the recycled latent by the player's move before each step (WorldSession.step).
"""

from __future__ import annotations

import numpy as np
import torch

from worldsim.world.walls import Walls

MIN_DEPTH = 1.0  # map units: a wall point that ends up behind or at the new camera is kept just in front of it


def warp_field(before: np.ndarray, after: np.ndarray, walls: Walls, fov: float, columns: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """For a frame seen from pose `before` (x, y, heading in degrees, counter-clockwise) and shown from `after`:
    the source column (columns,) each output column samples and the scale (columns,) of its rows about the
    horizon. Screen right is clockwise of the heading."""
    half = np.tan(np.radians(fov / 2))
    xs = ((np.arange(columns) + 0.5) / columns * 2 - 1) * half  # image-plane x of each column
    angles = np.radians(before[2]) - np.arctan(xs)
    rays = np.stack([np.cos(angles), np.sin(angles)], 1)
    distance = walls.ray_distances(before[:2], rays)
    points = np.asarray(before[:2])[None] + distance[:, None] * rays
    heading = np.radians(after[2])
    forward, right = np.array([np.cos(heading), np.sin(heading)]), np.array([np.sin(heading), -np.cos(heading)])
    seen = points - np.asarray(after[:2])[None]
    depth_after = np.maximum(seen @ forward, MIN_DEPTH)
    target = ((seen @ right) / depth_after / half + 1) / 2 * columns - 0.5  # where each source column lands
    order = np.argsort(target, kind="stable")
    out = np.arange(columns, dtype=np.float64)
    source = np.clip(np.interp(out, target[order], out[order]), 0, columns - 1)
    scale = np.interp(out, target[order], (distance * np.cos(np.arctan(xs)) / depth_after)[order])
    return source, scale


def warp_latent(latent: torch.Tensor, source: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """(..., C, h, w) latent resampled by a `warp_field`: columns from `source` (w,), then each column's rows
    scaled about the horizon by `scale` (w,) (linear interpolation, edges repeated)."""
    h, w = latent.shape[-2:]
    columns = torch.arange(w, dtype=torch.float64)
    column_weights = (1 - (torch.from_numpy(source)[:, None] - columns).abs()).clamp_min(0)  # (w out, w in)
    moved = torch.einsum("...hj,ij->...hi", latent, column_weights.to(latent.device, latent.dtype))
    horizon = (h - 1) / 2
    rows = torch.arange(h, dtype=torch.float64)
    source_rows = (horizon + (rows[:, None] - horizon) / torch.from_numpy(scale)[None, :]).clamp(0, h - 1)  # (h, w)
    row_weights = (1 - (source_rows[:, :, None] - rows).abs()).clamp_min(0)  # (h out, w, h in)
    return torch.einsum("...jw,iwj->...iw", moved, row_weights.to(latent.device, latent.dtype))
