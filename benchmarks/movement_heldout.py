"""How closely worlds' movements follow the engine's player on a held-out recording, open loop from its first pose.

    worldsim record --env doom --episodes 120 --steps 1050 --seed 30000 --val-fraction 0 --out runs/moves-120
    python benchmarks/movement_heldout.py runs/moves-120 checkpoints/doom-camera runs/other-world [--json FILE]

Prints, per checkpoint, `worldsim eval`'s movement figures (worldsim/eval/movement.py) on every episode of the
recording: the position error after 1, 10 and 60 s, the error averaged over each episode and the share of frames
within 32 map units, the heading error after 10 s, and the wall contacts caught. No generator runs: a hundred
one-minute episodes take a few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from worldsim.checkpoint import load_checkpoint
from worldsim.conditioning import load_scheme
from worldsim.data.storage import DatasetIndex
from worldsim.errors import WorldsimError
from worldsim.eval.movement import movement_metrics


def tracks_of(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every episode's poses (F, 3) and actions (F, A), float64, without its frames (a recording's bulk)."""
    tracks = []
    for episode in DatasetIndex.load(root).select():
        chunks = []
        for chunk in episode.files:
            with np.load(root / chunk.name, allow_pickle=False) as npz:
                chunks.append((npz["poses"], npz["actions"]))
        tracks.append(tuple(np.concatenate(parts).astype(np.float64) for parts in zip(*chunks)))
    return tracks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a recording (`worldsim record`) the worlds were not trained on")
    parser.add_argument("checkpoints", type=Path, nargs="+", help="world checkpoints with a movement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    try:
        episodes = tracks_of(args.data)
        figures = {}
        for path in args.checkpoints:
            checkpoint = load_checkpoint(path)
            movement = checkpoint.movement
            if movement is None:
                raise WorldsimError(f"{path} has no movement (movement.safetensors) to judge")
            if movement.controls != tuple(load_scheme(checkpoint.config.scheme).control_names):
                raise WorldsimError(f"{path}: its movement's controls {list(movement.controls)} are not its scheme's")
            tracks = [(poses, actions, movement.rollout(movement.start(poses[0]), actions[1:]))
                      for poses, actions in episodes]
            figures[str(path)] = movement_metrics(movement, tracks, checkpoint.config.fps)
    except WorldsimError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, f in figures.items():
        at = "  ".join(f"{h}: {v['median']:.1f} / {v['mean']:.1f}" for h, v in f["position_error"].items())
        mean = f["mean_error"]
        caught = f["wall_contacts_caught"]
        print(f"{path}\n  position error (map units, median / mean over {len(episodes)} episodes)  {at}\n"
              f"  over each episode: {mean['median']:.1f} / {mean['mean']:.1f}, frames within 32 units "
              f"{mean['frames_near']:.1%}; heading after 10 s {f['heading_error_10s']:.2f} degrees; "
              f"wall contacts caught {'-' if caught is None else f'{caught:.0%}'} of {f['wall_contacts']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
