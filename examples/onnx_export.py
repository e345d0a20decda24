"""Export a world to ONNX, then play it with onnxruntime and compare with torch frame by frame.

    python examples/onnx_export.py --checkpoint checkpoints/doom-camera --out exported/doom-camera [--int8]

The same as `worldsim export --checkpoint DIR --out DIR` followed by a session on the onnx backend
(`WorldSession(..., backend=BackendConfig(name="onnx", onnx_dir=OUT))`, or WORLDSIM_BACKEND=onnx for `worldsim play`).
"""

import argparse
import time

import numpy as np

from worldsim.backends import BackendConfig
from worldsim.backends.export import export_checkpoint, psnr
from worldsim.checkpoint import load_checkpoint
from worldsim.runtime.session import WorldSession

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", default="checkpoints/doom-camera")
parser.add_argument("--out", default="exported/doom-camera")
parser.add_argument("--int8", action="store_true", help="also export and play the int8-quantised step")
args = parser.parse_args()

# 1. export: the step (KV cache in and out) and the decoder, checked against torch over a rollout past the window
manifest = export_checkpoint(load_checkpoint(args.checkpoint), args.out, quantize="int8" if args.int8 else "none",
                             overwrite=True)
print(f"wrote {', '.join(manifest['files'].values())} to {args.out}; max |latent diff| vs torch "
      f"{manifest['verified']['max_abs_latent']:.2g} over {manifest['verified']['frames']} frames")

# 2. play the same inputs on torch and on onnxruntime
forward = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)  # camera scheme: forward, strafe, yaw, use
backends = {"torch eager": "eager", "onnxruntime": BackendConfig(name="onnx", onnx_dir=args.out)}
if args.int8:
    backends["onnxruntime int8"] = BackendConfig(name="onnx", quantize="int8", onnx_dir=args.out)
frames = {}
for label, backend in backends.items():
    session = WorldSession(load_checkpoint(args.checkpoint), backend=backend)
    session.reset()
    for _ in range(8):  # warm up: first calls allocate and pick kernels
        session.step(session.encode(forward))
    session.reset()
    start = time.perf_counter()
    frames[label] = np.stack([session.step(session.encode(forward)) for _ in range(48)])
    print(f"{label:>18}: {48 / (time.perf_counter() - start):6.1f} frames/s")
for label in list(backends)[1:]:
    mean_psnr = np.mean([psnr(a, b) for a, b in zip(frames[label], frames["torch eager"])])
    print(f"{label:>18}: PSNR vs torch {mean_psnr:.1f} dB (inf: identical)")
