"""Drive a world from Python without a window: turn right for a second, then walk forward; save a strip of frames.

    python examples/headless_rollout.py --checkpoint checkpoints/doom-camera --out rollout.png
"""

import argparse

import imageio.v2 as imageio
import numpy as np

from worldsim.checkpoint import load_checkpoint
from worldsim.runtime.session import WorldSession

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", default="checkpoints/doom-camera")
parser.add_argument("--out", default="rollout.png")
args = parser.parse_args()

session = WorldSession(load_checkpoint(args.checkpoint))  # plays with the checkpoint's own scheme
frames = [session.reset()]  # starts from the checkpoint's first real frame
turn_right = np.array([0.0, 0.0, 1.0, 0.0], dtype=np.float32)  # camera scheme: forward, strafe, yaw, use
forward = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
for action in [turn_right] * 18 + [forward] * 18:
    frames.append(session.step(session.encode(action)))
imageio.imwrite(args.out, np.concatenate(frames[::6], axis=1))
print(f"wrote {args.out} ({len(frames[::6])} frames side by side); last frame took {session.timings_ms}")
