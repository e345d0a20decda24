"""Play speed: the headless game loop at the shipped world's size, and what the KV cache buys.

    python benchmarks/bench_play.py [--frames 300] [--threads 2] [--dtype float32] [--record] [--json OUT]

Measured in one run on this machine, with a random-weight checkpoint (generator `world-m`, VAE `world-s`:
128x96 frames, 48 tokens per frame):
  1. the real headless play loop (`GameLoop`: events -> step -> draw + HUD at 4x -> flip), scripted input:
     fps and input-to-photon latency p50/p95 against the targets (>= 30 fps, p95 < 50 ms), per-stage times,
     and CPU time per frame (on a shared machine wall time includes waiting for the cores);
  2. cached step vs full recompute: `generator.step` against the sliding KV cache, versus `generator(...)`
     (the block-causal full-sequence forward) over the last `window` frames for every frame;
  3. the session step at 1 and 2 torch threads, and at float32 and bfloat16;
  4. where the time goes: per module (forward hooks) and per torch op (profiler).
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
WALK = ControllerState(keys=frozenset({"w"}))
WARM_STEPS = 20  # past the ring-filling frames, so the cache is in its steady state


# ---- 1. the play loop --------------------------------------------------------------------------------------


def play_loop(checkpoint_dir: Path, frames: int, warmup: int, record: Path | None,
              dtype: torch.dtype) -> dict:
    """The real loop, headless and unthrottled; percentiles over the frames after the warm-up."""
    session = WorldSession(load_checkpoint(checkpoint_dir), dtype=dtype)
    header = ActionLogHeader(scheme=session.scheme.name, encoding=session.scheme.encoding_dict(), seed=0,
                             steps=session.steps, checkpoint="bench")
    loop = GameLoop(session, open_source("scripted"), load_profile("desktop"), header, fps=None,
                    max_frames=warmup + frames, record_path=record, overwrite=True)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    loop.run()
    cpu_ms = (time.process_time() - cpu_start) / loop.frames * 1e3  # warm-up included, like wall_ms
    wall_ms = (time.perf_counter() - wall_start) / loop.frames * 1e3
    rows = loop.times.ms[warmup:loop.times.count]
    flips = loop.times.flip_s[warmup:loop.times.count]
    p50, p95 = np.percentile(rows, [50, 95], axis=0)
    return {
        "frames": len(rows),
        "fps": (len(rows) - 1) / (flips[-1] - flips[0]),
        "latency_ms": {"p50": p50[LATENCY], "p95": p95[LATENCY], "max": rows[:, LATENCY].max()},
        "stage_ms": {name: p50[i] for i, name in enumerate(STAGES)},
        "stage_ms_p95": {name: p95[i] for i, name in enumerate(STAGES)},
        "cpu_ms_per_frame": cpu_ms,
        "wall_ms_per_frame": wall_ms,
    }


# ---- 2. cache vs recompute ---------------------------------------------------------------------------------


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
    condition = session.scheme.encode(WALK, session.grid)
    frame_cond = torch.from_numpy(condition.frame)[None]  # (1, frame_dim)
    token_cond = torch.from_numpy(condition.tokens)[None]  # (1, token_channels, h, w)
    session.reset()
    latent = session.latent
    for _ in range(c.window + c.sink):  # fill the ring: the steady state a long game runs in
        latent = step_frame(g, session.cache, latent, frame_cond, token_cond, torch.randn_like(latent))
    noise = torch.randn_like(latent)

    def cached():
        step_frame(g, session.cache, latent, frame_cond, token_cond, noise)

    window = c.window
    seq = lambda x: x[:, None].expand(1, window, *x.shape[1:]).contiguous()  # noqa: E731 - (1, window, ...)
    inputs = (seq(noise), seq(latent), seq(token_cond), seq(frame_cond), torch.ones(1, window),
              torch.zeros(1, window))

    def recompute():
        g(*inputs)[:, -1]  # every frame: all `window` frames through the network, keep the newest

    cached_ms = median_ms(cached, frames)
    recompute_ms = median_ms(recompute, max(5, frames // 5))
    return {"window": window, "tokens_per_frame": c.tokens, "cached_ms": cached_ms,
            "recompute_ms": recompute_ms, "cached_fps": 1e3 / cached_ms, "recompute_fps": 1e3 / recompute_ms,
            "ratio": recompute_ms / cached_ms}


# ---- 3. threads and precision ------------------------------------------------------------------------------


@torch.inference_mode()
def step_ms(session: WorldSession, frames: int) -> dict:
    """Median generate and decode time of a session step (the session's own stage timings)."""
    condition = session.scheme.encode(WALK, session.grid)
    session.reset()
    for _ in range(WARM_STEPS):
        session.step(condition)
    generate, decode = [], []
    for _ in range(frames):
        session.step(condition)
        generate.append(session.timings_ms["generate"])
        decode.append(session.timings_ms["decode"])
    return {"generate_ms": statistics.median(generate), "decode_ms": statistics.median(decode)}


def dtype_sweep(checkpoint_dir: Path, frames: int) -> dict:
    """float32 vs bfloat16 (bf16 matmuls and convs use AMX / AVX-512 BF16 where the CPU has them)."""
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        session = WorldSession(load_checkpoint(checkpoint_dir), dtype=dtype)
        results[str(dtype).removeprefix("torch.")] = step_ms(session, frames)
    return results


# ---- 4. where the time goes --------------------------------------------------------------------------------


@torch.inference_mode()
def module_times(session: WorldSession, frames: int) -> dict:
    """ms per frame in each part of the generator step and the decoder, timed with forward hooks."""
    totals: dict[str, float] = {}
    handles = []

    def timed(module: torch.nn.Module, name: str) -> None:
        def before(mod, args):
            mod._bench_start = time.perf_counter()

        def after(mod, args, out):
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - mod._bench_start

        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))

    for block in session.generator.blocks:
        timed(block, "blocks")
        timed(block.attn, "attention")
        timed(block.attn.qkv, "attention qkv projection")
        timed(block.attn.proj, "attention output projection")
        timed(block.mlp, "mlp")
        timed(block.modulation, "adaLN modulation")
    timed(session.vae.decoder, "vae decoder")
    condition = session.scheme.encode(WALK, session.grid)
    session.reset()
    for _ in range(WARM_STEPS):
        session.step(condition)
    totals.clear()
    generate = 0.0
    for _ in range(frames):
        session.step(condition)
        generate += session.timings_ms["generate"] / 1e3
    for handle in handles:
        handle.remove()
    ms = {name: total / frames * 1e3 for name, total in totals.items()}
    attention_rest = ms["attention"] - ms["attention qkv projection"] - ms["attention output projection"]
    return {
        "generator step": generate / frames * 1e3,
        "  adaLN modulation (8 x 384->2304 GEMV)": ms["adaLN modulation"],
        "  attention q/k/v + output projections": ms["attention qkv projection"]
        + ms["attention output projection"],
        "  attention rotary + cache writes + SDPA": attention_rest,
        "  mlp": ms["mlp"],
        "  outside blocks (embed, patches, head)": generate / frames * 1e3 - ms["blocks"],
        "  blocks: norms, gates, residuals": ms["blocks"] - ms["attention"] - ms["mlp"]
        - ms["adaLN modulation"],
        "vae decode": ms["vae decoder"],
    }


