"""What a 2.5D warp of the recycled frame could give: the engine's previous frame, encoded, warped by the engine's own
motion with per-column depth from the map's walls, decoded, against the engine's next frame.

The shipped generator turns the recycled latent by the commanded yaw (a pinhole reprojection, exact for a pure
turn) and has to draw every translation itself. Doom is 2.5D: with the map's walls, each latent column's depth is a
ray cast, so a forward or sideways move can be drawn too: each column moves to where its wall point is seen from the
new pose, and scales about the horizon by the ratio of its depths. This measures that warp as a teacher-forced
yardstick, beside turned-previous (the yaw turn alone) and copy-previous, on the eval's held-out sequences.

    python benchmarks/warp_yardstick.py [--ground-truth runs/gt] [--episodes 2] [--frames 1440] [--no-rows]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.data.dataset import resize_frames
from worldsim.data.storage import load_episodes
from worldsim.eval.metrics import psnr
from worldsim.models.generator import turn_columns
from worldsim.runtime.session import frames_to_tensor, tensor_to_frames

BATCH = 64
MAX_DEPTH = 4096.0  # map units: a ray that meets no wall


def column_rays(pose: np.ndarray, columns: int, fov: float) -> tuple[np.ndarray, np.ndarray]:
    """Image-plane x (columns,) of each latent column and its ray direction (columns, 2) from `pose` (x, y, heading
    in degrees, counter-clockwise): screen right is clockwise."""
    xs = ((np.arange(columns) + 0.5) / columns * 2 - 1) * np.tan(np.radians(fov / 2))
    angle = np.radians(pose[2]) - np.arctan(xs)
    return xs, np.stack([np.cos(angle), np.sin(angle)], 1)


def ray_hits(origin: np.ndarray, directions: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distance (K,) along each ray (K, 2) from `origin` to the nearest wall segment (N, 4) it meets."""
    start, span = segments[:, :2], segments[:, 2:] - segments[:, :2]
    denom = directions[:, None, 0] * span[None, :, 1] - directions[:, None, 1] * span[None, :, 0]  # (K, N)
    w = start[None] - origin[None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[..., 0] * span[None, :, 1] - w[..., 1] * span[None, :, 0]) / denom
        u = (w[..., 0] * directions[:, None, 1] - w[..., 1] * directions[:, None, 0]) / denom
    hit = (t > 1e-3) & (u >= 0) & (u <= 1) & np.isfinite(t)
    return np.minimum(np.where(hit, t, np.inf).min(1), MAX_DEPTH)


def warp_latent(latent: np.ndarray, before: np.ndarray, after: np.ndarray, segments: np.ndarray, fov: float,
                rows: bool = True) -> np.ndarray:
    """(C, h, w) latent seen from pose `before` -> as seen from `after`: each column moves to where its wall point
    is seen from, and (`rows`) scales about the horizon by its depth before over after."""
    _, h, w = latent.shape
    xs, directions = column_rays(before, w, fov)
    distance = ray_hits(before[:2], directions, segments)
    points = before[None, :2] + distance[:, None] * directions
    depth_before = distance * np.cos(np.arctan(xs))
    heading = np.radians(after[2])
    forward, right = np.array([np.cos(heading), np.sin(heading)]), np.array([np.sin(heading), -np.cos(heading)])
    seen = points - after[None, :2]
    depth_after = np.maximum(seen @ forward, 1.0)
    target = ((seen @ right) / depth_after / np.tan(np.radians(fov / 2)) + 1) / 2 * w - 0.5
    order = np.argsort(target)
    columns = np.arange(w)
    source = np.clip(np.interp(columns, target[order], columns[order]), 0, w - 1)  # per output column
    scale = np.interp(columns, target[order], (depth_before / depth_after)[order])
    low = np.floor(source).astype(int)
    high, a = np.minimum(low + 1, w - 1), source - low
    moved = latent[:, :, low] * (1 - a) + latent[:, :, high] * a
    if not rows:
        return moved
    horizon = (h - 1) / 2
    source_rows = np.clip(horizon + (np.arange(h)[:, None] - horizon) / scale[None, :], 0, h - 1)  # (h, w)
    low = np.floor(source_rows).astype(int)
    high, b = np.minimum(low + 1, h - 1), source_rows - low
    column = np.broadcast_to(columns, (h, w))
    return moved[:, low, column] * (1 - b) + moved[:, high, column] * b


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/doom-camera", help="a world with the map's walls")
    parser.add_argument("--ground-truth", default="runs/gt")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--frames", type=int, default=1440)
    parser.add_argument("--no-rows", action="store_true", help="move the columns only (no scaling by depth)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = load_checkpoint(args.checkpoint)
    walkable = None if world.movement is None else world.movement.walkable
    if walkable is None or walkable.walls is None:
        raise SystemExit(f"{args.checkpoint} has no map walls to cast rays against (scripts/add_map_walls.py)")
    segments, vae, fov = walkable.walls.segments, world.vae.eval(), world.config.memory.fov
    height, width = world.config.vae.image_size

    def decode(latents: np.ndarray) -> np.ndarray:
        return np.concatenate([tensor_to_frames(vae.decode(torch.from_numpy(latents[i:i + BATCH]).float()))
                               for i in range(0, len(latents), BATCH)])

    for episode in sorted(load_episodes(args.ground_truth), key=lambda e: e.id)[: args.episodes]:
        real = resize_frames(episode.frames[: args.frames + 1], (width, height))
        poses = episode.poses[: args.frames + 1]
        z = torch.cat([vae.encode(frames_to_tensor(real[i:i + BATCH])) for i in range(0, len(real), BATCH)])
        turns = torch.from_numpy((poses[:-1, 2] - poses[1:, 2] + 180) % 360 - 180)  # turned right by
        yardsticks = {
            "copy_previous": real[:-1],
            "turned_previous": decode(turn_columns(z[:-1], turns, fov).numpy()),
            "warped_previous": decode(np.stack([warp_latent(z[t - 1].numpy(), poses[t - 1], poses[t], segments, fov,
                                                            rows=not args.no_rows) for t in range(1, len(real))])),
            "vae": decode(z[1:].numpy()),
        }
        moving = np.linalg.norm(poses[1:, :2] - poses[:-1, :2], axis=1) > 2.0
        scores = {name: np.asarray(psnr(frames, real[1:])) for name, frames in yardsticks.items()}  # capped
        print(f"episode {episode.id}, {len(moving)} frames: "
              + ", ".join(f"{name} {np.mean(s):.2f}" for name, s in scores.items())
              + f" | moving ({moving.mean():.0%}): "
              + ", ".join(f"{name} {np.mean(s[moving]):.2f}" for name, s in scores.items()), flush=True)


if __name__ == "__main__":
    main()
