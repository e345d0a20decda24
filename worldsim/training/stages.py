"""The five AAPT stages as runnable units: each builds its roles from the previous stage's checkpoint, defines one
optimisation step and hands it to the shared Trainer. Output: `OUT/<stage>/checkpoint` in the runtime's format."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worldsim.checkpoint import CheckpointConfig, SamplingConfig, load_checkpoint, provenance
from worldsim.conditioning.scheme import Scheme, load_scheme
from worldsim.config import ConfigError, from_dict, to_dict
from worldsim.eval.idm import InverseDynamics, load_idm
from worldsim.input.state import ControllerState
from worldsim.models.generator import GENERATOR_PRESETS, Generator, GeneratorConfig
from worldsim.models.vae import VAE, VAE_PRESETS, VAEConfig
from worldsim.training import distributed
from worldsim.training.adversarial import (
    Discriminator,
    action_following_loss,
    discriminator_step_loss,
    generator_step_loss,
    student_rollout,
    teacher_forced_fakes,
)
from worldsim.training.clips import Clip
from worldsim.training.consistency import consistency_loss
from worldsim.training.diffusion import diffusion_loss
from worldsim.training.recipe import STAGES, Recipe
from worldsim.training.samples import write_rollout_sample, write_vae_sample
from worldsim.training.trainer import Trainer, TrainingError, set_threads
from worldsim.training.unroll import unroll_loss, with_still_clips
from worldsim.world.memory import MemoryConfig
from worldsim.world.movement import MOVE_CONTROLS

PREVIOUS = {"diffusion": "vae", "consistency": "diffusion", "unroll": "consistency", "adversarial": "unroll",
            "long": "adversarial"}


@dataclass
class StageContext:
    recipe: Recipe
    out: Path
    resume: bool
    device: torch.device
    scheme: Scheme
    data: object  # worldsim.training.data.TrainingData
    rng: torch.Generator
    deadline: float | None = None  # time.monotonic() at which the running stage stops (a share of --time-budget)

    def autocast(self):
        if not self.recipe.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def model_configs(recipe: Recipe, scheme: Scheme, anchored: bool = True) -> tuple[GeneratorConfig, VAEConfig]:
    """The recipe's models. `anchored`: the generator takes the keyframe memory's anchor if the recipe has one
    (the VAE stage's placeholder generator does not: there is no memory before there are latents)."""
    m = recipe.model
    for kind, name, presets in (("generator", m.generator, GENERATOR_PRESETS), ("vae", m.vae, VAE_PRESETS)):
        if name not in presets:
            raise ConfigError(None, f"model.{kind}", "unknown preset", name, ", ".join(presets))
    vae = from_dict(VAEConfig, {**VAE_PRESETS[m.vae], **m.vae_overrides}, path="model.vae_overrides")
    missing = [c for c in MOVE_CONTROLS if c not in scheme.control_names]
    if recipe.world.movement and missing:
        raise ConfigError(None, "world.movement", f"the learned movement needs the controls {list(MOVE_CONTROLS)}; "
                          f"the '{scheme.name}' scheme lacks {missing}", True, "false, or a camera scheme")
    if scheme.encoding.pose_channels and not recipe.world.movement:
        raise ConfigError(None, "world.movement", f"the '{scheme.name}' scheme conditions on the player's pose, "
                          "which the learned movement tracks at play time", False, "true")
    reprojection = scheme.encoding.yaw_reprojection() if m.yaw_reprojection else ()
    if reprojection is None:
        raise ConfigError(None, "model.yaw_reprojection", f"the '{scheme.name}' scheme has no calibrated yaw to "
                          "reproject by", True, "false, or a camera scheme")
    if m.turn_in_pixels and not m.yaw_reprojection:
        raise ConfigError(None, "model.turn_in_pixels", "it says how the recycled frame is turned by the commanded "
                          "yaw, and model.yaw_reprojection is off", True, "false, or model.yaw_reprojection true")
    if m.warp and m.yaw_reprojection:
        raise ConfigError(None, "model.yaw_reprojection", "model.warp turns the recycled frame as well as moving it",
                          True, "false with model.warp")
    patch = {**GENERATOR_PRESETS[m.generator], **m.generator_overrides}.get("patch", GeneratorConfig.patch)
    anchor = recipe.world.memory.anchor_channels(vae.latent_channels, patch) if anchored else 0
    generator = from_dict(GeneratorConfig, {
        **GENERATOR_PRESETS[m.generator], **m.generator_overrides,
        "latent_channels": vae.latent_channels, "latent_size": list(vae.latent_size),
        "frame_cond_dim": scheme.encoding.frame_dim, "token_cond_channels": scheme.encoding.token_channels + anchor,
        "memory_channels": recipe.world.memory.attended_channels(vae.latent_channels, patch) if anchored else 0,
        "yaw_reprojection": list(reprojection), "turn_in_pixels": m.turn_in_pixels,
        "warp_fov": warp_fov(recipe, scheme),
    }, path="model.generator_overrides")
    return generator, vae


def warp_fov(recipe: Recipe, scheme: Scheme) -> float:
    """The camera fov the recycled frame is warped with (the scheme's calibrated one), or 0 without `model.warp`."""
    if not recipe.model.warp:
        return 0.0
    camera = scheme.encoding.yaw_reprojection()
    if camera is None:
        raise ConfigError(None, "model.warp", f"the '{scheme.name}' scheme has no calibrated camera to warp with",
                          True, "false, or a camera scheme")
    if not (recipe.world.movement and recipe.world.walls):
        raise ConfigError(None, "model.warp", "the warp of the recycled frame takes its depth from the map's walls, "
                          "which the learned movement holds", True, "false, or world.movement and world.walls true")
    return camera[2]


def _reprojected_as_recipe(ctx: StageContext, generator: Generator) -> Generator:
    """The generator to continue, shown its recycled frame as the recipe says: a world that turned it by the
    commanded yaw is continued warped by the move (the warp turns it as well; the weights are the same, the input
    moves), or turned in pixels instead of latent columns, and a world trained warped is not continued without
    the warp."""
    fov, g = warp_fov(ctx.recipe, ctx.scheme), generator.config
    if g.yaw_reprojection and not fov:  # latent columns or pixels: the same weights, the input turned either way
        generator.config = g = replace(g, turn_in_pixels=ctx.recipe.model.turn_in_pixels)
    if bool(fov) == bool(g.warp_fov):
        return generator
    if g.warp_fov:
        raise ConfigError(None, "model.warp", "the generator to continue was trained on recycled frames warped by "
                          "the move", False, "true (what it was trained with)")
    generator.config = replace(g, yaw_reprojection=(), turn_in_pixels=False, warp_fov=fov)  # they shape no weights
    return generator


def use_data(ctx: StageContext, vae: VAE, generator: Generator) -> Generator:
    """Point the data at this VAE's latents and learn the world's state (movement, keyframe memory) from them;
    returns the generator, given the memory's anchor (zero input weights, or an attended view with zero values) if
    it came from a world without one."""
    encoding = ctx.scheme.encoding
    generator = _reprojected_as_recipe(ctx, generator)
    ctx.data.use_vae(vae, generator.config.grid)
    ctx.data.use_world(ctx.recipe.world, generator.config.patch, generator.config.warp_fov)
    memory = ctx.recipe.world.memory
    g = generator.config
    wanted = encoding.token_channels + memory.anchor_channels(g.latent_channels, g.patch)
    attended = memory.attended_channels(g.latent_channels, g.patch)
    have = g.token_cond_channels
    if (have, g.memory_channels) == (wanted, attended):
        return generator
    # inputs are laid out as [relative motion | absolute camera | memory anchor]: a world trained with a prefix of
    # them (the camera scheme's relative maps, or the whole scheme) is given the rest with zero weights; a world
    # that takes the anchor as input cannot be continued as one that attends to it, or the other way round
    if have == wanted:
        raise ConfigError(None, "world.memory.attend", f"the generator to continue takes the keyframe "
                          f"{'as extra attended tokens' if g.memory_channels else 'as input channels'}, this recipe "
                          f"{'attends to it' if attended else 'gives it as input'}", memory.attend,
                          str(bool(g.memory_channels)).lower() + " (what it was trained with)")
    prefix = have in (encoding.token_channels - encoding.pose_channels, encoding.token_channels) and have < wanted
    if not prefix or g.memory_channels:
        raise ConfigError(None, "world.memory", f"the generator to continue takes {have} token-condition channels "
                          f"({g.memory_channels} of them attended), which are not a prefix of the {wanted} of this "
                          f"scheme and memory ({attended} attended)", to_dict(memory),
                          "the scheme and memory settings it was trained with, or ones that add to them")
    return generator.with_token_channels(wanted, attended)


def checkpoint_config(ctx: StageContext, stage: str, generator: GeneratorConfig, vae: VAEConfig,
                      step: int, sampling: SamplingConfig | None = None) -> CheckpointConfig:
    built = ctx.data.memory is not None  # the VAE stage has no memory yet: there are no latents to choose from
    return CheckpointConfig(
        generator=generator, vae=vae, encoding=ctx.scheme.encoding_dict(), scheme=ctx.scheme.name,
        sampling=sampling or SamplingConfig(), fps=ctx.data.fps,
        memory=ctx.recipe.world.memory if built else MemoryConfig(), stage=stage,
        provenance=provenance(recipe=ctx.recipe.name, stage=stage, step=step, data=ctx.data.describe(),
                              recipe_config=to_dict(ctx.recipe)))


def previous_checkpoint(ctx: StageContext, stage: str):
    path = ctx.out / PREVIOUS[stage] / "checkpoint"
    if not path.exists():
        raise TrainingError(f"stage '{stage}' starts from the '{PREVIOUS[stage]}' stage, but {path} does not exist; "
                            f"run `worldsim train --stage {PREVIOUS[stage]}` first (or --stage all)")
    return load_checkpoint(path)


def _optimizer_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                    clip: float = 1.0) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(module)
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()
    return float(norm)


