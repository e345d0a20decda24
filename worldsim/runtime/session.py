"""WorldSession: a checkpoint played one frame at a time. reset / step / snapshot / restore, with per-stage timings.

No pygame here: the game loop, headless recording, evaluation and tests all drive the world through this class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from worldsim.checkpoint import Checkpoint
from worldsim.conditioning.scheme import Condition, Scheme, load_scheme
from worldsim.models.kv_cache import CacheSnapshot
from worldsim.rollout import step_frame


@dataclass
class SessionSnapshot:
    cache: CacheSnapshot
    latent: torch.Tensor
    noise_state: torch.Tensor
    frame: int


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    return x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


class WorldSession:
    def __init__(self, checkpoint: Checkpoint, scheme: Scheme | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0, steps: int | None = None):
        self.checkpoint = checkpoint
        self.scheme = scheme or load_scheme(checkpoint.config.scheme)
        self.scheme.check_matches(checkpoint.config.encoding, checkpoint.path or "the checkpoint")
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        self.steps = steps or checkpoint.config.sampling.steps
        self.shift = checkpoint.config.sampling.shift
        self.generator = checkpoint.generator.to(self.device, dtype).eval()
        self.vae = checkpoint.vae.to(self.device, dtype).eval()
        self.vae.decoder.to(memory_format=torch.channels_last)
        g = self.generator.config
        self.grid = g.grid
        self.cache = self.generator.new_cache(1, self.device, dtype)
        # Preallocated per-frame buffers: the hot path writes into these, it does not allocate them.
        self.noise = torch.empty((1, g.latent_channels, *g.latent_size), device=self.device, dtype=dtype)
        self.frame_cond = torch.zeros((1, g.frame_cond_dim), device=self.device, dtype=dtype)
        self.token_cond = torch.zeros((1, g.token_cond_channels, *self.grid), device=self.device, dtype=dtype)
        self.noise_generator = torch.Generator(self.device)
        self.latent: torch.Tensor | None = None
        self.frame_index = 0
        self.timings_ms = {"condition": 0.0, "generate": 0.0, "decode": 0.0}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.checkpoint.config.vae.image_size

    def start_frame(self, index: int = 0) -> np.ndarray:
        frames = self.checkpoint.start_frames
        if frames is None or len(frames) == 0:
            raise ValueError("this checkpoint has no start frames; pass a first frame to reset()")
        return frames[index % len(frames)].numpy()

    @torch.inference_mode()
    def reset(self, first_frame: np.ndarray | None = None) -> np.ndarray:
        """Start a new rollout from a real first frame (uint8 (H, W, 3)); returns the frame the player sees."""
        frame = self.start_frame() if first_frame is None else first_frame
        h, w = self.image_size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"first frame must be uint8 ({h}, {w}, 3), got {frame.dtype} {frame.shape}")
        self.latent = self.vae.encode(frames_to_tensor(frame[None]).to(self.device, self.dtype))
        self.cache.reset()
        self.noise_generator.manual_seed(self.seed)
        self.frame_index = 0
        return tensor_to_frames(self.vae.decode(self.latent))[0]

    def encode(self, action: np.ndarray) -> Condition:
        frame, tokens = self.scheme.encode_actions(action, self.grid)
        return Condition(np.asarray(action, dtype=np.float32), frame, tokens)

    @torch.inference_mode()
    def step(self, condition: Condition) -> np.ndarray:
        """One frame: condition -> generator (one evaluation per sampler step) -> decoder -> uint8 (H, W, 3)."""
        if self.latent is None:
            raise RuntimeError("call reset() before step()")
        t0 = time.perf_counter()
        # 1. condition into the preallocated buffers
        self.frame_cond[0].copy_(torch.from_numpy(condition.frame))
        self.token_cond[0].copy_(torch.from_numpy(condition.tokens))
        torch.randn(self.noise.shape, generator=self.noise_generator, out=self.noise, device=self.device,
                    dtype=self.dtype)
        t1 = time.perf_counter()
        # 2. generate the next latent against the sliding KV cache
        self.latent = step_frame(self.generator, self.cache, self.latent, self.frame_cond, self.token_cond,
                                 self.noise, self.steps, self.shift)
        t2 = time.perf_counter()
        # 3. decode
        frame = tensor_to_frames(self.vae.decode(self.latent.contiguous(memory_format=torch.channels_last)))[0]
        t3 = time.perf_counter()
        self.frame_index += 1
        self.timings_ms = {"condition": (t1 - t0) * 1e3, "generate": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}
        return frame

    def latent_is_finite(self) -> bool:
        return self.latent is not None and bool(torch.isfinite(self.latent).all())

    def snapshot(self) -> SessionSnapshot:
        if self.latent is None:
            raise RuntimeError("call reset() before snapshot()")
        return SessionSnapshot(self.cache.snapshot(), self.latent.clone(), self.noise_generator.get_state(),
                               self.frame_index)

    def restore(self, snap: SessionSnapshot) -> None:
        """Rewind to a snapshot; the same conditions afterwards give the same frames (noise state included)."""
        self.cache.restore(snap.cache)
        self.latent = snap.latent.clone()
        self.noise_generator.set_state(snap.noise_state)
        self.frame_index = snap.frame
