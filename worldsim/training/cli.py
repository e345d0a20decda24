"""`worldsim train --recipe RECIPE --stage STAGE --out DIR [--resume] [--time-budget 8m]` (also under torchrun for
many GPUs)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from worldsim.errors import WorldsimError
from worldsim.training.recipe import STAGES

DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """'90s', '90', '8m', '2h', '1h30m', '1.5h' -> seconds; anything else is a WorldsimError saying what is allowed."""
    match = DURATION.match("".join(text.split()).lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise WorldsimError(f"--time-budget {text!r}: not a duration; allowed: a number with a unit, e.g. 90s, 8m, "
                            "2h or 1h30m (a bare number is seconds)")
    seconds = sum(float(match[unit] or 0) * scale for unit, scale in (("h", 3600), ("m", 60), ("s", 1)))
    if seconds <= 0:
        raise WorldsimError(f"--time-budget {text!r}: must be more than 0 seconds")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True,
                        help="a shipped recipe name (smoke: every stage in under a minute on a CPU; doom-camera: "
                             "the shipped world) or a YAML path")
    parser.add_argument("--stage", default="all", choices=(*STAGES, "all"), help="which stage to run")
    parser.add_argument("--out", required=True, help="run directory: OUT/<stage>/checkpoint, log.jsonl, samples/")
    parser.add_argument("--resume", action="store_true", help="continue the stage from its last checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda uses the local rank)")
    parser.add_argument("--forcing", choices=("student", "teacher"), default=None,
                        help="override the adversarial stage's forcing (the paper's ablation)")
    parser.add_argument("--steps", type=int, default=None, help="override the stage's number of steps")
    parser.add_argument("--time-budget", default=None, metavar="DURATION",
                        help="stop when this much training time is spent (e.g. 90s, 8m, 2h), shared between the "
                             "stages by the recipe's budget fractions; a resumed run continues with the time left; "
                             "the recipe's steps stay the upper bound")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="dataset directory instead of the recipe's data.dir (recorded there if missing). "
                             "Data sets are kept apart from --out so runs share them: a relative data.dir is read "
                             "from the current folder (default: the recipe's data.dir, e.g. data/smoke, "
                             "data/doom-camera)")


def run(args: argparse.Namespace) -> int:
    import os

    from worldsim.config import replace
    from worldsim.data.storage import INDEX_FILE
    from worldsim.training.recipe import load_recipe
    from worldsim.training.stages import train

    budget = parse_duration(args.time_budget) if args.time_budget is not None else None
    recipe = load_recipe(args.recipe)
    if args.data is not None:
        recipe = replace(recipe, data=replace(recipe.data, dir=args.data))
    if args.forcing:
        recipe = replace(recipe, adversarial=replace(recipe.adversarial, forcing=args.forcing))
    if args.steps is not None:
        stages = STAGES if args.stage == "all" else (args.stage,)
        recipe = replace(recipe, **{s: replace(getattr(recipe, s), steps=args.steps) for s in stages})
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    if not (Path(recipe.data.dir) / INDEX_FILE).exists():
        print(f"worldsim train: recording the data set into {recipe.data.dir} first (the recipe's data.dir; "
              "--data DIR to keep it elsewhere)", flush=True)
    written = []
    for path in train(recipe, args.stage, Path(args.out), args.resume, device, time_budget=budget):
        print(f"wrote {path}")
        written.append(path)
    if written and args.stage != "vae":  # a VAE stage's generator is untrained: nothing to play yet
        print(f"play it: worldsim play --checkpoint {written[-1]}")
    return 0