def _param_groups(generator: Generator, lr: float, input_lr: float) -> list[dict]:
    """The generator's parameters with its inputs at their own rate (`input_lr`; 0: one group at `lr`, as runs saved
    before the option resume with): the input projection, and an attended keyframe view's embedding and keys and
    values, the parts a world given a memory gets new."""
    if not input_lr:
        return [{"params": list(generator.parameters())}]
    inputs = list(generator.patch_in.parameters())
    if generator.memory_in is not None:
        inputs += list(generator.memory_in.parameters())
        inputs += [p for block in generator.blocks for p in block.attn.memory_kv.parameters()]
    rest = [p for p in generator.parameters() if all(p is not q for q in inputs)]
    return [{"params": rest}, {"params": inputs, "lr": input_lr}]


def _lr_lambda(warmup: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


# ---- stage 0: VAE ---------------------------------------------------------------------------------------------


def run_vae(ctx: StageContext) -> Path:
    cfg = ctx.recipe.vae
    gen_config, vae_config = model_configs(ctx.recipe, ctx.scheme, anchored=False)
    torch.manual_seed(ctx.recipe.seed)
    vae = VAE(vae_config).to(ctx.device)
    if cfg.init:  # e.g. a shipped world's VAE trained on the same data: the generator stages start sooner
        init = load_checkpoint(cfg.init)
        if init.config.vae != vae_config:
            raise ConfigError(None, "vae.init", "its VAE is not the recipe's model.vae", cfg.init,
                              "a checkpoint whose VAE config equals the recipe's model.vae preset and overrides")
        vae.load_state_dict(init.vae.state_dict())
    generator = Generator(gen_config)  # untrained; saved so the checkpoint is complete
    distributed.broadcast_parameters(vae)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    val = ctx.data.val_frames(cfg.val_frames).to(ctx.device)

    def step(i: int) -> dict[str, float]:
        frames = ctx.data.frames(cfg.batch, ctx.rng).to(ctx.device)
        with ctx.autocast():
            mean, logvar = vae.encode_distribution(frames)
            z = mean + torch.randn(mean.shape, generator=ctx.rng, device=mean.device) * (0.5 * logvar).exp()
            recon = vae.decoder(z)
        rec = F.mse_loss(recon.float(), frames) + F.l1_loss(recon.float(), frames)
        kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
        loss = rec + cfg.kl_weight * kl
        norm = _optimizer_step(vae, optimizer, loss)
        return {"loss": loss.item(), "recon": rec.item(), "kl": kl.item(), "grad_norm": norm}

    def finish_stats() -> None:
        """Per-channel latent statistics so the generator sees unit-variance latents."""
        with torch.no_grad(), ctx.autocast():
            z = torch.cat([vae.encoder(val[i: i + 64])[0].float() for i in range(0, len(val), 64)])
        vae.latent_mean.copy_(z.mean((0, 2, 3)))
        vae.latent_std.copy_(z.std((0, 2, 3)).clamp_min(1e-4))

    def config(step_: int) -> CheckpointConfig:
        return checkpoint_config(ctx, "vae", gen_config, vae_config, step_)

    def sample(step_: int, folder: Path) -> dict:
        finish_stats()
        return write_vae_sample(vae, val, folder / f"vae_{step_:07d}.png", ctx.autocast)

    trainer = Trainer("vae", ctx.out / "vae", cfg.steps, cfg.log_every, cfg.save_every, cfg.sample_every,
                      ctx.resume, {"vae": vae, "generator": generator}, {"vae": optimizer}, config, generator, vae,
                      ctx.data.start_frames(), ctx.rng, sample,
                      before_save=finish_stats,  # stats must match the weights they are saved with
                      deadline=ctx.deadline)
    return trainer.run(step)


# ---- stages 1 and 2: teacher-forced diffusion and consistency distillation --------------------------------------


def _sample_fn(ctx: StageContext, generator: Generator, vae: VAE, steps: int, shift: float, frames: int):
    def sample(step_: int, folder: Path) -> dict:
        clip = ctx.data.val_clip(frames).to(ctx.device)
        return write_rollout_sample(generator, vae, clip, folder / f"rollout_{step_:07d}.mp4", steps, shift,
                                    ctx.autocast, fps=ctx.data.fps)
    return sample


def run_diffusion(ctx: StageContext) -> Path:
    cfg = ctx.recipe.diffusion
    base = previous_checkpoint(ctx, "diffusion")
    vae = base.vae.to(ctx.device).eval()
    gen_config, _ = model_configs(ctx.recipe, ctx.scheme)
    torch.manual_seed(ctx.recipe.seed)
    generator = Generator(gen_config).to(ctx.device)
    if cfg.init:  # e.g. a bidirectional pre-trained model: the same weights become block-causal by our masks
        init = load_checkpoint(cfg.init)
        generator.load_state_dict(use_data(ctx, vae, init.generator.to(ctx.device)).state_dict())
    else:
        generator = use_data(ctx, vae, generator)
    distributed.broadcast_parameters(generator)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.warmup))
    sampling = SamplingConfig(steps=32, shift=cfg.shift)

    def step(i: int) -> dict[str, float]:
        clip = ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device)
        with ctx.autocast():
            loss, stats = diffusion_loss(generator, clip, cfg.shift, cfg.recycle_noise, ctx.rng)
        stats["grad_norm"] = _optimizer_step(generator, optimizer, loss)
        schedule.step()
        return stats

    config = lambda s: checkpoint_config(ctx, "diffusion", gen_config, vae.config, s, sampling)  # noqa: E731
    trainer = Trainer("diffusion", ctx.out / "diffusion", cfg.steps, cfg.log_every, cfg.save_every,
                      cfg.sample_every, ctx.resume, {"generator": generator}, {"generator": optimizer}, config,
                      generator, vae, ctx.data.start_frames(), ctx.rng,
                      _sample_fn(ctx, generator, vae, 8, cfg.shift, cfg.sample_frames), deadline=ctx.deadline,
                      world=ctx.data.world_sets())
    if trainer.step:
        schedule.last_epoch = trainer.step
    return trainer.run(step)


