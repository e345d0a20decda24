"""`worldsim record`: record gameplay from a real engine into a dataset directory.

    worldsim record --env doom --episodes 100 --steps 1000 --out data/doom --seed 0
    worldsim record --env doom --input keyboard --episodes 1 --steps 5000 --out data/mine   # play it yourself
    worldsim record --recipe doom-gpu --workers 16            # a recipe's data set, 16 engines in parallel

Stopped or killed, the same command run again finishes the dataset: the episodes it lacks are recorded from
their own seeds, so the data and the train/val split are those of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from worldsim.conditioning import load_scheme
from worldsim.config import load
from worldsim.data.env import ENGINES, make_env
from worldsim.data.policies import ExploreConfig, ExplorePolicy, Policy
from worldsim.data.record import RecorderSpec, record
from worldsim.data.storage import DEFAULT_CHUNK_FRAMES, INDEX_FILE, SPLITS, DatasetIndex
from worldsim.errors import WorldsimError

# What --recipe sets (from the recipe's data section), with the values used without it.
RECIPE_SETS = {"config": None, "scheme": "camera", "episodes": 10, "steps": 1000, "seed": 0, "val_fraction": 0.1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="doom", choices=sorted(ENGINES), help="engine to record from")
    parser.add_argument("--config", default=None,
                        help="engine config: a shipped name (e.g. freedoom2_map02) or a YAML path "
                             "(default: the shipped world, assets/doom/freedoom2_map01.yaml)")
    parser.add_argument("--scheme", default=None, help="conditioning scheme: camera (default), keys or a YAML path")
    parser.add_argument("--out", default=None,
                        help="dataset directory (created; must be new or empty, or hold an interrupted recording "
                             "made with the same arguments, which this run finishes); with --recipe, default: "
                             "the recipe's data.dir")
    parser.add_argument("--episodes", type=int, default=None, help="episodes to record (default 10)")
    parser.add_argument("--steps", type=int, default=None, help="steps per episode (frames = steps + 1; default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed: same seed, same data (default 0)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="fraction of the episodes held out for validation (by episode; default 0.1)")
    parser.add_argument("--recipe", default=None,
                        help="record a training recipe's data set (its data section sets --config, --scheme, "
                             "--episodes, --steps, --seed and --val-fraction)")
    parser.add_argument("--workers", type=int, default=1,
                        help="engine processes recording at once (0: one per CPU core); the data are the same as "
                             "with one")
    parser.add_argument("--append", action="store_true",
                        help="add --episodes more episodes to a finished dataset directory")
    parser.add_argument("--input", default="policy", choices=("policy", "keyboard"),
                        help="who plays: the scripted explorer, or you with keyboard and mouse in a window")
    parser.add_argument("--policy-config", default=None, help="YAML tuning the explorer (ExploreConfig)")
    parser.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, help="frames per chunk")
    parser.add_argument("--scale", type=int, default=4, help="window size, in multiples of the frame, for "
                        "--input keyboard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def from_recipe(args: argparse.Namespace) -> None:
    """Fill what --recipe sets (or the defaults) into `args`."""
    given = [f"--{k.replace('_', '-')}" for k in RECIPE_SETS if getattr(args, k) is not None]
    if args.recipe is None:
        for key, default in RECIPE_SETS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        if args.out is None:
            raise WorldsimError("--out is required (or --recipe, to record a recipe's data set)")
        return
    from worldsim.training.recipe import load_recipe

    if given:
        raise WorldsimError(f"--recipe sets {', '.join(given)}: drop {'it' if len(given) == 1 else 'them'}, or "
                            "drop --recipe")
    data = load_recipe(args.recipe).data
    if data.record is None:
        raise WorldsimError(f"recipe {args.recipe!r} has no data.record section saying how to record its data")
    spec = data.record
    args.config, args.scheme, args.episodes, args.steps = spec.doom, data.scheme, spec.episodes, spec.steps
    args.seed, args.val_fraction, args.out = spec.seed, spec.val_fraction, args.out or data.dir


def recorded_already(args: argparse.Namespace) -> bool:
    """With --recipe: whether --out holds the recipe's finished recording (a rerun then has nothing to do)."""
    if args.recipe is None or args.append or not (Path(args.out) / INDEX_FILE).exists():
        return False
    index = DatasetIndex.load(args.out)
    request = (index.recording or {}).get("request", {})
    asked = {"episodes": args.episodes, "steps": args.steps, "seed": args.seed, "val_fraction": args.val_fraction}
    if not index.complete or {k: request.get(k) for k in asked} != asked:
        return False  # recording refuses or finishes it, saying why
    print(f"{index.root}: holds recipe {args.recipe}'s data already ({len(index.episodes)} episodes, "
          f"{index.frames()} frames); nothing to record")
    return True


def run(args: argparse.Namespace) -> int:
    if args.scale < 1:
        raise WorldsimError(f"--scale must be at least 1, got {args.scale}")
    from_recipe(args)
    if recorded_already(args):
        return 0
    workers = args.workers or os.cpu_count() or 1
    if workers < 1:
        raise WorldsimError(f"--workers must be at least 0, got {args.workers}")
    if workers > 1 and args.input != "policy":
        raise WorldsimError("--workers records with the scripted explorer; --input keyboard plays in one process")
    scheme = load_scheme(args.scheme)
    policy_config = load(ExploreConfig, args.policy_config) if args.policy_config else ExploreConfig()
    spec = RecorderSpec(args.env, args.config, args.scheme, policy_config)
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
                           progress=not args.no_progress, workers=workers, spec=spec)
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
