"""What a 2.5D warp of the recycled frame could give: the engine's previous frame, encoded, warped by the engine's own
motion with per-column depth from the map's walls, decoded, against the engine's next frame.

The shipped generator turns the recycled latent by the commanded yaw (a pinhole reprojection, exact for a pure
turn) and has to draw every translation itself. Doom is 2.5D: with the map's walls, each latent column's depth is a
ray cast, so a forward or sideways move can be drawn too: each column moves to where its wall point is seen from the
new pose, and scales about the horizon by the ratio of its depths. This measures that warp (worldsim/world/warp.py) as a
teacher-forced yardstick, beside turned-previous (the yaw turn alone) and copy-previous, on the eval's held-out
sequences, with the frames where the player moves apart and the depth scaling optional (`worldsim eval` reports
it as `warped_previous`).

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
from worldsim.world.warp import warp_field, warp_latent

BATCH = 64


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
    walls, vae, fov = walkable.walls, world.vae.eval(), world.config.memory.fov
    height, width = world.config.vae.image_size

    def warp(latent: torch.Tensor, before: np.ndarray, after: np.ndarray) -> torch.Tensor:
        source, scale = warp_field(before, after, walls, fov, latent.shape[-1])
        return warp_latent(latent, source, np.ones_like(scale) if args.no_rows else scale)

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
            "warped_previous": decode(torch.stack([warp(z[t - 1], poses[t - 1], poses[t]) for t in range(1, len(real))]
                                                  ).numpy()),
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