def run_consistency(ctx: StageContext) -> Path:
    cfg = ctx.recipe.consistency
    shift = ctx.recipe.diffusion.shift
    base = previous_checkpoint(ctx, "consistency")
    vae = base.vae.to(ctx.device).eval()
    teacher = use_data(ctx, vae, base.generator.to(ctx.device)).eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(i: int) -> dict[str, float]:
        clip = ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device)
        with ctx.autocast():
            loss, stats = consistency_loss(student, teacher, clip, cfg.teacher_steps, shift, ctx.rng)
        stats["grad_norm"] = _optimizer_step(student, optimizer, loss)
        return stats

    config = lambda s: checkpoint_config(ctx, "consistency", student.config, vae.config, s)  # noqa: E731
    trainer = Trainer("consistency", ctx.out / "consistency", cfg.steps, cfg.log_every, cfg.save_every,
                      cfg.sample_every, ctx.resume, {"generator": student}, {"generator": optimizer}, config,
                      student, vae, ctx.data.start_frames(), ctx.rng,
                      _sample_fn(ctx, student, vae, 1, 1.0, cfg.sample_frames), deadline=ctx.deadline,
                      world=ctx.data.world_sets())
    return trainer.run(step)


def _play_settings(base, init: str | None, context_noise: float) -> SamplingConfig:
    """How the stage's checkpoint plays: a fine-tuned finished world (`init`) as it played before (its noise held
    while standing, its moves warped), at the stage's context noise; a world trained in stages from defaults."""
    return replace(base.config.sampling if init else SamplingConfig(), context_noise=context_noise)


