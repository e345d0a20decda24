"""Stage 3, adversarial post-training with student forcing (AAPT section 3.3), and its teacher-forcing ablation.

Roles: the generator (from stage 2) rolls out exactly as at play time, through `step_frame` and a differentiable KV
cache, from one real first frame; its recycled input is detached, so gradients reach earlier frames only through
the cache. The discriminator (from stage 1 weights) is the same block-causal backbone with the judged frames in
place of the noise channels (noised at a random t), the previous frames as the recycled input and the conditions
that produced each frame, and a small head giving one logit per frame.

Losses: relativistic pairing, L = f(D(fake) - D(real)) with f_G(x) = -log(1 + e^-x), f_D(x) = -log(1 + e^x),
and the approximated R1/R2 penalties lambda * ||D(x) - D(x + sigma * noise)||^2 on real and fake inputs.

Optionally the generator is also judged on following the controls: a frozen inverse-dynamics model (trained on
engine frames, worldsim/eval/idm.py) reads the move between consecutive decoded frames, and the generator is asked
to make its moves read as the real clip's do. The discriminator sees realism, which a world that ignores a strafe
can have; the judge sees the move.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.diffusion.flow import add_noise
from worldsim.eval.idm import InverseDynamics
from worldsim.models.generator import Generator
from worldsim.models.kv_cache import KVCache
from worldsim.models.vae import VAE
from worldsim.rollout import step_frame
from worldsim.training.clips import Clip
from worldsim.world.memory import pull_toward


class Discriminator(nn.Module):
    """Block-causal backbone + per-frame head: frames (B, F, C, h, w) -> logits (B, F)."""

    def __init__(self, backbone: Generator):
        super().__init__()
        self.backbone = backbone
        dim = backbone.config.dim
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, frames: torch.Tensor, previous: torch.Tensor, frame_cond: torch.Tensor | None,
                token_cond: torch.Tensor | None, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        B, Fr = frames.shape[:2]
        noisy = add_noise(frames, noise, t)
        features = self.backbone(noisy, previous, token_cond, frame_cond, t, frames.new_zeros(B, Fr),
                                 return_features=True)  # (B, F, T, D)
        return self.head(features.mean(2)).squeeze(-1)


def generator_loss(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """-f_G(D(fake) - D(real)) = softplus(D(real) - D(fake)): the generator wants fakes scored above reals."""
    return F.softplus(d_real - d_fake).mean()


def discriminator_loss(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """-f_D(D(fake) - D(real)) = softplus(D(fake) - D(real))."""
    return F.softplus(d_fake - d_real).mean()


def approximate_r1(logits: torch.Tensor, perturbed_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """lambda * ||D(x) - D(x + sigma * noise)||^2, a finite-difference stand-in for the gradient penalty."""
    return weight * (logits - perturbed_logits).pow(2).mean()


def student_rollout(generator: Generator, clip: Clip, cache: KVCache | None = None,
                    gen: torch.Generator | None = None, first: torch.Tensor | None = None,
                    context_level: torch.Tensor | None = None, detach_every: int = 0,
                    pull: float = 0.0, pull_scale: int = 1, recompute: bool = True) -> torch.Tensor:
    """Generate frames 1..K-1 of `clip` autoregressively from its real first frame (or `first`), as at play time.

    The cache is differentiable (gradients flow through past K/V); the recycled input is detached. `context_level`
    (B,): the recycled frames are noised to it, the level told to the generator, as `step_frame` does at play time
    with context noise. `detach_every` > 0: the cache is detached every that many frames (truncated
    back-propagation), so long rollouts cost memory for one chunk only. `pull` > 0 (a world with a keyframe memory
    that pulls, `clip.views` set): each recycled latent is pulled that far toward the keyframe view of its pose
    first (its coarse layout only with `pull_scale` > 1), as the session does at play time; then a world that warps
    (`clip.warps` set) warps it by the recorded move, as the session warps it by the tracked one.

    With gradients, a fresh cache, no truncation and a rollout no longer than the attention window (`recompute`),
    the rollout runs without gradients and its frames are then recomputed in one block-causal pass from its
    recycled inputs and noise: the same frames and gradients (the cached step equals the full recompute; in float32
    to rounding, under bf16 autocast to bf16's), a quarter less time than the chain of one-frame steps through a
    differentiable cache (benchmarks/bench_train.py).
    Past the window the one pass attends to every earlier frame and then masks most of them, and costs more.
    """
    clip.check_warps(generator)
    B = clip.latents.shape[0]
    parallel = (recompute and torch.is_grad_enabled() and cache is None and not detach_every
                and clip.latents.shape[1] - 1 <= generator.config.window)
    if cache is None:
        cache = generator.new_cache(B, clip.latents.device, clip.latents.dtype, differentiable=not parallel)
    frame_cond, token_cond = clip.conditions
    latent = clip.first if first is None else first
    frames, inputs = [], []
    with torch.no_grad() if parallel else contextlib.nullcontext():
        for i in range(frame_cond.shape[1]):
            if detach_every and i and i % detach_every == 0:
                cache.detach()
            noise = torch.randn(latent.shape, generator=gen, device=latent.device, dtype=latent.dtype)
            context_noise = None
            if context_level is not None:
                context_noise = torch.randn(latent.shape, generator=gen, device=latent.device, dtype=latent.dtype)
            recycled = latent.detach()
            if pull > 0 and clip.views is not None:
                recycled = pull_toward(recycled, clip.views[:, i], pull, pull_scale)
            recycled = clip.warp(recycled, i + 1)  # by the recorded move, for a world that warps (as play does)
            latent = step_frame(generator, cache, recycled, frame_cond[:, i], token_cond[:, i], noise,
                                context_noise=context_noise,
                                context_level=context_level if context_level is not None else 0.0, vae=clip.vae)
            frames.append(latent)
            inputs.append((recycled, noise, context_noise))
    if not parallel:
        return torch.stack(frames, 1)
    # autocast may have kept low-precision copies of the weights made without gradients: the pass below must cast
    # them again, or the generator's weights get no gradient (torch before 2.10 cached casts under no_grad)
    torch.clear_autocast_cache()
    recycled, noise, context_noise = (None if parts[0] is None else torch.stack(parts, 1) for parts in zip(*inputs))
    return _recompute_rollout(generator, recycled, noise, context_noise, context_level, frame_cond, token_cond,
                              clip.vae)


def _recompute_rollout(generator: Generator, recycled: torch.Tensor, noise: torch.Tensor,
                       context_noise: torch.Tensor | None, context_level: torch.Tensor | None,
                       frame_cond: torch.Tensor | None, token_cond: torch.Tensor | None,
                       vae: torch.nn.Module | None = None) -> torch.Tensor:
    """The frames `step_frame` made from these (B, F, ...) recycled latents and noise, all in one block-causal pass."""
    B, Fr = recycled.shape[:2]
    recycled = generator.reproject(recycled, frame_cond, vae)
    seen, aug = recycled, recycled.new_zeros(B, Fr)
    if context_noise is not None:
        aug = context_level[:, None].to(recycled.dtype).expand(B, Fr)
        seen = add_noise(recycled, context_noise, aug)
    v = generator(noise, seen, token_cond, frame_cond, recycled.new_ones(B, Fr), aug)
    return generator.to_frame(noise - v, recycled)


def teacher_forced_fakes(generator: Generator, clip: Clip, gen: torch.Generator | None = None) -> torch.Tensor:
    """The ablation: every frame generated in one parallel pass from the ground-truth previous frame."""
    x0 = clip.targets
    B, Fr = x0.shape[:2]
    noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    t = x0.new_ones(B, Fr)
    frame_cond, token_cond = clip.conditions
    recycled = clip.recycled_seen_by(generator)
    v = generator(noise, recycled, token_cond, frame_cond, t, x0.new_zeros(B, Fr))
    return generator.to_frame(noise - v, recycled)


def score(discriminator: Discriminator, frames: torch.Tensor, first: torch.Tensor, clip: Clip,
          t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Logits for frames 1..K-1 of a sequence that starts at `first`, with the clip's conditions lined up."""
    frame_cond, token_cond = clip.conditions
    previous = clip.seen_by(discriminator.backbone, torch.cat([first[:, None], frames[:, :-1]], 1))
    return discriminator(frames, previous, frame_cond, token_cond, t, noise)


def discriminator_step_loss(discriminator: Discriminator, fake: torch.Tensor, real: Clip, fake_clip: Clip,
                            r1_weight: float, r1_sigma: float, gen: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, dict[str, float]]:
    """Relativistic D loss on (fake, real) pairs + approximated R1 (real) and R2 (fake)."""
    fake = fake.detach()
    B, Fr = fake.shape[:2]
    t = torch.rand(B, generator=gen, device=fake.device)[:, None].expand(B, Fr)  # random t, no shift
    noise = torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype)
    d_real = score(discriminator, real.targets, real.first, real, t, noise)
    d_fake = score(discriminator, fake, fake_clip.first, fake_clip, t, noise)
    loss = discriminator_loss(d_fake, d_real)
    stats = {"d_loss": loss.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
    if r1_weight > 0:
        eps_r = torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype) * r1_sigma
        eps_f = torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype) * r1_sigma
        r1 = approximate_r1(d_real, score(discriminator, real.targets + eps_r, real.first, real, t, noise), r1_weight)
        r2 = approximate_r1(d_fake, score(discriminator, fake + eps_f, fake_clip.first, fake_clip, t, noise),
                            r1_weight)
        loss = loss + r1 + r2
        stats.update(r1=r1.item(), r2=r2.item())
    return loss, stats


