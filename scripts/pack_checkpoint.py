"""Copy a trained world into a checkpoint fit to ship: playing weights only, half precision, sharded.

    python3 scripts/pack_checkpoint.py RUN_OR_CHECKPOINT OUT_DIR [--dtype bfloat16] [--shard-mib 15] [--hold-still]
                                       [--world-from CHECKPOINT]

RUN_OR_CHECKPOINT is a checkpoint directory or a training run folder (its latest stage's checkpoint). OUT_DIR gets
the generator, VAE and start frames (no optimiser or discriminator state), and a world's learned movement and
keyframe memory as they are, every weight file split into shards of at most --shard-mib MiB; `load_checkpoint`
reads them back transparently (in float32). --hold-still plays the world with its input noise held while the
player does not move (`sampling.hold_still`, as the shipped world plays). --world-from gives it another checkpoint's
movement and keyframe memory with that memory's settings (a world trained on a GPU machine, which sends back at most
eight files, gets the shipped world's here: it plays pulled toward the keyframes as the shipped world does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from worldsim.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from worldsim.config import replace
from worldsim.errors import WorldsimError

WORLD_SETS = ("movement", "memory")  # the world's state beyond pixels (worldsim/world), kept at full precision


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="checkpoint directory or training run folder")
    parser.add_argument("out", type=Path, help="directory to write (replaced if it exists)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--shard-mib", type=float, default=15.0, help="largest weight file, in MiB")
    parser.add_argument("--hold-still", action="store_true", help="play with the input noise held while still")
    parser.add_argument("--world-from", type=Path, default=None,
                        help="checkpoint whose movement and keyframe memory (with its settings) the world gets")
    args = parser.parse_args()
    try:
        return pack(args)
    except WorldsimError as err:  # a bad source, or a world state that does not fit: say which, write nothing
        print(f"pack_checkpoint: {err}", file=sys.stderr)
        return 2


def pack(args: argparse.Namespace) -> int:
    source = find_checkpoint(args.source)
    world = load_checkpoint(source)
    config, state = world.config, world
    if args.world_from is not None:
        state = load_checkpoint(args.world_from)
        g = world.config.generator
        if state.memory is not None and tuple(state.memory.latents.shape[1:]) != (g.latent_channels, *g.latent_size):
            raise WorldsimError(f"{args.world_from}'s keyframes are {list(state.memory.latents.shape[1:])} latents, "
                                f"this world's VAE makes {[g.latent_channels, *g.latent_size]}: it needs a memory "
                                "built with its own VAE")
        config = replace(config, memory=state.config.memory)
    if args.hold_still:
        config = replace(config, sampling=replace(config.sampling, hold_still=True))
    save_checkpoint(args.out, config, world.generator, world.vae, world.start_frames,
                    extra={stem: state.extra[stem] for stem in WORLD_SETS if stem in state.extra},
                    dtype=getattr(torch, args.dtype), shard_mib=args.shard_mib)
    files = sorted(args.out.iterdir())
    print(f"packed {source} ({world.config.stage}) into {args.out}: {len(files)} files, "
          f"{sum(f.stat().st_size for f in files) / 2 ** 20:.1f} MiB, largest "
          f"{max(f.stat().st_size for f in files) / 2 ** 20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
