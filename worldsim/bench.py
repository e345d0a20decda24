"""`worldsim bench`: per-frame speed of a world, every ratio measured side by side in one process.

    worldsim bench --checkpoint DIR --frames 1440 --json OUT [--backend eager,compile/bfloat16,onnx+int8]
                   [--threads 1,2]
    worldsim bench --preset paper-scale --device cuda --json OUT     random weights, bf16, no checkpoint needed

One run reports, on this machine, with its load average beside every figure:
  1. each backend in the real headless game loop (GameLoop: events -> step -> draw + HUD -> flip, scripted input):
     frames/s, input-to-photon latency p50/p95, per-stage ms p50/p95, CPU ms per frame, memory (RSS; GPU on CUDA),
     and its frames/s against torch eager float32 (always measured, as the baseline);
  2. the KV cache against recomputing the whole window every frame (generator only);
  3. 1 network evaluation per frame against the multi-step teacher (8 and 32 sampler steps);
  4. FLOPs per frame (counted from the config, cross-checked with torch's FlopCounterMode) and the achieved FLOP/s
     as a fraction of the matrix-multiply peak measured in the same run (float32 and bfloat16);
  5. the fastest backend at each thread count (`--threads`): a second thread helps only on idle cores;
  6. the quality cost of reduced precision: PSNR of each backend's frames against eager float32 over a
     240-frame rollout of the same inputs, open loop and teacher-forced on the float32 latents;
  7. (`--profile`) where the time goes: per module and per torch op.
Backends are NAME[+int8][/DTYPE]: eager, compile, onnx, onnx+int8; /float32, /bfloat16, /float16.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from worldsim.errors import WorldsimError

# The targets this benchmark reports against (shipped world on a 2-core CPU, headless, median of 1,440 frames).
TARGETS = {"fps": 40.0, "latency_p95_ms": 40.0, "cache_speedup": 3.0, "peak_fraction": 0.30}
# AAPT's Table 4, one H100, 736x416, 8B parameters, 1 NFE. Its VAE compresses time 4x, so 24.8 video frames/s is
# 6.2 generator steps/s; worldsim's presets generate one latent frame per video frame (no temporal compression), so
# a paper-scale step rate compares with `latent_steps_per_s`, its frame rate with `fps`.
PAPER = {"fps": 24.8, "latent_steps_per_s": 24.8 / 4, "latency_s": 0.16, "hardware": "1x H100",
         "resolution": "736x416", "params": "8B", "temporal_compression": 4}
TEACHER_STEPS = (8, 32)
QUALITY_FRAMES = 240
REPEATS_RECOMPUTE = 6
PEAK_SECONDS = 0.6  # per dtype: enough matmuls for a stable best-of
DEFAULT_CPU_BACKENDS = ("eager/float32", "eager/bfloat16", "compile/bfloat16", "onnx/float32", "onnx+int8/float32")
DEFAULT_CUDA_BACKENDS = ("eager/bfloat16", "compile/bfloat16", "onnx/float16")
DEFAULT_BIG_BACKENDS = ("eager/bfloat16", "compile/bfloat16")  # an 8B ONNX export is minutes and 16 GB: ask for it
BASELINE = "eager/float32"
DTYPES = ("float32", "bfloat16", "float16")


# ---- arguments ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    world = parser.add_mutually_exclusive_group(required=True)
    world.add_argument("--checkpoint", type=Path, metavar="DIR", help="checkpoint directory to measure")
    world.add_argument("--preset", metavar="NAME",
                       help="random weights of a generator preset (world-s, world-m, world-l, paper-scale), "
                            "built in memory: no checkpoint needed")
    parser.add_argument("--vae-preset", metavar="NAME", default=None,
                        help="VAE preset for --preset (default: the same name if it exists, else world-s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="let --preset paper-scale run on a CPU (~45 GB of memory in bf16, seconds per frame)")
    parser.add_argument("--frames", type=int, default=240, metavar="N",
                        help="measured frames per backend in the game loop (1440 for the figures in BENCHMARKS.md)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="frames before measuring (default: window + sink + 8, past the ring filling)")
    parser.add_argument("--backend", default=None, metavar="SPECS",
                        help="comma-separated NAME[+int8][/DTYPE] (default on CPU: " + ",".join(DEFAULT_CPU_BACKENDS)
                        + "; eager/float32 is always measured as the baseline)")
    parser.add_argument("--threads", default="1,2", metavar="N[,N...]",
                        help="torch/onnxruntime threads: the first for everything, the rest for the thread sweep "
                             "of the fastest backend (default 1,2)")
    parser.add_argument("--quality-frames", type=int, default=QUALITY_FRAMES, metavar="N",
                        help=f"rollout length for the precision PSNR (default {QUALITY_FRAMES}; 0 skips it)")
    parser.add_argument("--skip", default="", metavar="SECTIONS",
                        help="comma-separated sections to leave out: recompute, teacher, flops, threads, quality")
    parser.add_argument("--profile", action="store_true", help="also break the eager step down by module and op")
    parser.add_argument("--record", action="store_true", help="record MP4 + action log in the loop (its cost)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the report as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


SECTIONS = ("recompute", "teacher", "flops", "threads", "quality")
THREAD_SWEEP_FRAMES = 240  # at most: an oversubscribed thread count can run at 1 frame/s


def parse_spec(spec: str, device_type: str) -> tuple[str, str]:
    """'onnx+int8/float32' -> ('onnx+int8', 'float32'); the dtype defaults by device and backend."""
    from worldsim.backends import parse_backend

    name, _, dtype = spec.strip().partition("/")
    parse_backend(name)  # validates the name and quantisation
    if not dtype:
        dtype = "float32" if device_type == "cpu" else ("float16" if name.startswith("onnx") else "bfloat16")
    if dtype not in DTYPES:
        raise WorldsimError(f"--backend {spec!r}: unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return name, dtype


# ---- the world: a checkpoint, or random weights of a preset -------------------------------------------------


class World:
    """Hands out a fresh Checkpoint per backend (backends move and cast its modules in place)."""

    def __init__(self, args: argparse.Namespace, device):
        import torch

        self.path: Path | None = args.checkpoint
        self.preset = args.preset
        self._shared = None
        if self.path is not None:
            from worldsim.checkpoint import load_checkpoint

            self.config = load_checkpoint(self.path).config
            return
        from worldsim.models.generator import GENERATOR_PRESETS
        from worldsim.models.vae import VAE_PRESETS

        if args.preset not in GENERATOR_PRESETS:
            raise WorldsimError(f"--preset {args.preset!r}: unknown; allowed: {', '.join(GENERATOR_PRESETS)}")
        vae = args.vae_preset or (args.preset if args.preset in VAE_PRESETS else "world-s")
        if vae not in VAE_PRESETS:
            raise WorldsimError(f"--vae-preset {vae!r}: unknown; allowed: {', '.join(VAE_PRESETS)}")
        from worldsim.testing import random_config

        self.config = random_config(args.preset, vae)
        self.vae_preset = vae
        # Big presets are built once, directly on the device in bf16 (an 11B model has no business in float32).
        self.device, self.big = device, device.type == "cuda" or args.preset == "paper-scale"
        self.dtype = torch.bfloat16 if self.big else torch.float32

    def checkpoint(self):
        if self.path is not None:
            from worldsim.checkpoint import load_checkpoint

            return load_checkpoint(self.path)
        if self.big and self._shared is not None:
            return self._shared
        checkpoint = build_random_world(self.config, self.device if self.big else "cpu", self.dtype)
        if self.big:
            self._shared = checkpoint
        return checkpoint

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"preset {self.preset} (random weights)"

    def does_not_fit(self, dtype: str) -> str | None:
        """Why a big preset's weights and cache in `dtype` would not fit the GPU (None: they fit, or not big)."""
        if self.preset is None or not self.big or self.device.type != "cuda":
            return None
        import torch

        g = self.config.generator
        size = {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
        params = sum(p.numel() for p in self.checkpoint().generator.parameters())
        cache = 2 * g.depth * (g.window + 2 * g.sink) * g.tokens * g.dim  # k, v and the sink keys
        need = (params + cache) * size
        have = torch.cuda.get_device_properties(self.device).total_memory
        if need > 0.9 * have:
            return (f"{dtype} weights + KV cache need {need / 2 ** 30:.0f} GiB, the GPU has {have / 2 ** 30:.0f} GiB "
                    "(not attempted)")
        return None


def build_random_world(config, device, dtype):
    """A Checkpoint with random weights built on `device` (no file): throughput only, never a world to play."""
    import numpy as np
    import torch

    from worldsim.checkpoint import Checkpoint, build_models

    torch.manual_seed(0)
    with torch.device(device):
        generator, vae = build_models(config)
    generator, vae = generator.to(dtype).eval(), vae.to(dtype).eval()
    h, w = config.vae.image_size
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8))
    return Checkpoint(config, generator, vae, frames, None)