def generator_step_loss(discriminator: Discriminator, fake: torch.Tensor, real: Clip, fake_clip: Clip,
                        regression_weight: float = 0.0, gen: torch.Generator | None = None,
                        regression_frames: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """`regression_frames` > 0: the optional L2 to the real continuation covers only the first frames (later
    ones are not determined by the context, and regressing them draws the mean of what may happen: blur)."""
    B, Fr = fake.shape[:2]
    t = torch.rand(B, generator=gen, device=fake.device)[:, None].expand(B, Fr)
    noise = torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype)
    with torch.no_grad():
        d_real = score(discriminator, real.targets, real.first, real, t, noise)
    d_fake = score(discriminator, fake, fake_clip.first, fake_clip, t, noise)
    loss = generator_loss(d_fake, d_real)
    stats = {"g_loss": loss.item()}
    if regression_weight > 0 and fake.shape == fake_clip.targets.shape:
        n = regression_frames or fake.shape[1]
        regression = F.mse_loss(fake[:, :n].float(), fake_clip.targets[:, :n].float())
        loss = loss + regression_weight * regression
        stats["regression"] = regression.item()
    return loss, stats


def action_following_loss(judge: InverseDynamics, vae: VAE, fake: torch.Tensor, clip: Clip
                          ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the judge's reading of each generated move (frame i-1 -> i, the rollout starting at the
    clip's real first frame) against its reading of the real clip's move at the same step.

    The target is the judge's reading of the real frames, not the commanded action: Doom's momentum carries a move
    past a released key, and a generator asked to read as the command would have to stop dead where the engine
    glides. Both go through the VAE's decoder, so the judge compares like with like; `judge` is frozen."""
    B, Fr = fake.shape[:2]

    def frames(latents: torch.Tensor) -> torch.Tensor:  # (B, F + 1, C, h, w) -> (B, F + 1, 3, H, W) in [-1, 1]
        return vae.decode(latents.flatten(0, 1)).clamp(-1.0, 1.0).unflatten(0, (B, Fr + 1))

    def read(video: torch.Tensor) -> torch.Tensor:  # each step's (3 axes, 3 buckets) logits
        return judge(video[:, :-1].flatten(0, 1), video[:, 1:].flatten(0, 1))

    with torch.no_grad():
        target = read(frames(clip.latents)).float().softmax(-1)
    logits = read(frames(torch.cat([clip.first[:, None], fake], 1))).float()
    loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
    agreement = (logits.argmax(-1) == target.argmax(-1)).float().mean()
    return loss, {"action": loss.item(), "action_agreement": agreement.item()}
