"""Play speed: the headless game loop at the shipped world's size, and what the KV cache buys.

    python benchmarks/bench_play.py [--frames 300] [--threads 2] [--json OUT] [--record]

Measures, in one run on this machine, with a random-weight checkpoint (generator `world-m`, VAE `world-s`: 128x96
frames, 48 tokens per frame):
  - the real headless play loop (`GameLoop`: events -> step -> draw + HUD at 4x -> flip), scripted input:
    fps and input-to-photon latency p50/p95 against the targets (>= 30 fps, p95 < 50 ms), per-stage times;
  - cached step vs full recompute: `generator.step` against the sliding KV cache, versus `generator(...)` (the
    block-causal full-sequence forward) over the last `window` frames every frame; frames/s of each and the ratio;
  - the generator step at 1 and 2 torch threads;
  - where the time goes: torch profiler op totals over the generator step and the VAE decode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from worldsim.checkpoint import load_checkpoint  # noqa: E402
from worldsim.input.replay import ActionLogHeader  # noqa: E402
from worldsim.input.sources import open_source  # noqa: E402
from worldsim.input.state import ControllerState  # noqa: E402
from worldsim.rollout import step_frame  # noqa: E402
from worldsim.runtime.loop import GameLoop  # noqa: E402
from worldsim.runtime.profile import load_profile  # noqa: E402
from worldsim.runtime.session import WorldSession  # noqa: E402
from worldsim.runtime.timing import LATENCY, STAGES  # noqa: E402
from worldsim.testing import random_checkpoint  # noqa: E402

TARGET_FPS = 30.0
TARGET_P95_MS = 50.0


def play_loop(checkpoint_dir: Path, frames: int, warmup: int, record: Path | None) -> dict:
    """The real loop, headless and unthrottled; statistics over the frames after the warm-up."""
    session = WorldSession(load_checkpoint(checkpoint_dir))
    header = ActionLogHeader(scheme=session.scheme.name, encoding=session.scheme.encoding_dict(), seed=0,
                             steps=session.steps, checkpoint="bench")
    loop = GameLoop(session, open_source("scripted"), load_profile("desktop"), header, fps=None,
                    max_frames=warmup + frames, record_path=record, overwrite=True)
    loop.run()
    times = loop.times
    rows = times.ms[warmup:times.count]
    flips = times.flip_s[warmup:times.count]
    p50, p95 = np.percentile(rows, [50, 95], axis=0)
    return {
        "frames": len(rows),
        "fps": (len(rows) - 1) / (flips[-1] - flips[0]),
        "latency_ms": {"p50": p50[LATENCY], "p95": p95[LATENCY], "max": rows[:, LATENCY].max()},
        "stage_ms": {name: p50[i] for i, name in enumerate(STAGES)},
        "stage_ms_p95": {name: p95[i] for i, name in enumerate(STAGES)},
    }


def median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


@torch.inference_mode()
def cache_vs_recompute(session: WorldSession, frames: int) -> dict:
    """Generator-only time per frame: cached step vs the full block-causal forward over the last window."""
    g = session.generator
    c = g.config
    condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
    frame_cond = torch.from_numpy(condition.frame)[None]
    token_cond = torch.from_numpy(condition.tokens)[None]
    session.reset()
    latent = session.latent
    for _ in range(c.window + c.sink):  # fill the ring: the steady state a long game runs in
        latent = step_frame(g, session.cache, latent, frame_cond, token_cond, torch.randn_like(latent))
    noise = torch.randn_like(latent)

    def cached():
        step_frame(g, session.cache, latent, frame_cond, token_cond, noise)

    window = c.window
    seq = lambda x: x[:, None].expand(1, window, *x.shape[1:]).contiguous()  # noqa: E731 - (1, window, ...)
    noisy, recycled = seq(noise), seq(latent)
    tokens, frame_vec = seq(token_cond), seq(frame_cond)
    t, aug = torch.ones(1, window), torch.zeros(1, window)

    def recompute():
        g(noisy, recycled, tokens, frame_vec, t, aug)[:, -1]

    cached_ms = median_ms(cached, frames)
    recompute_ms = median_ms(recompute, max(5, frames // 5))
    return {"window": window, "tokens_per_frame": c.tokens, "cached_ms": cached_ms, "recompute_ms": recompute_ms,
            "cached_fps": 1e3 / cached_ms, "recompute_fps": 1e3 / recompute_ms,
            "ratio": recompute_ms / cached_ms}


@torch.inference_mode()
def step_ms(session: WorldSession, frames: int) -> dict:
    """Median generator and decode time of a session step (the session's own stage timings)."""
    condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
    session.reset()
    for _ in range(20):
        session.step(condition)
    gen, dec = [], []
    for _ in range(frames):
        session.step(condition)
        gen.append(session.timings_ms["generate"])
        dec.append(session.timings_ms["decode"])
    return {"generate_ms": statistics.median(gen), "decode_ms": statistics.median(dec)}


@torch.inference_mode()
def profile_ops(session: WorldSession, frames: int, top: int) -> list[dict]:
    """Self CPU time by torch op over `frames` session steps (generator + decode)."""
    from torch.profiler import ProfilerActivity, profile

    condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
    session.reset()
    for _ in range(20):
        session.step(condition)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(frames):
            session.step(condition)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "calls_per_frame": e.count / frames, "ms_per_frame": e.self_cpu_time_total / 1e3 / frames,
             "share": e.self_cpu_time_total / total} for e in events[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generator", default="world-m")
    parser.add_argument("--vae", default="world-s")
    parser.add_argument("--record", action="store_true", help="also write the MP4 + action log in the play loop")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(Path(tmp) / "world", generator=args.generator, vae=args.vae)
        session = WorldSession(load_checkpoint(ckpt))
        g = session.generator.config
        params = sum(p.numel() for p in session.generator.parameters()) / 1e6
        print(f"worldsim play benchmark: generator {args.generator} (dim {g.dim}, depth {g.depth}, {params:.1f}M "
              f"params, {g.tokens} tokens/frame, window {g.window}), VAE {args.vae} "
              f"{session.image_size[1]}x{session.image_size[0]}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}")

        # 1. the real loop
        loop = play_loop(ckpt, args.frames, args.warmup, Path(tmp) / "bench.mp4" if args.record else None)
        ok_fps = loop["fps"] >= TARGET_FPS
        ok_latency = loop["latency_ms"]["p95"] < TARGET_P95_MS
        print(f"\nheadless play loop, {loop['frames']} frames after {args.warmup} warm-up (HUD on, window x4"
              f"{', recording' if args.record else ''}):")
        print(f"  {'fps':<28}{loop['fps']:8.1f}   target >= {TARGET_FPS:.0f}   {'PASS' if ok_fps else 'FAIL'}")
        lat = loop["latency_ms"]
        print(f"  {'latency p50 / p95 (ms)':<28}{lat['p50']:8.1f} / {lat['p95']:.1f}   target p95 < "
              f"{TARGET_P95_MS:.0f}   {'PASS' if ok_latency else 'FAIL'}   (max {lat['max']:.1f})")
        print(f"  {'stage':<12}{'p50 ms':>10}{'p95 ms':>10}")
        for name in STAGES:
            print(f"  {name:<12}{loop['stage_ms'][name]:10.2f}{loop['stage_ms_p95'][name]:10.2f}")

        # 2. cached step vs full recompute
        cache = cache_vs_recompute(session, frames=60)
        print(f"\nKV cache vs full recompute (generator only, steady state, window {cache['window']} x "
              f"{cache['tokens_per_frame']} tokens):")
        print(f"  cached step        {cache['cached_ms']:8.1f} ms   {cache['cached_fps']:7.1f} frames/s")
        print(f"  full recompute     {cache['recompute_ms']:8.1f} ms   {cache['recompute_fps']:7.1f} frames/s")
        print(f"  ratio              {cache['ratio']:8.1f}x faster with the cache")

        # 3. threads
        threads = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            threads[n] = step_ms(session, frames=40)
        torch.set_num_threads(args.threads)
        print("\nthreads (session step, median ms):")
        for n, t in threads.items():
            print(f"  {n} thread{'s' if n > 1 else ' '}   generate {t['generate_ms']:6.1f}   decode "
                  f"{t['decode_ms']:6.1f}")

        # 4. where the time goes
        ops = profile_ops(session, frames=30, top=12)
        print("\nwhere the time goes (torch profiler, self CPU per frame, generator step + VAE decode):")
        for op in ops:
            print(f"  {op['op']:<40}{op['ms_per_frame']:8.2f} ms  {100 * op['share']:5.1f}%  "
                  f"{op['calls_per_frame']:6.1f} calls")

    if args.json is not None:
        report = {"generator": args.generator, "vae": args.vae, "threads": args.threads, "torch": torch.__version__,
                  "load_avg": os.getloadavg()[0], "play_loop": loop, "targets": {"fps": TARGET_FPS,
                  "latency_p95_ms": TARGET_P95_MS, "fps_ok": ok_fps, "latency_ok": ok_latency},
                  "cache_vs_recompute": cache, "threads_step_ms": threads, "ops": ops}
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
