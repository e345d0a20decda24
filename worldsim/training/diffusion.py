"""Stage 1, diffusion adaptation: block-causal flow matching with teacher forcing (AAPT section 3.1).

Ground-truth previous frames are the recycled input, targets are shifted by one frame, one timestep for the whole
clip (shifted toward noise), v-prediction MSE. Optional noise on the recycled frames (GameNGen's augmentation, with
its level given to the model) teaches the generator to repair its own mistakes at play time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worldsim.diffusion.flow import add_noise, sample_times, velocity_target
from worldsim.models.generator import Generator
from worldsim.training.clips import Clip


def augment_recycled(recycled: torch.Tensor, max_level: float, gen: torch.Generator | None) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
    """Noise the recycled frames at a random level per clip in [0, max_level]; returns (frames, levels (B, F))."""
    B, Fr = recycled.shape[:2]
    if max_level <= 0:
        return recycled, recycled.new_zeros(B, Fr)
    level = torch.rand(B, generator=gen, device=recycled.device) * max_level
    noise = torch.randn(recycled.shape, generator=gen, device=recycled.device, dtype=recycled.dtype)
    return add_noise(recycled, noise, level), level[:, None].expand(B, Fr)


def diffusion_loss(generator: Generator, clip: Clip, shift: float, recycle_noise: float = 0.0,
                   gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    base = clip.recycled_seen_by(generator)
    x0 = generator.to_output(clip.targets, base)  # (B, F, C, h, w): frames, or changes (residual)
    B, Fr = x0.shape[:2]
    t = sample_times(B, shift, gen, x0.device)[:, None].expand(B, Fr)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    recycled, aug = augment_recycled(base, recycle_noise, gen)
    frame_cond, token_cond = clip.conditions
    v = generator(add_noise(x0, noise, t), recycled, token_cond, frame_cond, t, aug)
    loss = F.mse_loss(v.float(), velocity_target(x0, noise).float())
    return loss, {"loss": loss.item(), "t_mean": t.mean().item()}
