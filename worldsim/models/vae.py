"""A small convolutional VAE: frames in [-1, 1] <-> latents of unit scale.

Spatial compression is 2 ** len(channels) (one stride-2 stage per entry). Latents are normalised with per-channel
statistics measured after training (`latent_mean`, `latent_std` buffers), so the generator sees unit-variance
inputs. The decoder is light (one residual block per scale) and runs channels_last: it is on the per-frame path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.config import rng


@dataclass(frozen=True)
class VAEConfig:
    image_size: tuple[int, int] = (96, 128)  # (height, width) in pixels
    channels: tuple[int, ...] = (32, 64, 128)  # encoder widths per stage; the decoder mirrors them
    latent_channels: int = field(default=8, metadata=rng(1, 256))
    blocks: int = field(default=1, metadata=rng(0, 8))  # residual blocks per stage

    def __post_init__(self) -> None:
        f = self.compression
        if self.image_size[0] % f or self.image_size[1] % f:
            raise ValueError(f"image_size {list(self.image_size)} must be divisible by the compression {f}")

    @property
    def compression(self) -> int:
        return 2 ** len(self.channels)

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.image_size[0] // self.compression, self.image_size[1] // self.compression


VAE_PRESETS: dict[str, dict] = {
    "tiny": dict(image_size=(16, 24), channels=(8, 8), latent_channels=4, blocks=0),
    "world-s": dict(image_size=(96, 128), channels=(32, 64, 96), latent_channels=8, blocks=1),
    # AAPT's 736x416 output with 8x spatial compression (52x92 latents: 1196 tokens at patch 2), two residual blocks
    # per scale like the paper's light decoder; for throughput measurements with random weights on a GPU.
    "paper-scale": dict(image_size=(416, 736), channels=(128, 256, 512), latent_channels=16, blocks=2),
}


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, config.channels[0], 3, padding=1)]
        width = config.channels[0]
        for out in config.channels:
            layers += [ResBlock(width) for _ in range(config.blocks)]
            layers += [nn.Conv2d(width, out, 4, stride=2, padding=1)]
            width = out
        layers += [ResBlock(width) for _ in range(config.blocks)]
        layers += [nn.SiLU(), nn.Conv2d(width, 2 * config.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(x).chunk(2, 1)
        return mean, logvar.clamp(-20.0, 5.0)


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        widths = list(reversed(config.channels))
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)]
        width = widths[0]
        for out in widths[1:] + [widths[-1]]:
            layers += [ResBlock(width) for _ in range(config.blocks)]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, out, 3, padding=1), nn.SiLU()]
            width = out
        layers += [nn.Conv2d(width, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    def encode_distribution(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw posterior (mean, logvar) for training; frames (B, 3, H, W) in [-1, 1]."""
        return self.encoder(frames)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [-1, 1] -> normalised latents (B, C, h, w) (posterior mean)."""
        return self.normalize(self.encoder(frames)[0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, C, h, w) -> frames (B, 3, H, W), roughly in [-1, 1]."""
        return self.decoder(self.denormalize(latents))


# ---- round trips of frames the world moves in pixels ------------------------------------------------------------
# A pulled view (worldsim/world/memory.py) or a turned recycled frame (generator.turn_in_pixels) is data, never
# trained through: decoded, moved in float32 and encoded again in bfloat16, without gradients (1.5x faster).


def decode_bfloat16(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w) -> float32 pixels in [-1, 1], decoded in bfloat16."""
    with torch.no_grad(), torch.autocast(latents.device.type, dtype=torch.bfloat16):
        return vae.decode(latents).clamp(-1.0, 1.0).float()


def encode_bfloat16(vae: nn.Module, frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Pixels (B, 3, H, W) -> latents in `dtype`, encoded in bfloat16 (channels_last: 1.25x faster on CPU)."""
    with torch.no_grad(), torch.autocast(frames.device.type, dtype=torch.bfloat16):
        return vae.encode(frames.contiguous(memory_format=torch.channels_last)).to(dtype)
