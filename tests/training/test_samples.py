"""Training samples where no video can be written (a bare GPU machine has no ffmpeg): a PNG contact sheet."""

import contextlib

import imageio.v2 as imageio
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.training import samples
from worldsim.training.clips import Clip


def test_a_rollout_sample_without_ffmpeg_is_a_contact_sheet(tiny_checkpoint, tmp_path, monkeypatch):
    world = load_checkpoint(tiny_checkpoint)
    g = world.config.generator
    frames = 12
    clip = Clip(torch.randn(1, frames, g.latent_channels, *g.latent_size), torch.zeros(1, frames, g.frame_cond_dim),
                torch.zeros(1, frames, g.token_cond_channels, *g.grid))
    monkeypatch.setattr(samples, "can_write_mp4", lambda: False)
    stats = samples.write_rollout_sample(world.generator, world.vae, clip, tmp_path / "rollout_0000010.mp4", 1, 1.0,
                                         contextlib.nullcontext)
    assert not (tmp_path / "rollout_0000010.mp4").exists() and "sample_psnr_h1" in stats
    sheet = imageio.imread(tmp_path / "rollout_0000010.png")
    h, w = world.config.vae.image_size
    assert sheet.shape == (samples.CONTACT_SHEET_FRAMES * h, 2 * w, 3)  # rows of real | generated
