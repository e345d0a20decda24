"""Evaluation cost: what judging 1,000 frames costs, the model's rollouts against the metrics around them.

    python benchmarks/bench_eval.py [--frames 240] [--generator world-s] [--vae world-s] [--threads 1]

Measured in one run on this machine, with random frames and a random-weight checkpoint of the presets (speed
does not depend on the weights), reported per 1,000 frames at the VAE preset's resolution:
  - each metric alone: PSNR, SSIM, Laplacian variance, colour histogram, the IDM judge (default IDMConfig),
    and one Fréchet distance of a 240-frame x 4-episode window;
  - the candidates of one episode (`episode_candidates`): open-loop rollout, teacher-forced rollout, VAE
    round trip;
  - scoring the six frame sequences an evaluation judges (`score`), and the model's share of the whole.
The engine's ground truth is not included: it is recorded once and shared between checkpoints.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.eval import metrics
from worldsim.eval.candidates import Candidate, episode_candidates
from worldsim.eval.evaluate import ENGINE, score, windows_of
from worldsim.eval.idm import IDM, IDMConfig, InverseDynamics, motion_buckets
from worldsim.runtime.session import WorldSession
from worldsim.testing import random_checkpoint

WINDOW_FEATURES = (4 * 240, 64)  # one drift window: 4 episodes x 240 frames of 64-d IDM features


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=240, help="frames per measurement (scaled to 1,000)")
    parser.add_argument("--generator", default="world-s", help="generator preset")
    parser.add_argument("--vae", default="world-s", help="VAE preset")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    per_1000 = 1000 / args.frames
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = load_checkpoint(random_checkpoint(Path(tmp) / "ckpt", args.generator, args.vae))
    session = WorldSession(checkpoint)
    h, w = session.image_size
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (args.frames + 1, h, w, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (args.frames, h, w, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (args.frames + 1, 4)).astype(np.float32)
    actions[:, 3] = 0.0
    idm = IDM(InverseDynamics(IDMConfig(image_size=(h, w))).eval(), checkpoint.config.encoding)
    idm.judge(real[:2], real[1:3])  # first call sets up the conv kernels

    rows = []
    for name, fn, frames_args in (
        ("PSNR", metrics.psnr, (other, real[1:])),
        ("SSIM", metrics.ssim, (other, real[1:])),
        ("Laplacian variance", metrics.laplacian_variance, (other,)),
        ("colour histogram", metrics.color_histogram, (other,)),
        ("IDM judge (pairs)", idm.judge, (real[:-1], real[1:])),
    ):
        rows.append((name, seconds(fn, *frames_args) * per_1000))
    features = rng.normal(size=WINDOW_FEATURES)
    frechet = seconds(metrics.frechet_distance, features, features + 0.1)

    start = time.perf_counter()
    candidates, speed, _ = episode_candidates(session, real, actions)
    model = time.perf_counter() - start
    candidates[ENGINE] = Candidate(real[1:], real[:-1])
    commanded = motion_buckets(actions[1:], checkpoint.config.encoding)
    windows = windows_of(args.frames, 240)
    scoring = seconds(lambda: [score(c, real[1:], commanded, windows, idm) for c in candidates.values()])

    print(f"evaluation cost on {h}x{w} frames, generator {args.generator}, {args.threads} thread(s), "
          f"measured on {args.frames} frames")
    for name, value in rows:
        print(f"  {name:38s} {value:7.2f} s per 1,000 frames")
    print(f"  {'Frechet distance, one window':38s} {frechet * 1e3:7.1f} ms")
    print(f"  {'open-loop rollout alone':38s} {speed.seconds * per_1000:7.2f} s per 1,000 frames "
          f"({speed.frames / speed.seconds:.1f} frames/s)")
    print(f"  {'candidates (2 rollouts + VAE)':38s} {model * per_1000:7.2f} s per 1,000 frames")
    print(f"  {'scoring 6 sequences (all metrics)':38s} {scoring * per_1000:7.2f} s per 1,000 frames")
    print(f"  model share of the evaluation: {model / (model + scoring):.0%}")


if __name__ == "__main__":
    main()
