"""Play speed at a preset's size on a random-weight checkpoint: a thin wrapper around `worldsim bench`.

    python benchmarks/bench_play.py [--frames 300] [--threads 1,2] [--dtype float32] [--generator world-m]
                                    [--vae world-s] [--backend SPECS] [--record] [--loop-only] [--json OUT]

Everything is measured by worldsim/bench.py (the game loop, cache vs recompute, threads, precision, FLOPs, where
the time goes); this script only makes the checkpoint, so the two cannot drift apart. `worldsim bench --preset NAME`
does the same without writing a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from worldsim.cli import main as worldsim_main
from worldsim.testing import random_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="precision of the eager backend measured beside the float32 baseline")
    parser.add_argument("--backend", default=None, help="backends to measure (default: eager in --dtype)")
    parser.add_argument("--generator", default="world-m")
    parser.add_argument("--vae", default="world-s")
    parser.add_argument("--record", action="store_true", help="also write the MP4 + action log in the loop")
    parser.add_argument("--loop-only", action="store_true", help="measure the play loop only")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_checkpoint(Path(tmp) / "world", generator=args.generator, vae=args.vae)
        argv = ["bench", "--checkpoint", str(checkpoint), "--frames", str(args.frames), "--threads", args.threads,
                "--backend", args.backend or f"eager/{args.dtype}"]
        if args.warmup is not None:
            argv += ["--warmup", str(args.warmup)]
        if args.record:
            argv.append("--record")
        argv += ["--skip", "recompute,teacher,flops,threads,quality"] if args.loop_only else ["--profile"]
        if args.json is not None:
            argv += ["--json", str(args.json)]
        return worldsim_main(argv)


if __name__ == "__main__":
    sys.exit(main())