# ---- machine ---------------------------------------------------------------------------------------------------


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine_info(device) -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "git_commit": _git_commit(),
            "load_average_start": load_average()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)
    return info


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
        return out.stdout.strip() + ("+local changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rss_mib() -> float:
    """Resident memory of this process now (MiB)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)
    except (OSError, ValueError):
        return 0.0


def peak_rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def matmul_peak(device, dtypes: tuple[str, ...]) -> dict:
    """Best sustained GFLOP/s of a square matrix multiply per dtype, at the current thread count."""
    import torch

    n = 8192 if device.type == "cuda" else 1024
    peaks = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        best, deadline = 0.0, time.perf_counter() + PEAK_SECONDS
        torch.mm(a, b, out=out)
        while time.perf_counter() < deadline:
            _sync(device)
            start = time.perf_counter()
            for _ in range(3):
                torch.mm(a, b, out=out)
            _sync(device)
            best = max(best, 3 * 2 * n ** 3 / (time.perf_counter() - start))
        peaks[name] = round(best / 1e9, 1)
    return {"gflops": peaks, "size": n, "load_average": load_average()}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- 1. the play loop -----------------------------------------------------------------------------------------


def play_loop(session, frames: int, warmup: int, record: Path | None = None) -> dict:
    """The real game loop, headless and unthrottled, scripted input; statistics over the frames after `warmup`."""
    import numpy as np

    from worldsim.input.replay import ActionLogHeader
    from worldsim.input.sources import open_source
    from worldsim.runtime.loop import GameLoop
    from worldsim.runtime.profile import load_profile
    from worldsim.runtime.timing import LATENCY, STAGES

    header = ActionLogHeader(scheme=session.scheme.name, encoding=session.scheme.encoding_dict(), seed=session.seed,
                             steps=session.steps, checkpoint="bench")
    loop = GameLoop(session, open_source("scripted"), load_profile("desktop"), header, fps=None,
                    max_frames=warmup + frames, record_path=record, overwrite=True)
    load_start = load_average()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    loop.run()
    cpu_ms = (time.process_time() - cpu_start) / loop.frames * 1e3  # warm-up included, like wall_ms
    wall_ms = (time.perf_counter() - wall_start) / loop.frames * 1e3
    rows = loop.times.ms[warmup:loop.times.count]
    flips = loop.times.flip_s[warmup:loop.times.count]
    p50, p95 = np.percentile(rows, [50, 95], axis=0)
    r = lambda x: round(float(x), 3)  # noqa: E731
    return {
        "frames": len(rows),
        "fps": r((len(rows) - 1) / (flips[-1] - flips[0])) if len(rows) > 1 else 0.0,
        "latency_ms": {"p50": r(p50[LATENCY]), "p95": r(p95[LATENCY]), "max": r(rows[:, LATENCY].max())},
        "stage_ms": {name: r(p50[i]) for i, name in enumerate(STAGES)},
        "stage_ms_p95": {name: r(p95[i]) for i, name in enumerate(STAGES)},
        "cpu_ms_per_frame": r(cpu_ms),
        "wall_ms_per_frame": r(wall_ms),
        "load_average": {"start": load_start, "end": load_average()},
    }


def make_session(world: World, name: str, dtype: str, device, steps: int | None = None):
    import torch

    from worldsim.runtime.session import WorldSession

    return WorldSession(world.checkpoint(), device=str(device), dtype=getattr(torch, dtype), steps=steps,
                        backend=name)


def measure_backend(world: World, spec: tuple[str, str], device, frames: int, warmup: int,
                    record: Path | None) -> dict:
    """Build the backend, run the loop, note memory; a backend that cannot run here is reported as skipped."""
    import torch

    from worldsim.backends import BackendUnavailable

    name, dtype = spec
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = rss_mib()
    start = time.perf_counter()
    try:
        session = make_session(world, name, dtype, device)
    except BackendUnavailable as err:
        return {"skipped": str(err)}
    except torch.cuda.OutOfMemoryError:
        return {"skipped": f"out of GPU memory building {name}/{dtype}"}
    build_s = time.perf_counter() - start
    try:
        result = play_loop(session, frames, warmup, record)
    except torch.cuda.OutOfMemoryError:
        return {"skipped": f"out of GPU memory running {name}/{dtype}"}
    finally:
        session.backend.close()
    result.update(session.backend.describe())
    result["build_s"] = round(build_s, 2)
    result["memory"] = {"rss_mib": rss_mib(), "rss_added_mib": round(rss_mib() - rss_before, 1),
                        "cache_mib": round(session.cache.nbytes() / 2 ** 20, 2)}
    if device.type == "cuda":
        result["memory"]["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    del session
    return result


# ---- 2. cache vs recompute --------------------------------------------------------------------------------------


def median_ms(fn, repeats: int, device) -> float:
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def cache_vs_recompute(session, repeats: int) -> dict:
    """Generator-only ms per frame: the cached step against the full block-causal forward over the last window."""
    import torch

    from worldsim.input.state import ControllerState
    from worldsim.rollout import step_frame

    g, device = session.generator, session.device
    c = g.config
    with torch.inference_mode():
        condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
        frame_cond = torch.from_numpy(condition.frame)[None].to(device, session.dtype)  # (1, frame_dim)
        token_cond = torch.from_numpy(condition.tokens)[None].to(device, session.dtype)  # (1, channels, h, w)
        session.reset()
        latent = session.latent
        for _ in range(c.window + c.sink):  # fill the ring: the steady state a long game runs in
            latent = step_frame(session.backend, session.cache, latent, frame_cond, token_cond,
                                torch.randn_like(latent), vae=session.turn_vae)
        noise = torch.randn_like(latent)
        window = c.window
        seq = lambda x: x[:, None].expand(1, window, *x.shape[1:]).contiguous()  # noqa: E731 - (1, window, ...)
        inputs = (seq(noise), seq(latent), seq(token_cond), seq(frame_cond), torch.ones(1, window, device=device),
                  torch.zeros(1, window, device=device))
        cached = median_ms(lambda: step_frame(session.backend, session.cache, latent, frame_cond, token_cond, noise,
                                              vae=session.turn_vae), repeats * 5, device)
        recompute = median_ms(lambda: g(*inputs)[:, -1], repeats, device)  # all `window` frames, keep the newest
    return {"backend": session.backend.name, "dtype": str(session.dtype).removeprefix("torch."), "window": window,
            "tokens_per_frame": c.tokens, "cached_ms": round(cached, 3), "recompute_ms": round(recompute, 3),
            "speedup": round(recompute / cached, 2), "load_average": load_average()}


# ---- 3. 1 NFE vs the multi-step teacher ---------------------------------------------------------------------


def generate_ms(session, frames: int, warm: int = 3) -> float:
    """Median generate-stage ms of session steps (the session's own stage timing)."""
    from worldsim.input.state import ControllerState

    condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
    session.reset()
    for _ in range(warm):
        session.step(condition)
    samples = []
    for _ in range(frames):
        session.step(condition)
        samples.append(session.timings_ms["generate"])
    return statistics.median(samples)


def teacher_steps(world: World, spec: tuple[str, str], device) -> dict:
    name, dtype = spec
    result = {"backend": f"{name}/{dtype}"}
    base = None
    for steps in (1, *TEACHER_STEPS):
        session = make_session(world, name, dtype, device, steps=steps)
        ms = generate_ms(session, frames=max(6, 48 // steps))
        session.backend.close()
        base = base or ms
        result[f"{steps}_steps_ms"] = round(ms, 3)
        if steps > 1:
            result[f"speedup_vs_{steps}_steps"] = round(ms / base, 2)
    result["load_average"] = load_average()
    return result


# ---- 4. FLOPs and utilisation -----------------------------------------------------------------------------------


def frame_flops(config) -> dict:
    """FLOPs of one steady-state frame from the config (a multiply-add counts 2): the generator's matmuls and
    attention against the full cache, and the decoder's convolutions. Element-wise work is not counted."""
    g, v = config.generator, config.vae
    T, D, L = g.tokens, g.dim, g.depth
    keys = (g.window + g.sink + (1 if g.memory_channels else 0)) * T  # + an attended keyframe view's tokens
    hidden = int(D * g.mlp_ratio)
    in_features = 2 * g.latent_channels * g.patch ** 2 + g.token_cond_channels - g.memory_channels
    embed = 2 * (128 * D + D * D) * 2 + (2 * (g.frame_cond_dim * D + D * D) if g.frame_cond_dim else 0)
    parts = {
        "generator_projections": L * (2 * T * D * 3 * D + 2 * T * D * D),
        "generator_mlp": L * 2 * 2 * T * D * hidden,
        "generator_adaln": L * 2 * D * 6 * D + 2 * D * 2 * D,
        "generator_attention": L * 2 * 2 * T * keys * D,
        "generator_embed_head": 2 * T * in_features * D + embed + 2 * T * D * g.latent_channels * g.patch ** 2,
        # the view's embedding (two layers) and its keys and values in every layer
        "generator_memory": (2 * T * (g.memory_channels * D + D * D) + L * 2 * T * D * 2 * D) if g.memory_channels
        else 0,
        "decoder_convs": decoder_flops(v),
    }
    parts["generator"] = sum(v for k, v in parts.items() if k.startswith("generator_"))
    parts["total"] = parts["generator"] + parts["decoder_convs"]
    return parts


def decoder_flops(v) -> int:
    """Convolutions of the decoder (mirrors worldsim.models.vae.Decoder)."""
    widths = list(reversed(v.channels))
    h, w = v.latent_size
    flops = 2 * h * w * widths[0] * v.latent_channels * 9
    width = widths[0]
    for out in widths[1:] + [widths[-1]]:
        flops += v.blocks * 2 * (2 * h * w * width * width * 9)  # residual blocks: two 3x3 convs
        h, w = 2 * h, 2 * w
        flops += 2 * h * w * out * width * 9  # after the 2x upsample
        width = out
    return flops + 2 * h * w * 3 * width * 9


def counted_flops(world: World, device) -> int:
    """torch's FlopCounterMode over one steady-state step + decode of eager float32 (the analytic count's check)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dtype = "bfloat16" if world.preset and world.big else "float32"
    session = make_session(world, "eager", dtype, device)
    c = session.generator.config
    with torch.inference_mode():
        session.reset()
        session.cache.position = c.window + c.sink  # steady state: attend to the full cache
        condition = _walk(session)
        counter = FlopCounterMode(display=False)
        with counter:
            session.step(condition)
    session.backend.close()
    return int(counter.get_total_flops())


def _walk(session):
    from worldsim.input.state import ControllerState

    return session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)


def utilization(flops: dict, runs: dict, peaks: dict) -> dict:
    """Achieved FLOP/s per backend, end to end (loop frames/s) and over generate + decode time alone, against the
    matmul peak of its dtype (onnx float32 and int8 against the float32 peak)."""
    out = {}
    for label, run in runs.items():
        if "fps" not in run:
            continue
        dtype = label.split("/")[1]
        peak = peaks["gflops"].get(dtype) or peaks["gflops"].get("float32")
        compute_ms = run["stage_ms"]["generate"] + run["stage_ms"]["decode"]
        loop_gflops = flops["total"] * run["fps"] / 1e9
        compute_gflops = flops["total"] / (compute_ms / 1e3) / 1e9 if compute_ms else 0.0
        out[label] = {"gflops_end_to_end": round(loop_gflops, 1), "gflops_compute": round(compute_gflops, 1),
                      "peak_gflops": peak, "peak_dtype": dtype if dtype in peaks["gflops"] else "float32",
                      "fraction_end_to_end": round(loop_gflops / peak, 3),
                      "fraction_compute": round(compute_gflops / peak, 3)}
    return out


# ---- 5. threads -------------------------------------------------------------------------------------------------


def thread_sweep(world: World, spec: tuple[str, str], device, threads: list[int], frames: int, warmup: int,
                 first: dict) -> dict:
    """The loop at each thread count (`first`: the run already made at threads[0])."""
    import torch

    result = {"backend": f"{spec[0]}/{spec[1]}", "frames": frames}
    for n in threads:
        torch.set_num_threads(n)
        run = first if n == threads[0] else measure_backend(world, spec, device, frames, warmup, None)
        result[str(n)] = {key: run[key] for key in ("fps", "latency_ms", "cpu_ms_per_frame", "load_average", "skipped")
                          if key in run}
    torch.set_num_threads(threads[0])
    return result


# ---- 6. quality of reduced precision ----------------------------------------------------------------------------


def rollout(session, states, teacher=None):
    """uint8 frames (and latents) of `states` from the start frame; `teacher[i]` (when given and not None) is
    recycled at step i instead of the session's own previous latent."""
    import numpy as np

    frames, latents = [], []
    session.reset()
    for i, state in enumerate(states):
        if teacher is not None and teacher[i] is not None:
            session.latent = teacher[i].clone()
        frames.append(session.step(session.scheme.encode(state, session.grid)))
        latents.append(session.latent.clone())
    return np.stack(frames), latents


def quality(world: World, specs: list[tuple[str, str]], device, frames: int) -> dict:
    """PSNR of each backend's frames against eager float32, same seed and inputs: open loop (errors compound
    along the rollout) and teacher-forced (every step recycles the float32 latent: one step's error)."""
    import numpy as np

    from worldsim.backends.export import psnr
    from worldsim.input.sources import open_source

    source = open_source("scripted")
    states = [source.poll([], []) for _ in range(frames)]
    source.close()
    reference = make_session(world, "eager", "float32", device)
    ref_frames, ref_latents = rollout(reference, states)
    ref_latents = [latent.float().cpu() for latent in ref_latents]
    reference.backend.close()
    out = {"frames": frames, "reference": BASELINE}
    for name, dtype in specs:
        label = f"{name}/{dtype}"
        if label == BASELINE:
            continue
        try:
            session = make_session(world, name, dtype, device)
        except WorldsimError as err:
            out[label] = {"skipped": str(err)}
            continue
        open_frames, _ = rollout(session, states)
        teacher = [None] + [latent.to(session.device, session.dtype) for latent in ref_latents[:-1]]
        forced, _ = rollout(session, states, teacher)
        session.backend.close()
        open_psnr = [psnr(a, b) for a, b in zip(open_frames, ref_frames)]
        forced_psnr = [psnr(a, b) for a, b in zip(forced, ref_frames)]
        out[label] = {  # identical frames have infinite PSNR: left out of the means, counted, shown as null
            "psnr_open_loop_mean_db": _finite_mean(open_psnr),
            "psnr_open_loop_db": {str(i + 1): _db(open_psnr[i]) for i in (0, 23, frames - 1) if i < frames},
            "psnr_teacher_forced_mean_db": _finite_mean(forced_psnr),
            "identical_frames": int(sum(1 for p in open_psnr if not np.isfinite(p))),
        }
    out["load_average"] = load_average()
    return out


def _db(value: float) -> float | None:
    import math

    return round(float(value), 2) if math.isfinite(value) else None


def _finite_mean(values: list[float]) -> float | None:
    import math

    finite = [v for v in values if math.isfinite(v)]
    return round(sum(finite) / len(finite), 2) if finite else None


# ---- 7. where the time goes ------------------------------------------------------------------------------------


def module_times(session, frames: int) -> dict:
    """ms per frame in each part of the generator step and the decoder (eager backends), with forward hooks."""
    import torch

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
        timed(block.attn.qkv, "qkv")
        timed(block.attn.proj, "proj")
        timed(block.mlp, "mlp")
        timed(block.modulation, "adaln")
    timed(session.vae.decoder, "decoder")
    condition = _walk(session)
    session.reset()
    for _ in range(20):  # past the ring filling
        session.step(condition)
    totals.clear()
    generate = 0.0
    for _ in range(frames):
        session.step(condition)
        generate += session.timings_ms["generate"] / frames
    for handle in handles:
        handle.remove()
    ms = {name: total / frames * 1e3 for name, total in totals.items()}
    return {
        "generator step": round(generate, 3),
        "  adaLN modulation": round(ms["adaln"], 3),
        "  q/k/v + output projections": round(ms["qkv"] + ms["proj"], 3),
        "  rotary, cache writes, attention": round(ms["attention"] - ms["qkv"] - ms["proj"], 3),
        "  mlp": round(ms["mlp"], 3),
        "  norms, gates, residuals": round(ms["blocks"] - ms["attention"] - ms["mlp"] - ms["adaln"], 3),
        "  outside the blocks (plan, embed, head)": round(generate - ms["blocks"], 3),
        "decoder": round(ms["decoder"], 3),
    }


def profile_ops(session, frames: int, top: int = 12) -> list[dict]:
    """Self CPU time by torch op over `frames` session steps (generator + decode)."""
    from torch.profiler import ProfilerActivity, profile

    condition = _walk(session)
    session.reset()
    for _ in range(20):
        session.step(condition)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(frames):
            session.step(condition)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls_per_frame": round(e.count / frames, 1),
             "ms_per_frame": round(e.self_cpu_time_total / 1e3 / frames, 3),
             "share": round(e.self_cpu_time_total / total, 3)} for e in events[:top]]


# ---- the run ----------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.json is not None:  # checked before minutes of measuring, not after
        from worldsim.runtime.recorder import refuse_existing

        refuse_existing([args.json], args.overwrite)
    report = benchmark(args)
    print_report(report)
    if args.json is not None:
        from worldsim.runtime.recorder import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"\nworldsim bench: wrote {args.json}")
    return 0


def _check_arguments(args: argparse.Namespace) -> tuple[list[int], set[str]]:
    for name in ("frames", "warmup", "quality_frames"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "frames" else 0):
            raise WorldsimError(f"--{name.replace('_', '-')} must be at least {1 if name == 'frames' else 0}, "
                                f"got {value}")
    try:
        threads = [int(n) for n in str(args.threads).split(",") if n.strip()]
    except ValueError:
        raise WorldsimError(f"--threads {args.threads!r}: expected numbers like 1,2") from None
    if not threads or min(threads) < 1:
        raise WorldsimError(f"--threads {args.threads!r}: thread counts must be at least 1")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        raise WorldsimError(f"--skip {', '.join(sorted(unknown))}: unknown; allowed: {', '.join(SECTIONS)}")
    if args.checkpoint is not None and not args.checkpoint.is_dir():
        raise WorldsimError(f"--checkpoint {args.checkpoint}: no such checkpoint directory")
    return threads, skip


def benchmark(args: argparse.Namespace) -> dict:
    threads, skip = _check_arguments(args)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: the same loop, no window
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import torch

    device = _parse_device(args.device)
    if args.preset == "paper-scale" and device.type == "cpu" and not args.allow_cpu:
        raise WorldsimError("--preset paper-scale is an 8B-parameter model for one H100 (bf16, ~60 GB with its "
                            "cache); pass --device cuda, or --allow-cpu to run it on this CPU anyway")
    torch.set_num_threads(threads[0])
    world = World(args, device)
    g = world.config.generator
    warmup = args.warmup if args.warmup is not None else g.window + g.sink + 8
    defaults = (DEFAULT_CPU_BACKENDS if device.type == "cpu" else
                DEFAULT_BIG_BACKENDS if world.preset and world.big else DEFAULT_CUDA_BACKENDS)
    specs = [parse_spec(s, device.type) for s in (args.backend.split(",") if args.backend else defaults)]
    baseline = parse_spec(BASELINE, device.type)
    if baseline not in specs:
        specs.insert(0, baseline)
    specs = list(dict.fromkeys(specs))

    report: dict = {"machine": machine_info(device), "targets": TARGETS, "paper": PAPER}
    report["world"] = {"source": world.label, "generator": {"dim": g.dim, "depth": g.depth, "heads": g.heads,
                                                            "tokens_per_frame": g.tokens, "window": g.window,
                                                            "sink": g.sink},
                       "image_size": list(world.config.vae.image_size), "device": str(device),
                       "threads": threads[0], "frames": args.frames, "warmup": warmup}
    report["matmul_peak"] = matmul_peak(device, ("float32", "bfloat16") + (("float16",) if device.type == "cuda"
                                                                          else ()))
    # 1. every backend in the game loop
    runs = {}
    for spec in specs:
        label = f"{spec[0]}/{spec[1]}"
        print(f"worldsim bench: {label} ...", flush=True)
        reason = world.does_not_fit(spec[1])
        if reason:
            runs[label] = {"skipped": reason}
            continue
        record = Path(os.environ.get("TMPDIR", "/tmp")) / f"worldsim-bench-{os.getpid()}.mp4" if args.record else None
        runs[label] = measure_backend(world, spec, device, args.frames, warmup, record)
    report["backends"] = runs
    measured = {label: run for label, run in runs.items() if "fps" in run}
    base = runs.get(BASELINE, {})
    report["baseline"] = BASELINE
    report["ratios_vs_baseline"] = {label: round(run["fps"] / base["fps"], 2) for label, run in measured.items()
                                    if base.get("fps")}
    best = max(measured, key=lambda label: measured[label]["fps"]) if measured else None
    report["best"] = best
    best_spec = tuple(best.split("/")) if best else baseline
    # what the teacher and quality sections compare against: float32 eager, unless it could not run here
    reference = baseline if BASELINE in measured else best_spec
    # 2. the KV cache against recomputing the window (eager torch: the full-sequence forward is torch's)
    if "recompute" not in skip:
        report["cache_vs_recompute"] = {}
        for dtype in dict.fromkeys([reference[1], best_spec[1] if best_spec[0] in ("eager", "compile")
                                    else reference[1]]):
            session = make_session(world, "eager", dtype, device)
            report["cache_vs_recompute"][f"eager/{dtype}"] = cache_vs_recompute(session, REPEATS_RECOMPUTE)
            session.backend.close()
    # 3. one evaluation per frame against the multi-step teacher
    if "teacher" not in skip:
        report["teacher_steps"] = {label: teacher_steps(world, spec, device)
                                   for label, spec in {"/".join(reference): reference, best: best_spec}.items()
                                   if label}
    # 4. FLOPs and the fraction of the matmul peak reached
    if "flops" not in skip:
        flops = frame_flops(world.config)
        flops["flop_counter_total"] = counted_flops(world, device)
        report["flops_per_frame"] = flops
        report["utilization"] = utilization(flops, measured, report["matmul_peak"])
    # 5. threads: only the fastest backend, at each count
    if "threads" not in skip and len(threads) > 1 and best:
        report["threads"] = thread_sweep(world, best_spec, device, threads, min(args.frames, THREAD_SWEEP_FRAMES),
                                         warmup, runs[best])
    # 6. what reduced precision costs in frames
    if "quality" not in skip and args.quality_frames and BASELINE in measured:
        report["quality"] = quality(world, [s for s in specs if s != baseline], device, args.quality_frames)
    # 7. where the time goes
    if args.profile:
        session = make_session(world, "eager", best_spec[1] if best_spec[0] != "onnx" else "float32", device)
        report["profile"] = {"modules_ms": module_times(session, 40), "ops": profile_ops(session, 30)}
        session.backend.close()
    report["memory"] = {"peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        report["memory"]["gpu_peak_mib_any_backend"] = max(
            (run["memory"].get("gpu_peak_mib", 0.0) for run in measured.values()), default=0.0)
    report["targets_met"] = _targets_met(report)
    report["machine"]["load_average_end"] = load_average()
    return report


def _parse_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise WorldsimError(f"--device {name!r}: not a torch device; allowed: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorldsimError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise WorldsimError(f"--device {name}: the benchmark runs on cpu or cuda")
    return device


def _targets_met(report: dict) -> dict:
    best = report.get("best")
    if not best:
        return {}
    run = report["backends"][best]
    met = {"fps": run["fps"] >= TARGETS["fps"], "latency_p95_ms": run["latency_ms"]["p95"] <= TARGETS["latency_p95_ms"]}
    cache = report.get("cache_vs_recompute")
    if cache:
        met["cache_speedup"] = all(c["speedup"] >= TARGETS["cache_speedup"] for c in cache.values())
    use = report.get("utilization", {}).get(best)
    if use:
        met["peak_fraction"] = use["fraction_compute"] >= TARGETS["peak_fraction"]
    return met


# ---- printing --------------------------------------------------------------------------------------------------


def print_report(report: dict) -> None:
    m, w = report["machine"], report["world"]
    g = w["generator"]
    print(f"\nworldsim bench: {w['source']}: dim {g['dim']}, depth {g['depth']}, {g['tokens_per_frame']} tokens/frame, "
          f"window {g['window']}; {w['image_size'][1]}x{w['image_size'][0]} frames; {w['device']}, "
          f"{w['threads']} thread(s)")
    print(f"  machine: {m['cpu']} ({m['cpus']} CPUs){', ' + m['gpu'] if 'gpu' in m else ''}; torch {m['torch']}, "
          f"onnxruntime {m['onnxruntime']}; {m['date']}; load average {m['load_average_start']} -> "
          f"{m['load_average_end']}")
    peak = report["matmul_peak"]
    print(f"  matmul peak (n={peak['size']}): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak["gflops"].items()))
    print(f"\n1. game loop, {w['frames']} frames after {w['warmup']} warm-up (headless, HUD on)")
    print(f"  {'backend':<22}{'fps':>7}{'x base':>8}{'lat p50':>9}{'p95':>7}{'generate':>10}{'decode':>8}"
          f"{'CPU ms':>8}{'load':>6}")
    for label, run in report["backends"].items():
        if "skipped" in run:
            print(f"  {label:<22}skipped: {run['skipped']}")
            continue
        s = run["stage_ms"]
        print(f"  {label:<22}{run['fps']:7.1f}{report['ratios_vs_baseline'].get(label, 0):8.2f}"
              f"{run['latency_ms']['p50']:9.1f}{run['latency_ms']['p95']:7.1f}{s['generate']:10.2f}"
              f"{s['decode']:8.2f}{run['cpu_ms_per_frame']:8.1f}{run['load_average']['end']:6.2f}")
    if "cache_vs_recompute" in report:
        print("\n2. KV cache vs recomputing the window every frame (generator only)")
        for label, c in report["cache_vs_recompute"].items():
            print(f"  {label:<22}cached {c['cached_ms']:7.2f} ms, recompute {c['recompute_ms']:8.2f} ms: "
                  f"{c['speedup']:.1f}x  (load {c['load_average']})")
    if "teacher_steps" in report:
        print("\n3. 1 NFE vs the multi-step teacher (generate ms per frame)")
        for label, t in report["teacher_steps"].items():
            print(f"  {label:<22}1 step {t['1_steps_ms']:7.2f}, " + ", ".join(
                f"{n} steps {t[f'{n}_steps_ms']:8.1f} ({t[f'speedup_vs_{n}_steps']:.1f}x)" for n in TEACHER_STEPS)
                + f"  (load {t['load_average']})")
    if "flops_per_frame" in report:
        f = report["flops_per_frame"]
        print(f"\n4. FLOPs per frame: {f['total'] / 1e9:.3f} GFLOP (generator {f['generator'] / 1e9:.3f}, decoder "
              f"{f['decoder_convs'] / 1e9:.3f}; FlopCounterMode {f['flop_counter_total'] / 1e9:.3f})")
        for label, u in report["utilization"].items():
            print(f"  {label:<22}{u['gflops_compute']:7.1f} GFLOP/s in generate+decode = "
                  f"{100 * u['fraction_compute']:.0f}% of the {u['peak_dtype']} peak; end to end "
                  f"{u['gflops_end_to_end']:.1f} ({100 * u['fraction_end_to_end']:.0f}%)")
    if "threads" in report:
        t = report["threads"]
        print(f"\n5. threads ({t['backend']})")
        for n, run in t.items():
            if n not in ("backend", "frames"):
                if "fps" not in run:
                    print(f"  {n} thread(s): skipped: {run.get('skipped')}")
                    continue
                print(f"  {n} thread(s): {run['fps']:.1f} fps, latency p95 {run['latency_ms']['p95']:.1f} ms, CPU "
                      f"{run['cpu_ms_per_frame']:.1f} ms/frame (load {run['load_average']['end']})")
    if "quality" in report:
        q = report["quality"]
        print(f"\n6. quality vs {q['reference']} over {q['frames']} frames (PSNR dB)")
        for label, r in q.items():
            if isinstance(r, dict) and "psnr_open_loop_mean_db" in r:
                print(f"  {label:<22}open loop mean {r['psnr_open_loop_mean_db']}, teacher-forced mean "
                      f"{r['psnr_teacher_forced_mean_db']}, per frame {r['psnr_open_loop_db']}")
    if "profile" in report:
        print("\n7. where the time goes (eager)")
        for name, ms in report["profile"]["modules_ms"].items():
            print(f"  {name:<44}{ms:8.2f} ms")
        for op in report["profile"]["ops"]:
            print(f"    {op['op'][:44]:<46}{op['ms_per_frame']:7.2f} ms {100 * op['share']:5.1f}%  "
                  f"{op['calls_per_frame']:6.1f} calls")
    if report.get("targets_met"):
        print(f"\ntargets ({report['best']}): " + ", ".join(f"{k} {'met' if v else 'MISSED'}"
                                                          for k, v in report["targets_met"].items()))
