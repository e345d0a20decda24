"""Random-weight checkpoints of any preset, for tests and speed benchmarks (never presented as a trained world)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldsim.checkpoint import CheckpointConfig, SamplingConfig, build_models, provenance, save_checkpoint
from worldsim.conditioning.scheme import load_scheme
from worldsim.config import from_dict, replace, to_dict
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


class SpaceToDepth(torch.nn.Module):
    """A lossless stand-in VAE: each latent cell holds its 4x4 pixels (decode and encode are exact inverses)."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(latents, 4)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_unshuffle(frames, 4)


def random_checkpoint(path: str | Path, generator: str = "tiny", vae: str = "tiny", scheme: str = "camera",
                      seed: int = 0, start_frames: int = 2, **generator_overrides) -> Path:
    torch.manual_seed(seed)
    config = random_config(generator, vae, scheme, **generator_overrides)
    g, v = build_models(config)
    perturb_(g, seed=seed)
    h, w = config.vae.image_size
    frames = np.random.default_rng(seed).integers(0, 256, (start_frames, h, w, 3), dtype=np.uint8)
    return save_checkpoint(path, config, g, v, torch.from_numpy(frames))


def toy_track(steps: int = 400, seed: int = 0, room: float = 400.0, friction: float = 0.8, thrust: float = 1.5,
              turn: float = -4.0) -> tuple[np.ndarray, np.ndarray]:
    """A player in a square room [0, room]^2 with Doom-like physics (turn, thrust along the new heading, momentum
    with friction) whose walls stop it: poses (T, 3) and camera-scheme actions (T, 4), actions[t] produced
    poses[t]. For tests of the learned movement (never data a world is trained on)."""
    gen = np.random.default_rng(seed)
    actions = np.zeros((steps, 4), np.float32)
    held = gen.uniform(-1, 1, 3)
    for t in range(1, steps):
        if gen.random() < 0.1:
            held = gen.uniform(-1, 1, 3)
        actions[t, :3] = held
    poses = np.zeros((steps, 3))
    poses[0] = (room / 2, room / 2, 0.0)
    velocity = np.zeros(2)
    for t in range(1, steps):
        heading = (poses[t - 1, 2] + turn * actions[t, 2]) % 360.0
        a = np.radians(heading)
        ahead, right = np.array([np.cos(a), np.sin(a)]), np.array([np.sin(a), -np.cos(a)])
        velocity = friction * velocity + thrust * (actions[t, 0] * ahead + actions[t, 1] * right)
        position = np.clip(poses[t - 1, :2] + velocity, 4.0, room - 4.0)
        velocity = position - poses[t - 1, :2]
        poses[t] = (*position, heading)
    return poses, actions


def random_world_checkpoint(path: str | Path, keyframes: int = 12, seed: int = 0, scheme: str = "camera",
                            condition: bool = True, pull: float = 0.0, write_back: int = 0, doors: list | None = None,
                            attend: bool = False, walls: np.ndarray | None = None, warp_move: float = 0.0,
                            warp_views: bool = False, pixel_views: bool = False,
                            **generator_overrides) -> Path:
    """A random-weight world with a learned movement (fitted on `toy_track`, with `doors`: DoorSpecs, and `walls`:
    (N, 4) segments of the map) and, with `keyframes` > 0, a keyframe memory of random latents at poses of that track
    whose anchor its generator takes (`attend`: attends to); it plays with `sampling.warp_move` and pulls toward
    views warped to its pose with `warp_views` (moved in pixels with `pixel_views`)."""
    from worldsim.world.memory import KeyframeMemory, MemoryConfig
    from worldsim.world.movement import MovementModel
    from worldsim.world.walls import Walls

    torch.manual_seed(seed)
    config = random_config(scheme=scheme, **generator_overrides)
    memory_config = MemoryConfig(keyframes=keyframes, cell=48.0, heading_bins=4, condition=condition, pull=pull,
                                 write_back=write_back, attend=attend, warp_views=warp_views,
                                 pixel_views=pixel_views)
    g = config.generator
    anchored = from_dict(GeneratorConfig, {**to_dict(g), "token_cond_channels": g.token_cond_channels +
                                           memory_config.anchor_channels(g.latent_channels, g.patch),
                                           "memory_channels": memory_config.attended_channels(g.latent_channels,
                                                                                              g.patch)})
    config = replace(config, generator=anchored, memory=memory_config,
                     sampling=replace(config.sampling, warp_move=warp_move))
    generator, vae = build_models(config)
    perturb_(generator, seed=seed)
    poses, actions = toy_track(seed=seed)
    movement = MovementModel.fit([(poses, actions)], ("forward", "strafe", "yaw", "use"), doors=doors,
                                 walls=None if walls is None else Walls(walls))
    h, w = config.vae.image_size
    frames = np.random.default_rng(seed).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    world = {"movement": {**movement.to_tensors(), "start_poses": torch.from_numpy(poses[[0, 100]])}}
    if keyframes:
        latents = torch.randn(len(poses), g.latent_channels, *g.latent_size,
                              generator=torch.Generator().manual_seed(seed))
        memory = KeyframeMemory.build(memory_config, latents.numpy(), poses, np.zeros(len(poses), np.int64))
        world["memory"] = memory.to_tensors()
    return save_checkpoint(path, config, generator, vae, torch.from_numpy(frames), extra=world)
