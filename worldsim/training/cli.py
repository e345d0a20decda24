"""`worldsim train --recipe RECIPE --stage STAGE --out DIR [--resume]` (also under torchrun for many GPUs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldsim.training.recipe import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="a shipped recipe name (smoke, doom-camera) or a YAML path")
    parser.add_argument("--stage", default="all", choices=(*STAGES, "all"), help="which stage to run")
    parser.add_argument("--out", required=True, help="run directory: OUT/<stage>/checkpoint, log.jsonl, samples/")
    parser.add_argument("--resume", action="store_true", help="continue the stage from its last checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda uses the local rank)")
    parser.add_argument("--forcing", choices=("student", "teacher"), default=None,
                        help="override the adversarial stage's forcing (the paper's ablation)")
    parser.add_argument("--steps", type=int, default=None, help="override the stage's number of steps")


def run(args: argparse.Namespace) -> int:
    import os

    from worldsim.config import replace
    from worldsim.training.recipe import load_recipe
    from worldsim.training.stages import train

    recipe = load_recipe(args.recipe)
    if args.forcing:
        recipe = replace(recipe, adversarial=replace(recipe.adversarial, forcing=args.forcing))
    if args.steps is not None:
        stages = STAGES if args.stage == "all" else (args.stage,)
        recipe = replace(recipe, **{s: replace(getattr(recipe, s), steps=args.steps) for s in stages})
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    for path in train(recipe, args.stage, Path(args.out), args.resume, device):
        print(f"wrote {path}")
    return 0
