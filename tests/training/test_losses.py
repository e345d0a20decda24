import pytest
import torch

from worldsim.eval.idm import IDMConfig, InverseDynamics
from worldsim.models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig
from worldsim.models.vae import VAE, VAE_PRESETS, VAEConfig
from worldsim.testing import perturb_
from worldsim.training.adversarial import (
    Discriminator,
    action_following_loss,
    approximate_r1,
    discriminator_loss,
    generator_loss,
    student_rollout,
)
from worldsim.training.clips import Clip
from worldsim.training.consistency import consistency_loss
from worldsim.training.diffusion import diffusion_loss


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3,
                                  token_cond_channels=2, **GENERATOR_PRESETS["tiny"]))
    perturb_(g, scale=0.1, seed=seed)
    return g


def tiny_clip(batch: int = 2, frames: int = 5) -> Clip:
    gen = torch.Generator().manual_seed(0)
    return Clip(torch.randn(batch, frames, 4, 4, 6, generator=gen), torch.randn(batch, frames, 3, generator=gen),
                torch.randn(batch, frames, 2, 2, 3, generator=gen))


def test_relativistic_losses_have_the_right_sign():
    real_high, fake_low = torch.tensor([5.0]), torch.tensor([-5.0])
    # D is winning: its loss is small, the generator's large
    assert discriminator_loss(fake_low, real_high) < 0.01
    assert generator_loss(fake_low, real_high) > 9.0
    # the generator is winning: the other way round
    assert generator_loss(real_high, fake_low) < 0.01
    assert discriminator_loss(real_high, fake_low) > 9.0
    # indifferent D: both log 2
    torch.testing.assert_close(generator_loss(torch.zeros(3), torch.zeros(3)), torch.tensor(0.6931), atol=1e-4,
                               rtol=0)


def test_approximate_r1_is_zero_for_a_constant_discriminator():
    d = lambda x: torch.zeros(x.shape[0])  # noqa: E731 - a discriminator that ignores its input
    x = torch.randn(4, 8)
    assert approximate_r1(d(x), d(x + 0.1 * torch.randn_like(x)), 1000.0) == 0
    assert approximate_r1(x.sum(1), (x + 0.1).sum(1), 1000.0) > 0


def test_discriminator_gives_one_logit_per_frame():
    clip = tiny_clip(batch=3, frames=6)
    disc = Discriminator(tiny_generator())
    logits = disc(clip.targets, clip.recycled, *clip.conditions, torch.rand(3, 5), torch.randn_like(clip.targets))
    assert logits.shape == (3, 5)


@pytest.mark.parametrize("recompute", [False, True])
def test_student_forcing_gradients_flow_through_the_cache_not_the_recycled_input(recompute):
    g = tiny_generator()
    clip = tiny_clip(batch=1, frames=5)
    clip.frame_cond.requires_grad_(True)
    frames = student_rollout(g, clip, recompute=recompute)
    last = frames[:, -1].sum()
    # the condition of the first generated frame reaches the last frame: through the cache (K/V of step 1)
    cond_grad, recycled_grad = torch.autograd.grad(last, [clip.frame_cond, frames[:, 0]], retain_graph=True,
                                                   allow_unused=True)
    assert cond_grad[0, 1].abs().sum() > 0  # conditions[:, 0] is frame_cond[:, 1] (frame 1's condition)
    # ... but not through the recycled input: frame 1's output is fed to step 2 detached
    assert recycled_grad is None