def run_unroll(ctx: StageContext) -> Path:
    cfg = ctx.recipe.unroll
    base = load_checkpoint(cfg.init) if cfg.init else previous_checkpoint(ctx, "unroll")
    vae = base.vae.to(ctx.device).eval()
    generator = use_data(ctx, vae, base.generator.to(ctx.device)).train().requires_grad_(True)
    optimizer = torch.optim.AdamW(_param_groups(generator, cfg.lr, cfg.input_lr), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    stage_name = base.config.stage if cfg.steps == 0 else "unroll"  # a pass-through keeps what it passes on
    still = _still_clips(ctx, generator, cfg.still_fraction)

    def step(i: int) -> dict[str, float]:
        clip = still(ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device))
        with ctx.autocast():
            loss, stats = unroll_loss(generator, clip, cfg.context_noise, cfg.detach_every, ctx.rng,
                                      ctx.recipe.world.memory.pull, ctx.recipe.world.memory.pull_scale)
        stats["grad_norm"] = _optimizer_step(generator, optimizer, loss)
        return stats

    sampling = _play_settings(base, cfg.init, cfg.play_context_noise if cfg.steps else
                              base.config.sampling.context_noise)
    config = lambda s: checkpoint_config(ctx, stage_name, generator.config, vae.config, s, sampling)  # noqa: E731
    trainer = Trainer("unroll", ctx.out / "unroll", cfg.steps, cfg.log_every, cfg.save_every, cfg.sample_every,
                      ctx.resume, {"generator": generator}, {"generator": optimizer}, config, generator, vae,
                      ctx.data.start_frames(), ctx.rng, _sample_fn(ctx, generator, vae, 1, 1.0, cfg.sample_frames),
                      deadline=ctx.deadline, world=ctx.data.world_sets())
    return trainer.run(step)


