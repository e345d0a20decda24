"""What is judged against the engine on one held-out episode: the model's frames and three yardsticks.

Each candidate is a picture of the episode's frames 1..F at model resolution, plus the frame each one follows
(the pair the IDM judges):

    model          open loop: `reset` from the real first frame, then one `WorldSession.step` per recorded
                   action; the model only ever sees its own frames. Follows its own previous frame.
    model_teacher  teacher forced: before every step the session's recycled latent is replaced by the VAE
                   latent of the real previous frame, so the step (and the K/V it caches) sees real history,
                   as in training stage 1. One pass per frame through the same `step` code as play: honest
                   and cheap (a re-`reset` from frame t-1 per frame would throw the history away). Follows the
                   real previous frame.
    vae            the VAE's reconstruction ceiling, decode(encode(real frame t)): the generator's frames go
                   through the same decoder, so in practice they cannot beat it. Follows its own previous
                   frame.
    copy_previous  the real previous frame, i.e. "nothing moves" (teacher-forced yardstick). Follows the real
                   previous frame, so the IDM sees no motion.
    copy_first     the real first frame forever (open-loop yardstick).
    keyframe       only for worlds with a posed keyframe memory: the keyframe nearest to the pose the world's
                   movement model tracks open loop, turned to its heading (warped to the pose, for a world that
                   pulls toward warped views: memory.warp_views) and decoded, i.e. what retrieval alone draws
                   (open-loop yardstick). Follows its own previous frame.
    turned_previous  only for generators that reproject their recycled frame by the commanded yaw: the real
                   previous latent turned that way and decoded, i.e. what the reprojection alone draws (teacher-
                   forced yardstick). Follows the real previous frame. A model that does not beat it in PSNR and
                   action agreement has learned nothing beyond the geometry it was given. For a world that warps
                   its recycled frame instead (GeneratorConfig.warp_fov): turned by the engine's turn, by the warp.
    warped_previous  only for worlds whose movement has the map's walls: the real previous latent warped by the
                   engine's move to the next pose with depth from the walls (worldsim/world/warp.py) and decoded,
                   i.e. what 2.5D geometry alone draws of the move too (teacher-forced yardstick; for a world that
                   warps, what its input alone draws). Follows the real previous frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from worldsim.runtime.session import WorldSession, frames_to_tensor, tensor_to_frames
from worldsim.world.warp import warp_field, warp_latent

VAE_BATCH = 64


@dataclass
class Candidate:
    frames: np.ndarray  # (F, h, w, 3) uint8: its picture of frames 1..F
    previous: np.ndarray  # (F, h, w, 3) uint8: the frame each of them follows


@dataclass
class RolloutSpeed:
    frames: int
    seconds: float  # wall time of the open-loop step loop (condition + generate + decode)
    stage_ms: dict[str, float]  # summed per-stage times of WorldSession.step


@torch.inference_mode()
def _decode(session: WorldSession, latents: torch.Tensor) -> np.ndarray:
    return np.concatenate([tensor_to_frames(session.vae.decode(latents[i: i + VAE_BATCH]))
                           for i in range(0, len(latents), VAE_BATCH)])


@torch.inference_mode()
def _vae_roundtrip(session: WorldSession, frames: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """Real frames (N, h, w, 3) -> (reconstructions (N, h, w, 3) uint8, latents (N, C, lh, lw))."""
    recon, latents = [], []
    for i in range(0, len(frames), VAE_BATCH):
        z = session.vae.encode(frames_to_tensor(frames[i: i + VAE_BATCH]).to(session.device, session.dtype))
        latents.append(z)
        recon.append(tensor_to_frames(session.vae.decode(z)))
    return np.concatenate(recon), torch.cat(latents)


def episode_candidates(session: WorldSession, real: np.ndarray, actions: np.ndarray, poses: np.ndarray | None = None,
                       progress: bool = False) -> tuple[dict[str, Candidate], RolloutSpeed, np.ndarray | None]:
    """real: (F + 1, h, w, 3) uint8 engine frames at model resolution; actions: (F + 1, A), actions[t]
    produced real[t] (actions[0] is the no-op); poses: (F + 1, 3) the engine's, for worlds that track the pose.
    Returns the candidates in the order listed above (turned_previous only for generators that turn or warp their
    recycled frame, keyframe only for worlds with a memory), the open-loop speed, and the poses (F, 3) the world
    tracked open loop (None when it tracks none)."""
    steps = len(real) - 1
    conditions = [session.encode(actions[t]) for t in range(1, steps + 1)]
    first_pose = None if poses is None else poses[0]
    # 1. open loop, timed: this is what a player gets
    start_frame = session.reset(real[0], first_pose)
    generated = np.empty((steps, *real.shape[1:]), dtype=np.uint8)
    tracked = np.empty((steps, 3)) if session.player is not None else None
    stage_ms = dict.fromkeys(session.timings_ms, 0.0)
    start = time.perf_counter()
    for t, condition in enumerate(tqdm(conditions, desc="rollout", disable=not progress, unit="frame")):
        generated[t] = session.step(condition)
        for stage, ms in session.timings_ms.items():
            stage_ms[stage] += ms
        if tracked is not None:
            tracked[t] = session.player.pose
    speed = RolloutSpeed(steps, time.perf_counter() - start, stage_ms)
    # 2. teacher forced: the real previous latent is recycled at every step, and the engine's pose is the one the
    # world's movement steps from
    reconstructed, latents = _vae_roundtrip(session, real)
    session.reset(real[0], first_pose)
    teacher = np.empty_like(generated)
    for t, condition in enumerate(tqdm(conditions, desc="teacher", disable=not progress, unit="frame")):
        session.latent = latents[t: t + 1]  # (1, C, lh, lw): the real frame t (the previous of frame t + 1)
        if session.player is not None and poses is not None:
            session.player = session.movement.along(poses, actions, t)
        teacher[t] = session.step(condition)
    # 3. yardsticks; copy_first is a read-only view, not F copies of a frame
    first = np.broadcast_to(real[0], generated.shape)
    candidates = {
        "model": Candidate(generated, np.concatenate([start_frame[None], generated[:-1]])),
        "model_teacher": Candidate(teacher, real[:-1]),
        "vae": Candidate(reconstructed[1:], reconstructed[:-1]),
        "copy_previous": Candidate(real[:-1], real[:-1]),
        "copy_first": Candidate(first, first),
    }
    if session.memory is not None and tracked is not None:
        candidates["keyframe"] = _keyframe_candidate(session, tracked, real[0])
    if session.generator.config.yaw_reprojection:  # (a world that warps: below, by the engine's turn)
        frame_cond = torch.from_numpy(np.stack([c.frame for c in conditions])).to(latents.device, latents.dtype)
        # real frame t - 1, turned by action t as the world turns it (in latent columns, or in pixels)
        turned = session.generator.reproject(latents[:-1], frame_cond, session.turn_vae)
        candidates["turned_previous"] = Candidate(_decode(session, turned), real[:-1])
    walls = None if session.movement is None else session.movement.walkable.walls
    if walls is not None and poses is not None:
        if session.warped:  # a world that warps has no yaw turn of its own: the engine's turn alone, by the warp
            turns = np.concatenate([poses[:-1, :2], poses[1:, 2:]], 1)
            candidates["turned_previous"] = Candidate(_warped_previous(session, latents, poses[:-1], turns, walls),
                                                      real[:-1])
        candidates["warped_previous"] = Candidate(_warped_previous(session, latents, poses[:-1], poses[1:], walls),
                                                  real[:-1])
    return candidates, speed, tracked


@torch.inference_mode()
def _warped_previous(session: WorldSession, latents: torch.Tensor, before: np.ndarray, after: np.ndarray, walls
                     ) -> np.ndarray:
    """Each real previous latent, seen from `before[t]`, warped to `after[t]` (worldsim/world/warp.py), decoded."""
    warped = torch.stack([warp_latent(latents[t], *warp_field(before[t], after[t], walls, session.fov,
                                                               latents.shape[-1]))
                          for t in range(len(before))])
    return _decode(session, warped)


@torch.inference_mode()
def _keyframe_candidate(session: WorldSession, tracked: np.ndarray, first: np.ndarray) -> Candidate:
    """The nearest keyframes to the tracked poses (F, 3), turned (or warped) to them as the world's pull does, and
    decoded."""
    latents = session.memory.views(tracked, dtype=session.dtype, walls=session.view_walls,
                                   vae=session.view_vae)[0].to(session.device)
    frames = _decode(session, latents)
    return Candidate(frames, np.concatenate([first[None], frames[:-1]]))