@pytest.mark.parametrize("bf16", [False, True])
def test_a_rollout_recomputed_in_one_pass_gives_the_frames_and_gradients_of_the_cached_chain(monkeypatch, bf16):
    from worldsim.training import adversarial

    passes = []
    recompute_rollout = adversarial._recompute_rollout
    monkeypatch.setattr(adversarial, "_recompute_rollout", lambda *a: passes.append(1) or recompute_rollout(*a))
    torch.manual_seed(0)
    # the last token channel is an attended keyframe view; the recycled frames are pulled toward views
    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3,
                                  token_cond_channels=3, memory_channels=1, residual=True,
                                  yaw_reprojection=(0, 4.0, 90.0), **{**GENERATOR_PRESETS["tiny"], "window": 7}))
    perturb_(g, scale=0.1)
    gen = torch.Generator().manual_seed(0)
    clip = Clip(torch.randn(2, 8, 4, 4, 6, generator=gen), torch.randn(2, 8, 3, generator=gen),
                torch.randn(2, 8, 3, 2, 3, generator=gen), torch.randn(2, 8, 4, 4, 6, generator=gen))
    levels = torch.tensor([0.0, 0.3])  # 7 generated frames: as many as the window
    results = []
    for recompute in (False, True):
        g.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            frames = student_rollout(g, clip, gen=torch.Generator().manual_seed(2), context_level=levels, pull=0.4,
                                     recompute=recompute)
        (frames.float() * torch.linspace(-1, 1, frames.numel()).view_as(frames)).sum().backward()
        results.append((frames.detach().float(), [p.grad.clone() for p in g.parameters()]))
    assert passes == [1]  # the second rollout took the one pass
    (chain, chain_grads), (parallel, parallel_grads) = results
    assert all(a.abs().sum() > 0 for a in parallel_grads)  # every weight learns, also under autocast
    if bf16:  # 8 bits of mantissa: the frames agree to bf16's rounding, the gradients point the same way
        torch.testing.assert_close(parallel, chain, atol=0.1, rtol=0.1)
        a, b = torch.cat([a.flatten() for a in parallel_grads]), torch.cat([b.flatten() for b in chain_grads])
        assert torch.nn.functional.cosine_similarity(a, b, 0) > 0.99
        return
    torch.testing.assert_close(parallel, chain, atol=1e-5, rtol=1e-4)
    for a, b in zip(parallel_grads, chain_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_diffusion_and_consistency_losses_are_finite_and_train():
    g = tiny_generator()
    clip = tiny_clip()
    loss, stats = diffusion_loss(g, clip, shift=3.0, recycle_noise=0.3, gen=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in g.parameters())
    teacher = tiny_generator(seed=1).requires_grad_(False)
    loss, _ = consistency_loss(g, teacher, clip, teacher_steps=4, shift=3.0)
    assert torch.isfinite(loss) and loss > 0


def test_truncated_rollouts_cut_gradients_at_chunk_boundaries():
    g = tiny_generator()
    clip = tiny_clip(batch=1, frames=7)
    clip.frame_cond.requires_grad_(True)
    frames = student_rollout(g, clip, detach_every=3)
    (grad,) = torch.autograd.grad(frames[:, -1].sum(), [clip.frame_cond])
    # frames 4..6 form the last chunk: conditions of frames 1..3 no longer reach frame 6, frame 4's does
    assert grad[0, 1:4].abs().sum() == 0 and grad[0, 4].abs().sum() > 0


def test_unroll_loss_trains_through_context_noise_and_says_where_the_error_is():
    from worldsim.training.unroll import unroll_loss

    g = tiny_generator()
    loss, stats = unroll_loss(g, tiny_clip(frames=7), context_noise=0.5, detach_every=2,
                              gen=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in g.parameters())
    assert {"loss_first_half", "loss_second_half"} <= stats.keys()


def test_context_noise_is_seen_by_the_generator_but_not_carried_forward():
    from worldsim.models.generator import GeneratorConfig
    from worldsim.rollout import step_frame

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3,
                                  token_cond_channels=2, residual=True, **GENERATOR_PRESETS["tiny"]))
    recycled, noise = torch.randn(1, 4, 4, 6), torch.randn(1, 4, 4, 6)
    conds = torch.zeros(1, 3), torch.zeros(1, 2, 2, 3)
    # an untrained residual generator copies its context: the clean one, whatever noise it saw
    out = step_frame(g, g.new_cache(), recycled, *conds, noise, context_noise=torch.randn(1, 4, 4, 6),
                     context_level=0.5)
    torch.testing.assert_close(out, recycled)
    perturb_(g, scale=0.1, seed=0)  # a trained one sees the noise: its output depends on the level
    clean = step_frame(g, g.new_cache(), recycled, *conds, noise)
    noisy = step_frame(g, g.new_cache(), recycled, *conds, noise, context_noise=torch.randn(1, 4, 4, 6),
                       context_level=0.5)
    assert not torch.allclose(clean, noisy)