# ---- stages 3 and 4: adversarial post-training (student forcing) and long-video training -------------------------


def _adversarial_roles(ctx: StageContext, stage: str, cfg):
    init = cfg.init if stage == "adversarial" else None  # long-video training continues its own run
    base = load_checkpoint(init) if init else previous_checkpoint(ctx, stage)
    vae = base.vae.to(ctx.device).eval().requires_grad_(False)  # it only decodes (the action judge's frames)
    generator = use_data(ctx, vae, base.generator.to(ctx.device)).train().requires_grad_(True)
    if stage == "adversarial":  # D starts from the stage-1 (diffusion) weights, as in AAPT
        diffusion = ctx.out / "diffusion" / "checkpoint"
        # fine-tuning a finished world (`init`) without its diffusion stage: D starts from the generator itself
        backbone = load_checkpoint(diffusion).generator if diffusion.exists() or not init else \
            copy.deepcopy(generator)
        # D sees the previous frames as the generator does (a turning world continued warped: warped, not turned)
        discriminator = Discriminator(_reprojected_as_recipe(ctx, backbone)).to(ctx.device)
    else:  # long-video training continues the stage-3 discriminator
        discriminator = Discriminator(_reprojected_as_recipe(ctx, copy.deepcopy(base.generator))).to(ctx.device)
        weights = base.extra.get("discriminator")
        if weights is None:
            raise TrainingError(f"{base.path} has no discriminator.safetensors to continue from")
        discriminator.load_state_dict(weights)
    torch.manual_seed(ctx.recipe.seed)
    distributed.broadcast_parameters(discriminator)
    opt_g = torch.optim.RMSprop(_param_groups(generator, cfg.lr_generator, cfg.input_lr), lr=cfg.lr_generator,
                                alpha=cfg.rmsprop_alpha)
    opt_d = torch.optim.RMSprop(discriminator.parameters(), lr=cfg.lr_discriminator, alpha=cfg.rmsprop_alpha)
    return vae, generator, discriminator, opt_g, opt_d, base


