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
    source, scale = _warps(np.asarray(before, np.float64)[None], np.asarray(after, np.float64)[None], walls, fov,
                           columns)[0]
    return source, scale


def warp_fields(poses: np.ndarray, walls: Walls, fov: float, columns: int) -> np.ndarray:
    """Poses (..., K, 3) of consecutive frames -> warp fields (..., K, 2, columns) as `warp_latent` takes them: field
    k carries frame k - 1 to frame k's pose (source columns, then row scales); field 0 is the identity."""
    fields = np.empty((*poses.shape[:-1], 2, columns))
    fields[..., 0, :], fields[..., 1, :] = np.arange(columns), 1.0
    moves = _warps(poses[..., :-1, :].reshape(-1, 3), poses[..., 1:, :].reshape(-1, 3), walls, fov, columns)
    fields[..., 1:, :, :] = moves.reshape(*poses.shape[:-2], poses.shape[-2] - 1, 2, columns)
    return fields


def _warps(before: np.ndarray, after: np.ndarray, walls: Walls, fov: float, columns: int) -> np.ndarray:
    """Moves from poses `before` (M, 3) to `after` (M, 3) -> (M, 2, columns) source columns and row scales, the
    rays of all of them cast at once."""
    half = np.tan(np.radians(fov / 2))
    xs = ((np.arange(columns) + 0.5) / columns * 2 - 1) * half  # image-plane x of each column
    angles = np.radians(before[:, 2:3]) - np.arctan(xs)  # (M, columns)
    rays = np.stack([np.cos(angles), np.sin(angles)], -1)  # (M, columns, 2)
    distance = walls.ray_distances(before[:, :2], rays)  # (M, columns)
    points = before[:, None, :2] + distance[..., None] * rays
    heading = np.radians(after[:, 2])
    forward = np.stack([np.cos(heading), np.sin(heading)], -1)[:, None]  # (M, 1, 2)
    right = np.stack([np.sin(heading), -np.cos(heading)], -1)[:, None]
    seen = points - after[:, None, :2]
    depth_after = np.maximum((seen * forward).sum(-1), MIN_DEPTH)
    targets = ((seen * right).sum(-1) / depth_after / half + 1) / 2 * columns - 0.5  # where each source column lands
    ratios = distance * np.cos(np.arctan(xs)) / depth_after
    out = np.arange(columns, dtype=np.float64)
    fields = np.empty((len(before), 2, columns))
    for field, target, ratio in zip(fields, targets, ratios):
        order = np.argsort(target, kind="stable")
        field[0] = np.clip(np.interp(out, target[order], out[order]), 0, columns - 1)
        field[1] = np.interp(out, target[order], ratio[order])
    return fields


def warp_latent(latent: torch.Tensor, source: np.ndarray | torch.Tensor, scale: np.ndarray | torch.Tensor
                ) -> torch.Tensor:
    """(..., C, h, w) latents resampled by warp fields: columns from `source` (..., w), then each column's rows
    scaled about the horizon by `scale` (..., w) (linear interpolation, edges repeated). The fields' leading dims
    are the latents' before C, or none (one field for all)."""
    h, w = latent.shape[-2:]
    device = torch.device("cpu") if latent.device.type == "mps" else latent.device  # MPS has no float64
    source, scale = (torch.as_tensor(x, dtype=torch.float64, device=device) for x in (source, scale))
    columns = torch.arange(w, dtype=torch.float64, device=device)
    column_weights = (1 - (source[..., :, None] - columns).abs()).clamp_min(0)  # (..., w out, w in)
    moved = torch.einsum("...chj,...ij->...chi", latent, column_weights.to(latent.device, latent.dtype))
    horizon = (h - 1) / 2
    rows = torch.arange(h, dtype=torch.float64, device=device)
    source_rows = (horizon + (rows[:, None] - horizon) / scale[..., None, :]).clamp(0, h - 1)  # (..., h, w)
    row_weights = (1 - (source_rows[..., None] - rows).abs()).clamp_min(0)  # (..., h out, w, h in)
    return torch.einsum("...cjw,...iwj->...ciw", moved, row_weights.to(latent.device, latent.dtype))
