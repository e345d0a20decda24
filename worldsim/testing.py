"""Random-weight checkpoints of any preset, for tests and speed benchmarks (never presented as a trained world)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldsim.checkpoint import CheckpointConfig, SamplingConfig, build_models, provenance, save_checkpoint
from worldsim.conditioning.scheme import load_scheme
from worldsim.config import from_dict
from worldsim.models.generator import GENERATOR_PRESETS, GeneratorConfig
from worldsim.models.vae import VAE_PRESETS, VAEConfig


def random_config(generator: str = "tiny", vae: str = "tiny", scheme: str = "camera", steps: int = 1,
                  **generator_overrides) -> CheckpointConfig:
    s = load_scheme(scheme)
    vae_config = from_dict(VAEConfig, VAE_PRESETS[vae])
    encoding = s.encoding
    gen_config = from_dict(GeneratorConfig, {
        **GENERATOR_PRESETS[generator], **generator_overrides,
        "latent_channels": vae_config.latent_channels, "latent_size": list(vae_config.latent_size),
        "frame_cond_dim": encoding.frame_dim, "token_cond_channels": encoding.token_channels})
    return CheckpointConfig(generator=gen_config, vae=vae_config, encoding=s.encoding_dict(), scheme=s.name,
                            sampling=SamplingConfig(steps=steps, shift=1.0), stage="random",
                            provenance=provenance(note="random weights for tests and benchmarks"))


def perturb_(module: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> None:
    """Give zero-initialised layers random values too, so every input changes the output (tests need that)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def random_checkpoint(path: str | Path, generator: str = "tiny", vae: str = "tiny", scheme: str = "camera",
                      seed: int = 0, start_frames: int = 2, **generator_overrides) -> Path:
    torch.manual_seed(seed)
    config = random_config(generator, vae, scheme, **generator_overrides)
    g, v = build_models(config)
    perturb_(g, seed=seed)
    h, w = config.vae.image_size
    frames = np.random.default_rng(seed).integers(0, 256, (start_frames, h, w, 3), dtype=np.uint8)
    return save_checkpoint(path, config, g, v, torch.from_numpy(frames))