@torch.inference_mode()
def profile_ops(session: WorldSession, frames: int, top: int) -> list[dict]:
    """Self CPU time by torch op over `frames` session steps (generator + decode)."""
    from torch.profiler import ProfilerActivity, profile

    condition = session.scheme.encode(WALK, session.grid)
    session.reset()
    for _ in range(WARM_STEPS):
        session.step(condition)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(frames):
            session.step(condition)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "calls_per_frame": e.count / frames,
             "ms_per_frame": e.self_cpu_time_total / 1e3 / frames, "share": e.self_cpu_time_total / total}
            for e in events[:top]]


# ---- report ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="play loop precision")
    parser.add_argument("--generator", default="world-m")
    parser.add_argument("--vae", default="world-s")
    parser.add_argument("--record", action="store_true",
                        help="also write the MP4 + action log in the play loop")
    parser.add_argument("--loop-only", action="store_true", help="measure the play loop only (part 1)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(Path(tmp) / "world", generator=args.generator, vae=args.vae)
        session = WorldSession(load_checkpoint(ckpt))
        g = session.generator.config
        params = sum(p.numel() for p in session.generator.parameters()) / 1e6
        print(f"worldsim play benchmark: generator {args.generator} (dim {g.dim}, depth {g.depth}, "
              f"{params:.1f}M params, {g.tokens} tokens/frame, window {g.window}), VAE {args.vae} "
              f"{session.image_size[1]}x{session.image_size[0]}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} at start")

        # 1. the real loop
        record = Path(tmp) / "bench.mp4" if args.record else None
        loop = play_loop(ckpt, args.frames, args.warmup, record, getattr(torch, args.dtype))
        fps_ok = loop["fps"] >= TARGET_FPS
        latency_ok = loop["latency_ms"]["p95"] < TARGET_P95_MS
        lat = loop["latency_ms"]
        print(f"\n1. headless play loop, {loop['frames']} frames after {args.warmup} warm-up ({args.dtype}, "
              f"HUD on, window x4{', recording' if args.record else ''})")
        print(f"  {'fps':<30}{loop['fps']:8.1f}           target >= {TARGET_FPS:.0f}   "
              f"{'PASS' if fps_ok else 'FAIL'}")
        print(f"  {'latency p50 / p95 ms':<30}{lat['p50']:8.1f} / {lat['p95']:<6.1f}  target p95 < "
              f"{TARGET_P95_MS:.0f}   {'PASS' if latency_ok else 'FAIL'}   (max {lat['max']:.1f})")
        print(f"  {'CPU / wall ms per frame':<30}{loop['cpu_ms_per_frame']:8.1f} / "
              f"{loop['wall_ms_per_frame']:.1f}   (CPU time ~ the cost on idle cores, at 1 thread)")
        print(f"  {'stage':<14}{'p50 ms':>8}{'p95 ms':>10}")
        for name in STAGES:
            print(f"  {name:<14}{loop['stage_ms'][name]:8.2f}{loop['stage_ms_p95'][name]:10.2f}")

        if args.loop_only:
            if args.json is not None:
                args.json.write_text(json.dumps({"play_loop": loop}, indent=2, default=float) + "\n")
            return

        # 2. cached step vs full recompute
        cache = cache_vs_recompute(session, frames=60)
        print(f"\n2. KV cache vs full recompute (generator only, steady state, window {cache['window']} x "
              f"{cache['tokens_per_frame']} tokens)")
        print(f"  cached step      {cache['cached_ms']:8.1f} ms  {cache['cached_fps']:7.1f} frames/s")
        print(f"  full recompute   {cache['recompute_ms']:8.1f} ms  {cache['recompute_fps']:7.1f} frames/s")
        print(f"  ratio            {cache['ratio']:8.1f}x frames/s with the cache")

        # 3. threads and precision
        threads = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            threads[n] = step_ms(session, frames=40)
        torch.set_num_threads(args.threads)
        dtypes = dtype_sweep(ckpt, frames=40)
        print("\n3. session step, median ms")
        for n, t in threads.items():
            print(f"  {'float32, ' + str(n) + ' thread(s)':<28}generate {t['generate_ms']:6.1f}   "
                  f"decode {t['decode_ms']:6.1f}")
        for name, t in dtypes.items():
            print(f"  {name + ', ' + str(args.threads) + ' thread(s)':<28}generate {t['generate_ms']:6.1f}   "
                  f"decode {t['decode_ms']:6.1f}")

        # 4. where the time goes
        modules = module_times(WorldSession(load_checkpoint(ckpt)), frames=40)
        print(f"\n4. where the time goes (float32, {args.threads} thread(s), ms per frame)")
        for name, ms in modules.items():
            print(f"  {name:<44}{ms:7.2f}")
        ops = profile_ops(session, frames=30, top=12)
        print("  by torch op (profiler, self CPU, generator step + VAE decode):")
        for op in ops:
            print(f"    {op['op'][:44]:<46}{op['ms_per_frame']:7.2f} ms {100 * op['share']:5.1f}%  "
                  f"{op['calls_per_frame']:6.1f} calls")

    if args.json is not None:
        report = {"generator": args.generator, "vae": args.vae, "threads": args.threads, "dtype": args.dtype,
                  "torch": torch.__version__, "load_average": os.getloadavg()[0], "play_loop": loop,
                  "targets": {"fps": TARGET_FPS, "latency_p95_ms": TARGET_P95_MS, "fps_ok": fps_ok,
                              "latency_ok": latency_ok},
                  "cache_vs_recompute": cache, "threads_step_ms": threads, "dtype_step_ms": dtypes,
                  "module_ms": modules, "ops": ops}
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
