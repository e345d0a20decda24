"""The backend interface: how one checkpoint's per-frame work, the generator step and the decoder, is executed.

A backend stands where the model stands in the rollout: `step_frame(backend, cache, ...)` (rollout.py, the one
autoregressive step) calls `backend.step(...)` and `backend.to_frame(...)` exactly as it would call the generator's,
and the session then calls `backend.decode(latent)`. Reset, snapshot and restore act on the cache the backend made
(`backend.new_cache()`, a KVCache), so every backend has the session's semantics by construction; the backends
differ only in how the two hot calls run.

    eager     torch modules as they are (fp32 or bf16), channels_last decoder
    compile   torch.compile (inductor, frozen weights) of the cached step and the decoder
    onnx      the step and the decoder exported to ONNX, run by onnxruntime (CPU, or CUDA with I/O binding);
              optional dynamic int8 quantisation on CPU
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

from worldsim.errors import WorldsimError
from worldsim.models.generator import Generator
from worldsim.models.kv_cache import KVCache
from worldsim.models.vae import VAE

BACKEND_NAMES = ("eager", "compile", "onnx")
QUANTIZATIONS = ("none", "int8")
BACKEND_ENV = "WORLDSIM_BACKEND"  # the backend a session uses when its caller names none (e.g. "compile")


class BackendUnavailable(WorldsimError):
    """This backend cannot run here (no compiler, no onnxruntime-gpu, ...); the message says what to use instead."""


@dataclass(frozen=True)
class BackendConfig:
    name: Literal["eager", "compile", "onnx"] = "eager"
    quantize: Literal["none", "int8"] = "none"  # onnx on CPU: dynamic int8 weights for the generator's matmuls
    onnx_dir: str | None = None  # a `worldsim export` directory; None: export into a temporary one at start
    channels_last: bool = True  # decoder memory format; measured faster on this project's CPUs in fp32 and bf16
    cuda_graphs: bool = True  # CUDA (eager/compile): replay the steady-state step and the decoder as graphs
    # CUDA graphs: decode on a second stream while the next generator step runs; the frame shown is then the
    # previous step's (one frame more latency for more throughput). Ignored on a CPU.
    overlap_decode: bool = False

    def __post_init__(self) -> None:
        if self.name not in BACKEND_NAMES:
            raise WorldsimError(f"unknown backend {self.name!r}; allowed: {', '.join(BACKEND_NAMES)}")
        if self.quantize not in QUANTIZATIONS:
            raise WorldsimError(f"unknown quantisation {self.quantize!r}; allowed: {', '.join(QUANTIZATIONS)}")
        if self.quantize != "none" and self.name != "onnx":
            raise WorldsimError(f"--quantize {self.quantize} needs the onnx backend (got {self.name})")

    @property
    def label(self) -> str:
        """Short name used in reports: eager, compile, onnx, onnx+int8."""
        return self.name if self.quantize == "none" else f"{self.name}+{self.quantize}"


def parse_backend(spec: str | BackendConfig | None) -> BackendConfig:
    """'eager', 'compile', 'onnx' or 'onnx+int8' (None: $WORLDSIM_BACKEND, else eager) -> BackendConfig."""
    if isinstance(spec, BackendConfig):
        return spec
    spec = spec or os.environ.get(BACKEND_ENV) or "eager"
    name, _, quantize = spec.strip().partition("+")
    return BackendConfig(name=name, quantize=quantize or "none")  # type: ignore[arg-type]


class Backend(ABC):
    """Executes the generator step and the decoder of one checkpoint on one device, in one dtype."""

    config: BackendConfig
    device: torch.device
    dtype: torch.dtype
    generator: Generator  # the torch generator: what eager/compile run, the reference (and plan source) for onnx
    vae: VAE  # the torch VAE: encodes first frames at reset; eager/compile also decode with it

    @property
    def name(self) -> str:
        return self.config.label

    @abstractmethod
    def new_cache(self) -> KVCache:
        """A KV cache this backend's `step` reads and writes (reset / snapshot / restore as any KVCache)."""

    @abstractmethod
    def step(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
             frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor, cache: KVCache,
             advance: bool = True) -> torch.Tensor:
        """Generator.step's contract: (B, C, h, w) inputs -> velocity (B, C, h, w); this frame's K/V into `cache`.

        The returned tensor may be a buffer the next call overwrites: use it before stepping again."""

    def reproject(self, recycled: torch.Tensor, frame_cond: torch.Tensor | None, vae: torch.nn.Module | None = None
                  ) -> torch.Tensor:
        return self.generator.reproject(recycled, frame_cond, vae)

    def to_frame(self, output: torch.Tensor, recycled: torch.Tensor) -> torch.Tensor:
        return self.generator.to_frame(output, recycled)

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, h, w) -> frames (B, 3, H, W), roughly in [-1, 1]."""

    def flush(self) -> None:  # noqa: B027 - optional hook: most backends have nothing in flight
        """Drop work in flight for frames no longer wanted (called at reset and restore)."""

    def describe(self) -> dict:
        """What a report should say about this backend (name, device, dtype, and backend-specific notes)."""
        return {"backend": self.name, "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds beyond memory (temporary export directories)."""


def create_backend(checkpoint, config: str | BackendConfig | None = None, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> Backend:
    """The backend named by `config` for `checkpoint` (a worldsim.checkpoint.Checkpoint) on `device` in `dtype`."""
    config = parse_backend(config)
    device = torch.device(device)
    if config.name == "onnx":
        from worldsim.backends.onnx_runtime import OnnxBackend

        return OnnxBackend(checkpoint, config, device, dtype)
    from worldsim.backends.torch_backends import CompiledBackend, EagerBackend

    return (CompiledBackend if config.name == "compile" else EagerBackend)(checkpoint, config, device, dtype)