def _context_levels(ctx: StageContext, cfg) -> torch.Tensor | None:
    """Per-clip context noise levels, uniform in [0, cfg.context_noise]; None when off."""
    if cfg.context_noise <= 0:
        return None
    return torch.rand(cfg.batch, generator=ctx.rng, device=ctx.device) * cfg.context_noise


def _still_clips(ctx: StageContext, generator: Generator, fraction: float):
    """clip -> clip with a random `fraction` of it replaced by still clips (the first frame under the no-op)."""
    if fraction <= 0:
        return lambda clip: clip
    no_op = ctx.scheme.action(ControllerState())
    no_op_frame, no_op_tokens = (torch.from_numpy(np.asarray(x, np.float32)).to(ctx.device)
                                 for x in ctx.scheme.encode_actions(no_op, generator.config.grid))
    pose_channels = ctx.scheme.encoding.pose_channels
    return lambda clip: with_still_clips(clip, fraction, no_op_frame, no_op_tokens, ctx.rng, pose_channels)


def _action_judge(ctx: StageContext, cfg) -> InverseDynamics | None:
    """The frozen inverse-dynamics judge of the action-following term, or None when the term is off."""
    if cfg.action_weight <= 0:
        return None
    judge = load_idm(cfg.action_judge)
    judge.check_encoding(ctx.scheme.encoding_dict(), f"the '{ctx.scheme.name}' scheme")
    return judge.model.to(ctx.device).eval().requires_grad_(False)


def _adversarial_update(ctx: StageContext, cfg, generator, discriminator, opt_g, opt_d, fake: torch.Tensor,
                        real: Clip, fake_clip: Clip, regression_weight: float,
                        judge: tuple[InverseDynamics, VAE] | None = None) -> dict[str, float]:
    """One generator update, then `discriminator_steps` discriminator updates on the same fakes.
    `regression_weight` > 0 and `judge` (the action-following term's IDM and the VAE that decodes for it) only
    where `fake_clip.targets` is the real continuation of the fakes."""
    with ctx.autocast():
        g_loss, stats = generator_step_loss(discriminator, fake, real, fake_clip, regression_weight, ctx.rng,
                                            cfg.regression_frames)
        if judge is not None:
            action, action_stats = action_following_loss(*judge, fake, fake_clip)
            g_loss = g_loss + cfg.action_weight * action
            stats.update(action_stats)
    discriminator.requires_grad_(False)
    stats["g_grad_norm"] = _optimizer_step(generator, opt_g, g_loss)
    discriminator.requires_grad_(True)
    for _ in range(cfg.discriminator_steps):
        with ctx.autocast():
            d_loss, d_stats = discriminator_step_loss(discriminator, fake, real, fake_clip, cfg.r1_weight,
                                                      cfg.r1_sigma, ctx.rng)
        d_stats["d_grad_norm"] = _optimizer_step(discriminator, opt_d, d_loss)
    return {**stats, **d_stats}


