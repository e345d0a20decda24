"""Rectified flow with v-prediction: x_t = (1 - t) x0 + t * noise, v = noise - x0, t = 1 is pure noise.

The time shift s (AAPT uses 24) moves timesteps toward the noisy end: t' = s t / (1 + (s - 1) t). Play runs the
generator once at t = 1, where x0 = noise - v.
"""

from __future__ import annotations

import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def sample_times(batch: int, shift: float, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """One training timestep per clip: U(0, 1) through the shift, (batch,)."""
    return shift_time(torch.rand(batch, generator=generator, device=device), shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(*t.shape, *([1] * (x_t.dim() - t.dim())))
    return x_t - t * v


def sampler_times(steps: int, shift: float) -> torch.Tensor:
    """The Euler sampler's grid from t = 1 to t = 0, shifted like training, (steps + 1,)."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1), shift)
