"""`step_frame`: the one autoregressive step, shared by play, headless recording, evaluation and training.

Inputs: the recycled previous latent (at frame 0 the real first frame), this frame's condition and fresh noise.
Output: the next latent. The generator's K/V for this frame are appended to the cache by the (last) evaluation.
With `steps=1` (the AAPT generator) this is exactly one network evaluation at t = 1.

Context noise (GameNGen, DIAMOND, Oasis): the network may see the recycled frame noised to `context_level`, with
that level given to it (the `aug` input), so small errors of its own look like noise it was trained to see
through. A residual generator still adds its change to the clean recycled frame: the noise is not carried forward.
"""

from __future__ import annotations

import torch

from worldsim.diffusion.flow import add_noise, sampler_times
from worldsim.models.generator import Generator
from worldsim.models.kv_cache import KVCache


def step_frame(generator: Generator, cache: KVCache, recycled: torch.Tensor, frame_cond: torch.Tensor | None,
               token_cond: torch.Tensor | None, noise: torch.Tensor, steps: int = 1, shift: float = 1.0,
               aug: torch.Tensor | None = None, context_noise: torch.Tensor | None = None,
               context_level: float | torch.Tensor = 0.0, vae: torch.nn.Module | None = None) -> torch.Tensor:
    """(B, C, h, w) recycled latent + condition + noise -> next latent (B, C, h, w).

    `aug` (B,): the noise level the recycled frame already carries (training); or `context_noise` (B, C, h, w)
    with `context_level` > 0 (a float, or (B,) levels in training): noise it here, at that level. `vae`: the one a
    generator that turns its recycled frame in pixels decodes and encodes it through (GeneratorConfig)."""
    batch = recycled.shape[0]
    recycled = generator.reproject(recycled, frame_cond, vae)
    seen = recycled
    if context_noise is not None and (torch.is_tensor(context_level) or context_level > 0):
        aug = context_level if torch.is_tensor(context_level) else recycled.new_full((batch,), context_level)
        seen = add_noise(recycled, context_noise, aug)
    aug = recycled.new_zeros(batch) if aug is None else aug
    if steps == 1:  # the hot path of play: one evaluation, x0 = noise - v
        t = recycled.new_ones(batch)
        return generator.to_frame(noise - generator.step(noise, seen, token_cond, frame_cond, t, aug, cache),
                                  recycled)
    times = sampler_times(steps, shift).tolist()
    x = noise
    for i in range(steps):  # Euler from t = 1 to 0; the last evaluation's K/V stay in the cache
        t = recycled.new_full((batch,), times[i])
        v = generator.step(x, seen, token_cond, frame_cond, t, aug, cache, advance=i == steps - 1)
        x = x + (times[i + 1] - times[i]) * v
    return generator.to_frame(x, recycled)
