"""Own-rollout training: the generator plays a clip exactly as at play time and is pulled toward the real frames.

The adversarial stage judges rollouts of a dozen frames; a world that collapses between frame 20 and 100 has never
been trained on what its own frame 40 looks like, so it never learned to pull a drifted frame back. Here the
generator rolls out `clip_frames` frames open loop from one real first frame with the recorded actions (the same
`step_frame` as play, through `student_rollout`), and every generated latent is regressed onto the real one
(DIAMOND trains its world model on unrolled predictions; Self-Forcing trains on its own rollouts). The recycled
frames may carry context noise at a random level per clip, told to the generator, as at play time.

Regression alone blurs what the actions do not determine; it is the cheap stage before the adversarial one, which
restores sharpness, not a replacement for it.

Still clips: the explorer that records the data stops for at most 30 frames, so a player who stands still for a
minute is far outside it. With nothing pressed the engine's frame does not change at all (0.001 grey levels per
frame), so a still clip is true data that costs nothing: one real frame repeated, with the no-op condition.
"""

from __future__ import annotations

import torch

from worldsim.models.generator import Generator
from worldsim.training.adversarial import student_rollout
from worldsim.training.clips import Clip


def with_still_clips(clip: Clip, fraction: float, no_op_frame: torch.Tensor, no_op_tokens: torch.Tensor,
                     gen: torch.Generator | None = None, pose_channels: int = 0) -> Clip:
    """Replace a random `fraction` of the clips by still ones: the first frame repeated, the no-op condition
    (`no_op_frame` (Cf,), `no_op_tokens` (Ct, gh, gw)) at every frame. The scheme's last `pose_channels` (the
    absolute camera of the `world` scheme) and the channels after the scheme's (a keyframe memory's anchor) keep
    the first frame's: the player stays where the clip starts, and a world that warps warps by no move."""
    B, K = clip.latents.shape[:2]
    still = torch.rand(B, generator=gen, device=clip.latents.device) < fraction  # (B,)
    if not still.any():
        return clip
    keep = lambda x, other: torch.where(still.view(B, *[1] * (x.dim() - 1)), other, x)  # noqa: E731
    motion_channels = no_op_tokens.shape[0] - pose_channels
    still_tokens = torch.cat([no_op_tokens[:motion_channels].to(clip.token_cond).expand(B, K, motion_channels,
                                                                                         *no_op_tokens.shape[1:]),
                              clip.token_cond[:, :1, motion_channels:].expand(-1, K, -1, -1, -1)], 2)
    views = None if clip.views is None else keep(clip.views, clip.views[:, :1].expand_as(clip.views))
    warps = None
    if clip.warps is not None:  # no move: the identity (every column from itself, rows unscaled)
        columns = clip.warps.shape[-1]
        unmoved = torch.stack([torch.arange(columns, dtype=clip.warps.dtype, device=clip.warps.device),
                               clip.warps.new_ones(columns)])
        warps = keep(clip.warps, unmoved.expand_as(clip.warps))
    return Clip(keep(clip.latents, clip.latents[:, :1].expand_as(clip.latents)),
                keep(clip.frame_cond, no_op_frame.to(clip.frame_cond).expand_as(clip.frame_cond)),
                keep(clip.token_cond, still_tokens), views, warps, vae=clip.vae)


def unroll_loss(generator: Generator, clip: Clip, context_noise: float = 0.0, detach_every: int = 0,
                gen: torch.Generator | None = None, pull: float = 0.0, pull_scale: int = 1
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE between the open-loop rollout of `clip` and its real frames 1..K-1, over all frames."""
    B = clip.latents.shape[0]
    level = None
    if context_noise > 0:
        level = torch.rand(B, generator=gen, device=clip.latents.device) * context_noise
    fake = student_rollout(generator, clip, gen=gen, context_level=level, detach_every=detach_every, pull=pull,
                           pull_scale=pull_scale)
    errors = (fake.float() - clip.targets.float()).pow(2).flatten(2).mean(2)  # (B, F)
    loss = errors.mean()
    half = errors.shape[1] // 2
    return loss, {"loss": loss.item(), "loss_first_half": errors[:, :half].mean().item(),
                  "loss_second_half": errors[:, half:].mean().item()}