def run_adversarial(ctx: StageContext) -> Path:
    cfg = ctx.recipe.adversarial
    vae, generator, discriminator, opt_g, opt_d, base = _adversarial_roles(ctx, "adversarial", cfg)
    still = _still_clips(ctx, generator, cfg.still_fraction)
    judge = _action_judge(ctx, cfg)

    def step(i: int) -> dict[str, float]:
        clip = still(ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device))
        with ctx.autocast():
            if cfg.forcing == "student":
                fake = student_rollout(generator, clip, gen=ctx.rng, context_level=_context_levels(ctx, cfg),
                                       detach_every=cfg.detach_every, pull=ctx.recipe.world.memory.pull,
                                       pull_scale=ctx.recipe.world.memory.pull_scale)
            else:
                fake = teacher_forced_fakes(generator, clip, ctx.rng)
        return _adversarial_update(ctx, cfg, generator, discriminator, opt_g, opt_d, fake, clip, clip,
                                   cfg.regression_weight, None if judge is None else (judge, vae))

    sampling = _play_settings(base, cfg.init, cfg.play_context_noise)
    config = lambda s: checkpoint_config(ctx, f"adversarial-{cfg.forcing}", generator.config, vae.config,  # noqa: E731
                                         s, sampling)
    trainer = Trainer("adversarial", ctx.out / "adversarial", cfg.steps, cfg.log_every, cfg.save_every,
                      cfg.sample_every, ctx.resume, {"generator": generator, "discriminator": discriminator},
                      {"generator": opt_g, "discriminator": opt_d}, config, generator, vae,
                      ctx.data.start_frames(), ctx.rng, _sample_fn(ctx, generator, vae, 1, 1.0, cfg.sample_frames),
                      deadline=ctx.deadline, world=ctx.data.world_sets())
    return trainer.run(step)


def run_long(ctx: StageContext) -> Path:
    """Long rollouts one segment at a time: the next segment reuses the detached cache of the previous one and its
    loss is back-propagated before going on; extended segments get condition sequences from other real clips."""
    cfg = ctx.recipe.long
    vae, generator, discriminator, opt_g, opt_d, _ = _adversarial_roles(ctx, "long", cfg)

    def step(i: int) -> dict[str, float]:
        first_clip = ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device)
        cache = generator.new_cache(cfg.batch, ctx.device, differentiable=True)
        latent = first_clip.first
        tail: Clip | None = None  # the previous segment's last `overlap` frames (detached), scored again
        segment_clip = first_clip  # the segment so far: where an extension's moves start
        totals: dict[str, float] = {}
        for segment in range(cfg.segments):
            # conditions: the first clip's, then freshly sampled real condition sequences for the extension (their
            # moves made from where the rollout is, for a world that warps its recycled frame by them)
            conds = first_clip if segment == 0 else ctx.data.continued(
                ctx.data.clips(cfg.batch, cfg.clip_frames, ctx.rng).to(ctx.device), segment_clip)
            segment_clip = Clip(torch.cat([latent.detach()[:, None], conds.latents[:, 1:]], 1), conds.frame_cond,
                                conds.token_cond, warps=conds.warps, poses=conds.poses, vae=conds.vae)
            cache.detach()  # back-propagation stops at the segment boundary; the cache's content carries on
            with ctx.autocast():
                fake = student_rollout(generator, segment_clip, cache=cache, gen=ctx.rng,
                                       context_level=_context_levels(ctx, cfg), detach_every=cfg.detach_every)
            scored, scored_clip = fake, segment_clip
            if tail is not None:
                scored = torch.cat([tail.targets, fake], 1)
                scored_clip = Clip(torch.cat([tail.latents, fake.detach()], 1),
                                   torch.cat([tail.frame_cond, segment_clip.frame_cond[:, 1:]], 1),
                                   torch.cat([tail.token_cond, segment_clip.token_cond[:, 1:]], 1),
                                   warps=None if tail.warps is None else
                                   torch.cat([tail.warps, segment_clip.warps[:, 1:]], 1), vae=conds.vae)
            real = ctx.data.clips(cfg.batch, scored.shape[1] + 1, ctx.rng).to(ctx.device)  # short real clips
            stats = _adversarial_update(ctx, cfg, generator, discriminator, opt_g, opt_d, scored, real, scored_clip,
                                        cfg.regression_weight if segment == 0 else 0.0)
            if cfg.overlap:
                keep = min(cfg.overlap, fake.shape[1] - 1)
                full = Clip(torch.cat([segment_clip.latents[:, :1], fake.detach()], 1), segment_clip.frame_cond,
                            segment_clip.token_cond, warps=segment_clip.warps, vae=conds.vae)
                tail = Clip(full.latents[:, -keep - 1:], full.frame_cond[:, -keep - 1:], full.token_cond[:, -keep - 1:],
                            warps=None if full.warps is None else full.warps[:, -keep - 1:], vae=conds.vae)
            latent = fake[:, -1]
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.segments
        return totals

    sampling = SamplingConfig(context_noise=cfg.play_context_noise)
    config = lambda s: checkpoint_config(ctx, "long", generator.config, vae.config, s, sampling)  # noqa: E731
    trainer = Trainer("long", ctx.out / "long", cfg.steps, cfg.log_every, cfg.save_every, cfg.sample_every,
                      ctx.resume, {"generator": generator, "discriminator": discriminator},
                      {"generator": opt_g, "discriminator": opt_d}, config, generator, vae,
                      ctx.data.start_frames(), ctx.rng, _sample_fn(ctx, generator, vae, 1, 1.0, cfg.sample_frames),
                      deadline=ctx.deadline, world=ctx.data.world_sets())
    return trainer.run(step)