def test_still_clips_repeat_the_first_frame_under_the_no_op():
    from worldsim.training.unroll import with_still_clips

    clip = tiny_clip(batch=6, frames=5)
    no_op_frame, no_op_tokens = torch.zeros(3), torch.full((2, 2, 3), 0.5)
    out = with_still_clips(clip, 0.5, no_op_frame, no_op_tokens, torch.Generator().manual_seed(0))
    still = (out.latents == out.latents[:, :1]).flatten(1).all(1)
    assert 0 < still.sum() < 6  # some replaced, some kept
    assert (out.frame_cond[still] == 0).all() and (out.token_cond[still] == 0.5).all()
    torch.testing.assert_close(out.latents[~still], clip.latents[~still])
    assert with_still_clips(clip, 0.0, no_op_frame, no_op_tokens) is clip
    # a scheme's pose maps (the world scheme's absolute camera) stay where the clip starts, not at the no-op's zeros
    posed = with_still_clips(clip, 0.5, no_op_frame, no_op_tokens, torch.Generator().manual_seed(0), pose_channels=1)
    assert (posed.token_cond[still, :, :1] == 0.5).all()
    torch.testing.assert_close(posed.token_cond[still, :, 1:], clip.token_cond[still, :1, 1:].expand(-1, 5, -1, -1, -1))


def warped_clip(batch: int = 2, frames: int = 6) -> Clip:
    """A tiny clip whose frames were seen walking and turning toward a wall: it carries the warps of its moves."""
    import numpy as np

    from worldsim.world.walls import Walls
    from worldsim.world.warp import warp_fields

    clip = tiny_clip(batch, frames)
    steps = np.arange(frames)[None, :, None] * np.array([[[6.0, -2.0, 3.0]], [[4.0, 3.0, -5.0]]])[:batch]
    poses = steps + np.array([0.0, 0.0, 10.0])
    warps = torch.from_numpy(warp_fields(poses, Walls(np.array([[100.0, -500.0, 100.0, 500.0]])), 90.0, 6))
    return Clip(clip.latents, clip.frame_cond, clip.token_cond, warps=warps)


def warping_generator() -> Generator:
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(latent_channels=4, latent_size=(4, 6), patch=2, frame_cond_dim=3,
                                  token_cond_channels=2, residual=True, warp_fov=90.0, **GENERATOR_PRESETS["tiny"]))
    perturb_(g, scale=0.1)
    return g


def test_a_warping_world_is_shown_each_recycled_frame_warped_by_the_recorded_move():
    from worldsim.rollout import step_frame
    from worldsim.world.warp import warp_latent

    g, clip = warping_generator(), warped_clip()
    warps = clip.warps[:, 1:]
    torch.testing.assert_close(clip.recycled_seen_by(g), warp_latent(clip.recycled, warps[:, :, 0], warps[:, :, 1]))
    assert not torch.allclose(clip.recycled_seen_by(g), clip.recycled)  # the moves are drawn
    # the rollout warps what it recycles as the session does: by the move into each frame, before the step
    with torch.no_grad():
        frames = student_rollout(g, clip, gen=torch.Generator().manual_seed(1))
        gen, cache, latent, expected = torch.Generator().manual_seed(1), g.new_cache(2), clip.first, []
        for i in range(clip.latents.shape[1] - 1):
            noise = torch.randn(latent.shape, generator=gen)
            recycled = warp_latent(latent, clip.warps[:, i + 1, 0], clip.warps[:, i + 1, 1])
            latent = step_frame(g, cache, recycled, clip.frame_cond[:, i + 1], clip.token_cond[:, i + 1], noise)
            expected.append(latent)
    torch.testing.assert_close(frames, torch.stack(expected, 1))
    # with gradients, the one-pass recompute gives the chain's frames
    chain = student_rollout(g, clip, gen=torch.Generator().manual_seed(1), recompute=False)
    parallel = student_rollout(g, clip, gen=torch.Generator().manual_seed(1), recompute=True)
    torch.testing.assert_close(parallel, chain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(parallel.detach(), frames, atol=1e-5, rtol=1e-4)


def test_the_discriminator_judges_a_warping_world_against_warped_previous_frames():
    from worldsim.training.adversarial import score

    g, clip = warping_generator(), warped_clip()
    disc = Discriminator(g)
    t, noise = torch.full((2, 5), 0.5), torch.randn_like(clip.targets)
    warped = score(disc, clip.targets, clip.first, clip, t, noise)
    torch.testing.assert_close(warped, disc(clip.targets, clip.recycled_seen_by(g), *clip.conditions, t, noise))
    assert not torch.allclose(warped, disc(clip.targets, clip.recycled, *clip.conditions, t, noise))
    # a clip without the warps its world needs, or with warps for a world that turns, is refused
    with pytest.raises(ValueError, match="warped by the move .* the clip has no warps"):
        score(disc, clip.targets, clip.first, Clip(clip.latents, clip.frame_cond, clip.token_cond), t, noise)
    with pytest.raises(ValueError, match="does not warp its recycled frame, but the clip carries warps"):
        student_rollout(tiny_generator(), clip)


def test_warps_stay_exact_when_a_clip_moves_to_bf16():
    clip = warped_clip().to("cpu", torch.bfloat16)
    assert clip.latents.dtype == torch.bfloat16 and clip.warps.dtype == torch.float64


def test_still_clips_of_a_warping_world_are_warped_by_no_move():
    from worldsim.training.unroll import with_still_clips

    clip = warped_clip(batch=2)
    out = with_still_clips(clip, 1.0, torch.zeros(3), torch.zeros(2, 2, 3))
    torch.testing.assert_close(out.warps[:, :, 0], torch.arange(6.0, dtype=torch.float64).expand(2, 6, 6))
    assert (out.warps[:, :, 1] == 1).all()
    torch.testing.assert_close(out.recycled_seen_by(warping_generator()), out.recycled)


def test_the_action_judge_asks_the_generated_moves_to_read_as_the_real_ones_and_stays_frozen():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(**VAE_PRESETS["tiny"])).requires_grad_(False)
    judge = InverseDynamics(IDMConfig(image_size=(16, 24), channels=(8, 8), feature_dim=8)).requires_grad_(False)
    for module, seed in ((vae, 1), (judge, 2)):  # frames that differ and a judge with opinions on them
        perturb_(module, scale=1.0, seed=seed)
    clip = tiny_clip(batch=2, frames=5)
    # the real continuation is the cross-entropy's minimum (the entropy of the judge's own reading of it) ...
    real_loss, real_stats = action_following_loss(judge, vae, clip.targets, clip)
    assert real_stats["action_agreement"] == 1.0
    fake = (clip.targets + torch.randn_like(clip.targets)).requires_grad_(True)
    fake_loss, fake_stats = action_following_loss(judge, vae, fake, clip)
    assert fake_loss > real_loss and fake_stats["action_agreement"] < 1.0
    # ... and its gradient reaches the generated frames, not the frozen judge
    fake_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.parameters())


