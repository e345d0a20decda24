"""The recycled frame warped by the player's move: a 2.5D reprojection with depth from the map's walls.

The generator is shown its recycled latent turned by the commanded yaw (GeneratorConfig.yaw_reprojection), exact for
a turn. A move forward or sideways it has to draw itself. In a 2.5D map a camera column's depth is one ray cast: the
wall point each latent column shows is found from the pose it was seen from, and seen from the new pose it lies in
another column, nearer or farther. So the warp moves each column to where its wall point is seen, and scales it
about the horizon by its depth before over after (things come closer and grow). Floors, steps, doors and sprites
are not in the rays: each column moves as its wall does.

`worldsim eval` reports it as a teacher-forced yardstick (`warped_previous`) for worlds with the map's walls:
the real previous frame warped by the engine's own move (benchmarks/warp_yardstick.py prints it alone).

A world trained with it (`model.warp`, GeneratorConfig.warp_fov) is shown every recycled latent warped by the move
that produced the next frame, turn included, instead of turned by the commanded yaw: in training by the recorded
poses (`warp_fields`, carried by each Clip), at play by the tracked pose before and after the step (WorldSession.step).
`sampling.warp_move` warps a yaw-turning world's recycled latent by a share of the move at play only.
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


def warp_fields(poses: np.ndarray, walls: Walls, fov: float, columns: int) -> np.ndarray:
    """Poses (..., K, 3) of consecutive frames -> warp fields (..., K, 2, columns) as `warp_latent` takes them: field
    k carries frame k - 1 to frame k's pose (source columns, then row scales); field 0 is the identity."""
    fields = np.empty((*poses.shape[:-1], 2, columns))
    fields[..., 0, :], fields[..., 1, :] = np.arange(columns), 1.0
    flat, out = poses.reshape(-1, poses.shape[-2], 3), fields.reshape(-1, *fields.shape[-3:])
    for sequence, warps in zip(flat, out):
        for k in range(1, len(sequence)):
            warps[k] = warp_field(sequence[k - 1], sequence[k], walls, fov, columns)
    return fields


def warp_latent(latent: torch.Tensor, source: np.ndarray | torch.Tensor, scale: np.ndarray | torch.Tensor
                ) -> torch.Tensor:
    """(..., C, h, w) latents resampled by warp fields: columns from `source` (..., w), then each column's rows
    scaled about the horizon by `scale` (..., w) (linear interpolation, edges repeated). The fields' leading dims
    are the latents' before C, or none (one field for all)."""
    h, w = latent.shape[-2:]
    source, scale = (torch.as_tensor(x, dtype=torch.float64, device=latent.device) for x in (source, scale))
    columns = torch.arange(w, dtype=torch.float64, device=latent.device)
    column_weights = (1 - (source[..., :, None] - columns).abs()).clamp_min(0)  # (..., w out, w in)
    moved = torch.einsum("...chj,...ij->...chi", latent, column_weights.to(latent.dtype))
    horizon = (h - 1) / 2
    rows = torch.arange(h, dtype=torch.float64, device=latent.device)
    source_rows = (horizon + (rows[:, None] - horizon) / scale[..., None, :]).clamp(0, h - 1)  # (..., h, w)
    row_weights = (1 - (source_rows[..., None] - rows).abs()).clamp_min(0)  # (..., h out, w, h in)
    return torch.einsum("...cjw,...iwj->...ciw", moved, row_weights.to(latent.dtype))