RUNNERS = {"vae": run_vae, "diffusion": run_diffusion, "consistency": run_consistency, "unroll": run_unroll,
           "adversarial": run_adversarial, "long": run_long}


class TimeBudget:
    """`seconds` of training shared by the stages that run, by the recipe's `budget` fractions (one stage alone
    gets all of it). Counted from now, less the training time the stages' checkpoints already hold (their
    `elapsed_s`), so a resumed run continues with the time left. Each stage's deadline is its share of what is left
    when it starts, counting the time it and the stages after it already spent (a resumed stage has used part of
    its share, and gets only the rest): a stage that ends before its deadline (its steps done) leaves the rest to
    the stages after it."""

    def __init__(self, seconds: float, recipe: Recipe, stages: tuple[str, ...], out: Path):
        self.fractions = {name: getattr(recipe.budget, name) if len(stages) > 1 else 1.0 for name in stages}
        if sum(self.fractions.values()) <= 0:
            raise ConfigError(None, "budget", "every stage to run has a time fraction of 0",
                              allowed="a positive fraction for at least one of " + ", ".join(stages))
        self.elapsed = {name: _elapsed(out / name / "checkpoint") for name in stages}
        self.spent = sum(self.elapsed.values())
        self.end = time.monotonic() + seconds - self.spent

    def deadline(self, stage: str) -> float:
        names = list(self.fractions)
        later = names[names.index(stage):]
        fraction = sum(self.fractions[name] for name in later)
        now = time.monotonic()
        left = max(0.0, self.end - now)
        pool = left + sum(self.elapsed[name] for name in later)
        share = pool * self.fractions[stage] / fraction - self.elapsed[stage] if fraction > 0 else 0.0
        return now + min(left, max(0.0, share))


def _elapsed(checkpoint: Path) -> float:
    """Training seconds a stage's checkpoint records (0 when there is none, or it cannot say)."""
    try:
        return float(json.loads((checkpoint / "trainer.json").read_text())["elapsed_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def train(recipe: Recipe, stage: str, out: Path, resume: bool = False, device: str = "cpu",
          data_factory: Callable | None = None, time_budget: float | None = None) -> list[Path]:
    """Run one stage or all of them in order; returns the checkpoint directories written. `time_budget` (seconds)
    stops the stages early, shared between them as `TimeBudget` says; the recipe's steps stay the upper bound."""
    from worldsim.training.data import TrainingData

    set_threads(recipe.threads)
    dev = torch.device(device)
    rank, _ = distributed.init(dev)
    scheme = load_scheme(recipe.data.scheme)
    _, vae_config = model_configs(recipe, scheme)
    data = (data_factory or TrainingData.from_recipe)(recipe, scheme, vae_config.image_size)
    rng = torch.Generator(dev).manual_seed(recipe.seed + rank)
    np.random.seed(recipe.seed + rank)
    ctx = StageContext(recipe, Path(out), resume, dev, scheme, data, rng)
    stages = STAGES if stage == "all" else (stage,)
    budget = TimeBudget(time_budget, recipe, stages, Path(out)) if time_budget is not None else None
    if budget is not None and distributed.is_main():
        print(f"time budget: {time_budget:.0f} s, {budget.spent:.0f} s of it already spent in "
              f"{Path(out)}", flush=True)
    done = []
    for name in stages:
        ctx.deadline = budget.deadline(name) if budget is not None else None
        done.append(RUNNERS[name](ctx))
    distributed.shutdown()
    return done
