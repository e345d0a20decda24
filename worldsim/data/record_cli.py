"""`worldsim record`: record gameplay from a real engine into a dataset directory.

    worldsim record --env doom --episodes 100 --steps 1000 --out data/doom --seed 0
    worldsim record --env doom --input keyboard --episodes 1 --steps 5000 --out data/mine   # play it yourself

Stopped or killed, the same command run again finishes the dataset: the episodes it lacks are recorded from
their own seeds, so the data and the train/val split are those of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import time

from worldsim.conditioning import load_scheme
from worldsim.config import load
from worldsim.data.env import ENGINES, make_env
from worldsim.data.policies import ExploreConfig, ExplorePolicy, Policy
from worldsim.data.record import record
from worldsim.data.storage import DEFAULT_CHUNK_FRAMES, SPLITS
from worldsim.errors import WorldsimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="doom", choices=sorted(ENGINES), help="engine to record from")
    parser.add_argument("--config", default=None,
                        help="engine config: a shipped name (e.g. freedoom2_map02) or a YAML path "
                             "(default: the shipped world, assets/doom/freedoom2_map01.yaml)")
    parser.add_argument("--scheme", default="camera", help="conditioning scheme: camera, keys or a YAML path")
    parser.add_argument("--out", required=True,
                        help="dataset directory (created; must be new or empty, or hold an interrupted recording "
                             "made with the same arguments, which this run finishes)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to record")
    parser.add_argument("--steps", type=int, default=1000, help="steps per episode (frames = steps + 1)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: same seed, same data")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of the episodes held out for validation (by episode)")
    parser.add_argument("--append", action="store_true",
                        help="add --episodes more episodes to a finished dataset directory")
    parser.add_argument("--input", default="policy", choices=("policy", "keyboard"),
                        help="who plays: the scripted explorer, or you with keyboard and mouse in a window")
    parser.add_argument("--policy-config", default=None, help="YAML tuning the explorer (ExploreConfig)")
    parser.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, help="frames per chunk")
    parser.add_argument("--scale", type=int, default=4, help="window size, in multiples of the frame, for "
                        "--input keyboard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.scale < 1:
        raise WorldsimError(f"--scale must be at least 1, got {args.scale}")
    scheme = load_scheme(args.scheme)
    policy_config = load(ExploreConfig, args.policy_config) if args.policy_config else ExploreConfig()
    env = make_env(args.env, args.config, scheme)
    policy: Policy
    try:
        if args.input == "keyboard":
            from worldsim.data.human import KeyboardPolicy  # pygame only when a person plays

            policy = KeyboardPolicy(scheme, env.resolution, env.fps, args.scale)
        else:
            policy = ExplorePolicy(scheme, policy_config, args.seed)
        start = time.perf_counter()
        try:
            index = record(env, policy, args.out, episodes=args.episodes, steps=args.steps, seed=args.seed,
                           val_fraction=args.val_fraction, append=args.append, chunk_frames=args.chunk_frames,
                           progress=not args.no_progress)
        finally:
            if hasattr(policy, "close"):
                policy.close()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    splits = ", ".join(f"{s} {len(index.select(s))} episodes / {index.frames(s)} frames" for s in SPLITS)
    print(f"{index.root}: {len(index.episodes)} episodes, {index.frames()} frames ({splits}); "
          f"this run {elapsed:.1f} s")
    return 0
