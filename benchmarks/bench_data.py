"""Data pipeline speed: recording throughput, loading, window batches, size on disk.

    python benchmarks/bench_data.py [--frames 10000] [--repeats 3] [--config NAME] [--scheme camera]

Measured in one run on this machine (median of --repeats where it is a rate):
  - engine only: ViZDoom stepping with a constant action, and with the exploration policy choosing actions;
  - the full recording pipeline, `record()`: policy + engine + deflate + atomic writes, with the chunk writers
    on background threads (the default) and in the foreground, for the ratio;
  - dataset size on disk per 100,000 frames (extrapolated from the recorded run);
  - loading for the pixel path: decode + resize to the model's 128x96;
  - batches of 16 windows x 9 frames: pixels at 128x96, and cached latents 8x12x16;
  - building the latent cache with a stand-in encoder (the cost around the VAE, not the VAE itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from worldsim.conditioning import load_scheme
from worldsim.data.dataset import LatentCache, LatentWindowDataset, WindowDataset
from worldsim.data.env import make_env
from worldsim.data.policies import ExplorePolicy
from worldsim.data.record import record

BATCH, WINDOW, MODEL_RESOLUTION, LATENT_SHAPE = 16, 9, (128, 96), (8, 12, 16)
EPISODE_STEPS = 999  # 1,000 frames per episode, like the shipped recipe's episodes
SAMPLE_SECONDS = 2.0


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its live children (the ViZDoom engine), from /proc.

    On a shared machine the wall-clock rate depends on everyone else's load; the CPU cost per frame does not.
    """
    times = os.times()
    total = times.user + times.system
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid():  # fields[1]: parent pid; [11], [12]: user and system ticks
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def median_rate(measure: Callable[[], float], repeats: int) -> float:
    return statistics.median(measure() for _ in range(repeats))


def engine_only(env, policy, frames: int, use_policy: bool) -> float:
    """Frames per second of env.step alone (and the policy's act when `use_policy`)."""
    frame, pose = env.reset(0)
    policy.reset(0)
    constant = np.zeros(len(env.scheme.control_names), dtype=np.float32)
    constant[0] = 0.5  # walk (into walls, as the explorer also does)
    start = time.perf_counter()
    for i in range(frames):
        action = policy.act(frame, pose) if use_policy else constant
        frame, pose, info = env.step(action)
        if info.done or (i + 1) % (EPISODE_STEPS + 1) == 0:
            frame, pose = env.reset(i)
    return frames / (time.perf_counter() - start)


def recording(env, policy, out: Path, frames: int, background: bool) -> tuple[float, object]:
    shutil.rmtree(out, ignore_errors=True)
    steps = min(EPISODE_STEPS, frames - 1)
    episodes = max(1, round(frames / (steps + 1)))
    start = time.perf_counter()
    index = record(env, policy, out, episodes=episodes, steps=steps, seed=0, progress=False,
                   background_writes=background)
    return index.frames() / (time.perf_counter() - start), index


def fake_encoder(frames: np.ndarray) -> torch.Tensor:
    """Stands in for a VAE: 8x average pooling to LATENT_SHAPE."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    x = torch.nn.functional.avg_pool2d(x, 8)  # (N, 3, 12, 16)
    return torch.cat([x, x, x[:, :2]], 1)  # (N, 8, 12, 16)


def batches_per_second(dataset) -> float:
    rng = np.random.default_rng(0)
    dataset.sample(BATCH, rng)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < SAMPLE_SECONDS:
        dataset.sample(BATCH, rng)
        count += 1
    return count / (time.perf_counter() - start)


def run(args: argparse.Namespace, tmp: Path) -> tuple[str, list[tuple[str, str]]]:
    scheme = load_scheme(args.scheme)
    rows: list[tuple[str, str]] = []
    env = make_env("doom", args.config, scheme)
    try:
        width, height = env.resolution
        setting = f"{width}x{height} engine frames, frame skip {env.frame_skip}, {args.scheme} scheme"
        policy = ExplorePolicy(scheme, seed=0)
        # 1. the engine alone, then with the policy
        rate = median_rate(lambda: engine_only(env, policy, args.frames, False), args.repeats)
        rows.append(("engine only, constant action", f"{rate:,.0f} frames/s"))
        rate = median_rate(lambda: engine_only(env, policy, args.frames, True), args.repeats)
        rows.append(("engine + exploration policy", f"{rate:,.0f} frames/s"))
        # 2. the whole recorder, writes in the background (default) and in the foreground
        data = tmp / "data"
        cpu = cpu_seconds()
        rates = [recording(env, policy, data, args.frames, background=True) for _ in range(args.repeats)]
        full, index = statistics.median(r for r, _ in rates), rates[-1][1]
        cpu_ms = (cpu_seconds() - cpu) / (index.frames() * args.repeats) * 1e3
        rows.append(("record(): policy+engine+deflate+write", f"{full:,.0f} frames/s"))
        rows.append(("  CPU per recorded frame (all processes)", f"{cpu_ms:.3f} ms = {2 / cpu_ms * 1e3:,.0f} "
                     f"frames/s on 2 free cores"))
        fore = median_rate(lambda: recording(env, policy, tmp / "fore", args.frames, False)[0], args.repeats)
        rows.append(("  same, writes in the foreground", f"{fore:,.0f} frames/s (background threads: "
                     f"{full / fore:.2f}x)"))
    finally:
        env.close()
    frames = index.frames()
    size = sum(f.bytes for e in index.episodes for f in e.files)
    ratio = frames * width * height * 3 / size
    per_100k = size / frames * 1e5 / 1e9
    rows.append(("size on disk per 100,000 frames", f"{per_100k:.2f} GB ({ratio:.1f}x smaller than raw)"))
    # 3. loading and window batches
    start = time.perf_counter()
    windows = WindowDataset(data, scheme, WINDOW, MODEL_RESOLUTION, split=None, grid=(12, 16))
    rate = frames / (time.perf_counter() - start)
    rows.append(("load for pixels: decode + resize", f"{rate:,.0f} frames/s"))
    rate = batches_per_second(windows)
    rows.append((f"pixel windows {BATCH}x{WINDOW} at 128x96", f"{rate:,.0f} batches/s = {rate * BATCH:,.0f} "
                 f"windows/s"))
    cache = LatentCache(data, "bench-vae", MODEL_RESOLUTION)
    start = time.perf_counter()
    cache.build(fake_encoder)
    rate = frames / (time.perf_counter() - start)
    rows.append(("latent cache build (stand-in VAE)", f"{rate:,.0f} frames/s"))
    rate = batches_per_second(LatentWindowDataset(cache, scheme, window=WINDOW, split=None))
    shape = "x".join(map(str, LATENT_SHAPE))
    rows.append((f"latent windows {BATCH}x{WINDOW}, latents {shape}", f"{rate:,.0f} batches/s = "
                 f"{rate * BATCH:,.0f} windows/s"))
    return setting, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000, help="frames per recording measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each rate (median reported)")
    parser.add_argument("--config", default="freedoom2_map01", help="doom config name or YAML path")
    parser.add_argument("--scheme", default="camera")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="worldsim-bench-data-"))
    try:
        setting, rows = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]  # other work on the machine skews every rate; say how busy it was
    print(f"\nworldsim data benchmark: {setting}; {args.frames} frames x {args.repeats} repeats; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
