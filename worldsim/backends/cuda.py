"""CUDA graphs for the torch backends: the steady-state step and the decoder replayed as captured graphs.

UNTESTED here: written for CUDA machines, not run on the CPU-only machine this code was developed on (tests that use
it are marked `cuda` and skipped without a GPU).

On a GPU a 1-NFE step of a small model is launch-bound: hundreds of kernels of microseconds each. A graph replays
them with one launch. A graph reads and writes fixed addresses, so:
  - the step's inputs and its position plan are copied into static buffers before each replay;
  - the cache is a per-layer KVCache whose buffers never move (restore copies into them), one graph per cache;
  - only the steady state is captured: ring full and every sink evicted (no mask, so flash-attn serves it when
    installed; no sink store). The first `window + sink - 1` frames run uncaptured.
The decoder is captured on its own (static latent in, static frame out).
"""

from __future__ import annotations

import weakref

import torch

from worldsim.models.generator import StepPlan, plan_step
from worldsim.models.kv_cache import KVCache

WARMUP_RUNS = 2  # eager runs on a side stream before capture, as torch.cuda.graphs requires (allocator warm-up)


class _StepGraph:
    def __init__(self, backend, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache, plan: StepPlan):
        clone = lambda x: None if x is None else x.clone()  # noqa: E731
        self.inputs = [clone(x) for x in (noisy, recycled, token_cond, frame_cond, t, aug)]
        self.plan = StepPlan(plan.rope_cos.clone(), plan.rope_sin.clone(), plan.sink_cos.clone(),
                             plan.sink_sin.clone(), plan.write_index.clone(), plan.sink_index.clone(),
                             plan.key_index.clone(), plan.value_index.clone(), plan.store_sink.clone(), None, False)
        # Warm-up runs compute this very frame into this very cache: the same values the replay writes again.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                backend.run_step(*self.inputs, cache, self.plan)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = backend.run_step(*self.inputs, cache, self.plan)

    def replay(self, inputs, plan: StepPlan) -> torch.Tensor:
        for static, value in zip(self.inputs, inputs):
            if static is not None:
                static.copy_(value, non_blocking=True)
        p = self.plan
        for static, value in ((p.rope_cos, plan.rope_cos), (p.rope_sin, plan.rope_sin), (p.sink_cos, plan.sink_cos),
                              (p.sink_sin, plan.sink_sin), (p.write_index, plan.write_index),
                              (p.key_index, plan.key_index)):
            static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.output


class CudaGraphs:
    """Captured steady-state steps (one per cache) and a captured decoder for an EagerBackend/CompiledBackend."""

    def __init__(self, backend):
        self.backend = backend
        self.steps: weakref.WeakKeyDictionary[KVCache, _StepGraph] = weakref.WeakKeyDictionary()
        self.decoder_graph: torch.cuda.CUDAGraph | None = None
        self.latent_in: torch.Tensor | None = None
        self.frames_out: torch.Tensor | None = None
        self.overlap = backend.config.overlap_decode
        self.decode_stream = torch.cuda.Stream() if self.overlap else None

    def step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: KVCache) -> torch.Tensor | None:
        """The replayed step, or None when this frame is not in the steady state (the caller runs it uncaptured)."""
        if not cache.layered or cache.differentiable:
            return None
        plan = plan_step(cache, self.backend.generator.rotary)
        if plan.mask is not None or plan.storing_sink:
            return None
        graph = self.steps.get(cache)
        if graph is None:
            graph = self.steps[cache] = _StepGraph(self.backend, noisy, recycled, token_cond, frame_cond, t, aug,
                                                   cache, plan)
        return graph.replay((noisy, recycled, token_cond, frame_cond, t, aug), plan)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.decoder_graph is None:
            self._capture_decoder(latents)
        if not self.overlap:
            self.latent_in.copy_(latents)
            self.decoder_graph.replay()
            return self.frames_out
        return self._decode_pipelined(latents)

    def _capture_decoder(self, latents: torch.Tensor) -> None:
        self.latent_in = latents.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.backend.run_decoder(self.latent_in)
        torch.cuda.current_stream().wait_stream(side)
        self.decoder_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.decoder_graph):
            self.frames_out = self.backend.run_decoder(self.latent_in)
        if self.overlap:
            self.host_frames = [torch.empty(self.frames_out.shape, dtype=self.frames_out.dtype, pin_memory=True)
                                for _ in range(2)]
            self.decoded = [torch.cuda.Event() for _ in range(2)]
            self.pending: int | None = None  # host slot of the previous call's frame, still being decoded

    def _decode_pipelined(self, latents: torch.Tensor) -> torch.Tensor:
        """Overlap: this latent is decoded on the decode stream while the caller goes on to the next generator
        step; the frame returned is the previous call's (one frame of extra latency for the throughput of two
        streams). The first call after `flush` waits for its own frame, and the next call shows it again while the
        pipeline fills."""
        current = torch.cuda.current_stream()
        current.wait_stream(self.decode_stream)  # the previous decode has read latent_in
        self.latent_in.copy_(latents)
        self.decode_stream.wait_stream(current)
        slot = 0 if self.pending is None else 1 - self.pending
        with torch.cuda.stream(self.decode_stream):
            self.decoder_graph.replay()
            self.host_frames[slot].copy_(self.frames_out, non_blocking=True)
            self.decoded[slot].record()
        shown = slot if self.pending is None else self.pending
        self.pending = slot
        self.decoded[shown].synchronize()
        return self.host_frames[shown]

    def flush(self) -> None:
        """Forget a pending decode (after reset / restore the previous frame is not the one to show)."""
        if self.overlap and self.decoder_graph is not None:
            self.decode_stream.synchronize()
            self.pending = None
