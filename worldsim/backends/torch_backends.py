"""torch backends: eager modules, and torch.compile of the same cached step and decoder.

Both run `Generator.cached_step` (the step on explicit cache tensors and a position plan) against a KVCache and the
VAE's decoder. On CUDA both can replay the steady-state step and the decoder as CUDA graphs (worldsim/backends/cuda.py).
"""

from __future__ import annotations

import time
import warnings

import torch

from worldsim.backends.base import Backend, BackendConfig, BackendUnavailable
from worldsim.models.generator import plan_step
from worldsim.models.kv_cache import KVCache


class EagerBackend(Backend):
    """The torch modules as they are, in the session's dtype (bf16 matmuls and convs use AMX / AVX-512 BF16 on CPUs
    that have them)."""

    def __init__(self, checkpoint, config: BackendConfig, device: torch.device, dtype: torch.dtype):
        self.config, self.device, self.dtype = config, device, dtype
        self.generator = checkpoint.generator.to(device, dtype).eval()
        self.vae = checkpoint.vae.to(device, dtype).eval()
        # channels_last: measured 1.5x (fp32) and 2x (bf16) faster decodes on the project's AVX-512 CPU
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.vae.decoder.to(memory_format=self.memory_format)
        self.graphs = None
        if device.type == "cuda" and config.cuda_graphs:
            from worldsim.backends.cuda import CudaGraphs

            self.graphs = CudaGraphs(self)

    def new_cache(self) -> KVCache:
        # One buffer per layer: CUDA graphs and compiled steps bind them by address (eager is indifferent).
        return self.generator.new_cache(1, self.device, self.dtype, per_layer=True)

    def _replay(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, advance: bool):
        """The step as a captured CUDA graph, or None where no graph applies (no CUDA, or not the steady state)."""
        if self.graphs is None:
            return None
        out = self.graphs.step(noisy, recycled, token_cond, frame_cond, t, aug, cache)
        if out is not None and advance:
            cache.position += 1
        return out

    @torch.inference_mode()
    def step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, advance: bool = True):
        out = self._replay(noisy, recycled, token_cond, frame_cond, t, aug, cache, advance)
        if out is not None:
            return out
        return self.generator.step(noisy, recycled, token_cond, frame_cond, t, aug, cache, advance)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.contiguous(memory_format=self.memory_format)
        if self.graphs is not None:
            return self.graphs.decode(latents)
        return self.vae.decode(latents)

    def flush(self) -> None:
        if self.graphs is not None:
            self.graphs.flush()

    def run_decoder(self, latents: torch.Tensor) -> torch.Tensor:
        """The decoder as this backend runs it without graphs (what a CUDA graph captures)."""
        return self.vae.decode(latents)

    def run_step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, plan) -> torch.Tensor:
        """One cached step in place on `cache` without advancing it (what a CUDA graph captures)."""
        return self.generator.cached_step(noisy, recycled, token_cond, frame_cond, t, aug, cache.k, cache.v,
                                          cache.sink_k, plan)[0]


class CompiledBackend(EagerBackend):
    """torch.compile (inductor) of the cached step and the decoder, with the weights frozen into the graph.

    The compiled step is one graph for every frame: the position enters as the plan's tensors and the cache as
    per-layer buffers mutated in place. Frames that store a sink frame (the first `sink` frames) run eagerly, so the
    graph needs no branch for them. Compilation happens at construction, so a failure is reported before play starts
    and the first frames are not slow.
    """

    def __init__(self, checkpoint, config: BackendConfig, device: torch.device, dtype: torch.dtype):
        super().__init__(checkpoint, config, device, dtype)
        # The graph's frame inputs: callers' tensors are copied in, so the graph always sees the same kind of tensor
        # (dynamo guards on it: an inference-mode tensor where a normal one was traced would recompile).
        g = self.generator.config
        new = lambda *shape: torch.zeros(shape, device=device, dtype=dtype)  # noqa: E731
        latent = (1, g.latent_channels, *g.latent_size)
        self.inputs = {"noisy": new(*latent), "recycled": new(*latent),
                       "token_cond": new(1, g.token_cond_channels, *g.grid) if g.token_cond_channels else None,
                       "frame_cond": new(1, g.frame_cond_dim) if g.frame_cond_dim else None,
                       "t": new(1), "aug": new(1)}
        # CPU: weights frozen into the graph as constants (prepacked oneDNN/MKL GEMMs, folded element-wise work).
        # CUDA: plain inductor; CUDA graphs are captured around it (cuda.py), and freezing would copy the weights.
        options = {"freezing": True} if device.type == "cpu" else {}
        with warnings.catch_warnings():  # inductor imports torch.jit helpers that warn they are deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            self.compiled_step = torch.compile(self._traced_step, dynamic=False, options=options)
            self.compiled_decoder = torch.compile(self.vae.decode, dynamic=False, options=options)
        start = time.perf_counter()
        try:
            self._warm_up()
        except Exception as err:  # inductor raises many kinds (compiler missing, codegen, lowering)
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise BackendUnavailable(f"torch.compile failed on this machine ({type(err).__name__}: {first_line}); "
                                     "use --backend eager (or onnx)") from None
        self.compile_s = time.perf_counter() - start

    def _traced_step(self, noisy, recycled, token_cond, frame_cond, t, aug, k, v, sink_k, plan):
        return self.generator.cached_step(noisy, recycled, token_cond, frame_cond, t, aug, k, v, sink_k, plan)[0]

    def _warm_up(self) -> None:
        """Compile the step and the decoder on a scratch cache in its steady state (the shapes are all static).
        The cache is made as a session makes its own (outside inference mode), so the graph fits both."""
        g = self.generator.config
        cache = self.new_cache()
        cache.position = g.window + g.sink  # ring full, sinks evicted: the frame a long game is always at
        x = self.inputs
        with torch.inference_mode():
            self.step(x["noisy"], x["recycled"], x["token_cond"], x["frame_cond"], x["t"], x["aug"], cache)
            self.decode(x["noisy"])

    @torch.inference_mode()
    def step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, advance: bool = True):
        out = self._replay(noisy, recycled, token_cond, frame_cond, t, aug, cache, advance)
        if out is not None:
            return out
        plan = plan_step(cache, self.generator.rotary, full_mask=True)
        if plan.storing_sink:  # the first `sink` frames: eager, so the graph has no store branch
            return self.generator.step(noisy, recycled, token_cond, frame_cond, t, aug, cache, advance)
        x = self.inputs
        for name, value in (("noisy", noisy), ("recycled", recycled), ("token_cond", token_cond),
                            ("frame_cond", frame_cond), ("t", t), ("aug", aug)):
            if x[name] is not None:
                x[name].copy_(value)
        out = self.compiled_step(x["noisy"], x["recycled"], x["token_cond"], x["frame_cond"], x["t"], x["aug"],
                                 cache.k, cache.v, cache.sink_k, plan)
        if advance:
            cache.position += 1
        return out

    def run_decoder(self, latents: torch.Tensor) -> torch.Tensor:
        return self.compiled_decoder(latents)

    def run_step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, plan) -> torch.Tensor:
        return self.compiled_step(noisy, recycled, token_cond, frame_cond, t, aug, cache.k, cache.v, cache.sink_k,
                                  plan)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.contiguous(memory_format=self.memory_format)
        if self.graphs is not None:
            return self.graphs.decode(latents)
        return self.compiled_decoder(latents)

    def describe(self) -> dict:
        return {**super().describe(), "compile_s": round(self.compile_s, 1)}
