"""Samples written during training: VAE reconstructions (PNG) and rollouts beside the real clip (MP4, or a PNG
contact sheet where no ffmpeg is installed, as on a bare GPU machine)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from worldsim.models.generator import Generator
from worldsim.models.vae import VAE
from worldsim.rollout import step_frame
from worldsim.runtime.session import tensor_to_frames
from worldsim.training.clips import Clip

CONTACT_SHEET_FRAMES = 8  # frames of a rollout shown when it cannot be written as a video


@functools.cache
def can_write_mp4() -> bool:
    """imageio writes MP4 through the imageio-ffmpeg package and its ffmpeg binary."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        return False
    return True


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).pow(2).mean().item() / 4.0
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


@torch.no_grad()
def write_vae_sample(vae: VAE, frames: torch.Tensor, path: Path, autocast) -> dict:
    """Held-out reconstructions: top row real, bottom row reconstructed; returns the held-out PSNR."""
    vae.eval()
    with autocast():
        recon = torch.cat([vae.decode(vae.encode(frames[i: i + 64])).float() for i in range(0, len(frames), 64)])
    vae.train()
    value = psnr(recon, frames)
    n = min(8, len(frames))
    grid = np.concatenate([np.concatenate(list(tensor_to_frames(x[:n])), 1) for x in (frames, recon)], 0)
    _atomic_write(path, lambda p: imageio.imwrite(p, grid))
    return {"val_psnr": value}


@torch.no_grad()
def write_rollout_sample(generator: Generator, vae: VAE, clip: Clip, path: Path, steps: int, shift: float,
                         autocast, fps: float = 17.5) -> dict:
    """Roll out from the clip's first frame with its conditions (one sample); MP4 of real | generated and PSNRs."""
    was_training = generator.training
    generator.eval()
    clip = Clip(clip.latents[:1], clip.frame_cond[:1], clip.token_cond[:1],
                warps=None if clip.warps is None else clip.warps[:1], vae=clip.vae)
    cache = generator.new_cache(1, clip.latents.device)
    gen = torch.Generator(clip.latents.device).manual_seed(0)
    latent = clip.first
    frames = []
    frame_cond, token_cond = clip.conditions
    with autocast():
        for i in range(frame_cond.shape[1]):
            noise = torch.randn(latent.shape, generator=gen, device=latent.device)
            latent = step_frame(generator, cache, clip.warp(latent, i + 1), frame_cond[:, i], token_cond[:, i],
                                noise, steps, shift, vae=clip.vae)
            frames.append(latent.float())
        fake = vae.decode(torch.cat(frames)).float()
        real = vae.decode(clip.targets[0]).float()
    generator.train(was_training)
    video = np.concatenate([tensor_to_frames(real), tensor_to_frames(fake)], 2)  # (F, H, 2W, 3)
    if can_write_mp4():
        _atomic_write(path, lambda p: imageio.mimwrite(p, list(video), fps=fps, macro_block_size=1))
    else:  # evenly spaced frames side by side: real | generated on each row
        rows = video[np.linspace(0, len(video) - 1, min(CONTACT_SHEET_FRAMES, len(video))).astype(int)]
        _atomic_write(path.with_suffix(".png"), lambda p: imageio.imwrite(p, np.concatenate(list(rows), 0)))
    horizon = min(8, len(frames))
    return {"sample_psnr_h1": psnr(fake[:1], real[:1]), f"sample_psnr_h{horizon}": psnr(fake[:horizon],
                                                                                          real[:horizon])}
