"""`worldsim export`: write a checkpoint's generator step and decoder as ONNX, checked against torch.

    worldsim export --checkpoint DIR --out DIR [--quantize int8] [--dtype float32] [--overwrite]

The export is verified before it is kept: onnxruntime and torch roll out the same inputs over more frames than the
window (the ring wraps, the sink frame is read) and must agree within export.LATENT_TOLERANCE; the measured
difference is printed and stored in OUT/export.json. Play it with `worldsim play --backend onnx` (or
`WORLDSIM_BACKEND=onnx`), pointing the backend at OUT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from worldsim.errors import WorldsimError

EXPORT_DTYPES = ("float32", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                        help="checkpoint directory, or a training run folder (its latest stage's checkpoint)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write the ONNX files to")
    parser.add_argument("--dtype", default="float32", choices=EXPORT_DTYPES,
                        help="precision of the exported graphs (float32 for CPU; float16 for onnxruntime-gpu)")
    parser.add_argument("--quantize", default="none", choices=("none", "int8"),
                        help="also write a dynamically int8-quantised step for CPU (its quality cost: worldsim bench)")
    parser.add_argument("--no-verify", action="store_true", help="skip the rollout check against torch")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in --out (never a folder holding other files)")


def run(args: argparse.Namespace) -> int:
    import torch

    from worldsim.backends.export import export_checkpoint
    from worldsim.checkpoint import find_checkpoint, load_checkpoint

    if args.dtype != "float32" and not args.no_verify:
        raise WorldsimError("the check against torch runs on CPU in float32; export float16 with --no-verify")
    checkpoint = load_checkpoint(find_checkpoint(args.checkpoint))
    manifest = export_checkpoint(checkpoint, args.out, dtype=getattr(torch, args.dtype), quantize=args.quantize,
                                 verify=not args.no_verify, overwrite=args.overwrite)
    files = ", ".join(manifest["files"].values())
    print(f"worldsim export: wrote {files} to {args.out} in {manifest['export_s']:.1f} s")
    verified = manifest.get("verified")
    if verified:
        print(f"worldsim export: onnxruntime vs torch over {verified['frames']} frames (window {verified['window']}, "
              f"sink {verified['sink']}): max |latent diff| {verified['max_abs_latent']:.2g}, max |frame diff| "
              f"{verified['max_abs_frame']:.2g} (tolerance {verified['latent_tolerance']:g})")
    return 0