def test_a_world_that_turns_in_pixels_is_trained_on_recycled_frames_turned_through_the_clips_vae():
    from worldsim.models.generator import turn_in_pixels
    from worldsim.rollout import step_frame
    from worldsim.testing import SpaceToDepth
    from worldsim.training.unroll import with_still_clips

    torch.manual_seed(0)
    g = Generator(GeneratorConfig(latent_channels=48, latent_size=(4, 8), patch=2, frame_cond_dim=3,
                                  token_cond_channels=2, residual=True, yaw_reprojection=(2, 5.0, 90.0),
                                  turn_in_pixels=True, **GENERATOR_PRESETS["tiny"]))
    perturb_(g, scale=0.1)
    gen, vae = torch.Generator().manual_seed(0), SpaceToDepth()
    latents = torch.rand(2, 5, 48, 4, 8, generator=gen) * 2 - 1
    frame_cond = torch.zeros(2, 5, 3)
    frame_cond[..., 2] = torch.tensor([0.0, 0.3, 0.0, -0.2, 0.1])  # turns of a fraction of a latent column
    clip = Clip(latents, frame_cond, torch.randn(2, 5, 2, 2, 4, generator=gen), vae=vae)
    expected = turn_in_pixels(clip.recycled, frame_cond[:, 1:, 2] * 5.0, 90.0, vae)
    torch.testing.assert_close(clip.recycled_seen_by(g), expected)
    assert clip.to("cpu").vae is vae and with_still_clips(clip, 1.0, torch.zeros(3), torch.zeros(2, 2, 4)).vae is vae
    # the rollout turns what it recycles through the clip's VAE, as the session turns through its own
    with torch.no_grad():
        frames = student_rollout(g, clip, gen=torch.Generator().manual_seed(1))
        gen, cache, latent, chain = torch.Generator().manual_seed(1), g.new_cache(2), clip.first, []
        for i in range(4):
            latent = step_frame(g, cache, latent, frame_cond[:, i + 1], clip.token_cond[:, i + 1],
                                torch.randn(latent.shape, generator=gen), vae=vae)
            chain.append(latent)
    torch.testing.assert_close(frames, torch.stack(chain, 1))
    parallel = student_rollout(g, clip, gen=torch.Generator().manual_seed(1), recompute=True)  # the one-pass recompute
    torch.testing.assert_close(parallel.detach(), frames, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="turned in pixels .* needs the VAE"):
        Clip(latents, frame_cond, clip.token_cond).recycled_seen_by(g)
