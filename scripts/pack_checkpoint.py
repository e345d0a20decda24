"""Copy a trained world into a checkpoint fit to ship: playing weights only, half precision, sharded.

    python3 scripts/pack_checkpoint.py RUN_OR_CHECKPOINT OUT_DIR [--dtype bfloat16] [--shard-mib 15]

RUN_OR_CHECKPOINT is a checkpoint directory or a training run folder (its latest stage's checkpoint). OUT_DIR gets
the generator, VAE and start frames (no optimiser or discriminator state), every weight file split into shards of
at most --shard-mib MiB; `load_checkpoint` reads them back transparently (in float32).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from worldsim.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="checkpoint directory or training run folder")
    parser.add_argument("out", type=Path, help="directory to write (replaced if it exists)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--shard-mib", type=float, default=15.0, help="largest weight file, in MiB")
    args = parser.parse_args()
    source = find_checkpoint(args.source)
    world = load_checkpoint(source)
    save_checkpoint(args.out, world.config, world.generator, world.vae, world.start_frames,
                    dtype=getattr(torch, args.dtype), shard_mib=args.shard_mib)
    files = sorted(args.out.iterdir())
    print(f"packed {source} ({world.config.stage}) into {args.out}: {len(files)} files, "
          f"{sum(f.stat().st_size for f in files) / 2 ** 20:.1f} MiB, largest "
          f"{max(f.stat().st_size for f in files) / 2 ** 20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
