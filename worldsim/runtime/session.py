"""WorldSession: a checkpoint played one frame at a time. reset / step / snapshot / restore, with per-stage timings.

No pygame here: the game loop, headless recording, evaluation and tests all drive the world through this class.
The per-frame work runs on a backend (worldsim/backends: eager, compile, onnx), chosen by the `backend` argument or
$WORLDSIM_BACKEND; the rollout step and the session's semantics are the same whichever runs it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from worldsim.backends import Backend, BackendConfig, create_backend
from worldsim.checkpoint import Checkpoint
from worldsim.conditioning.scheme import Condition, Scheme, load_scheme
from worldsim.models.kv_cache import CacheSnapshot
from worldsim.rollout import step_frame
from worldsim.world.memory import MemoryConfig, WrittenViews, pull_toward
from worldsim.world.movement import PlayerState
from worldsim.world.warp import warp_field, warp_latent

# `sampling.hold_still`: a step counts as still when the player moves less than this (map units) and turns less than
# this (degrees): a player pressed against a wall at a slant creeps along it (the engine too), and the view with it
STILL_DISTANCE, STILL_DEGREES = 0.5, 0.1


@dataclass
class SessionSnapshot:
    cache: CacheSnapshot
    latent: torch.Tensor
    noise_state: torch.Tensor
    frame: int
    player: PlayerState | None = None
    written: WrittenViews | None = None
    noise: torch.Tensor | None = None  # the last step's input noise (held while still: `sampling.hold_still`)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3)


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3)."""
    return x.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


class WorldSession:
    def __init__(self, checkpoint: Checkpoint, scheme: Scheme | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0, steps: int | None = None,
                 backend: str | BackendConfig | Backend | None = None, context_noise: float | None = None):
        self.checkpoint = checkpoint
        self.scheme = scheme or load_scheme(checkpoint.config.scheme)
        self.scheme.check_matches(checkpoint.config.encoding, checkpoint.path or "the checkpoint")
        self.device = torch.device(device)
        self.dtype = dtype
        self.seed = seed
        self.steps = steps or checkpoint.config.sampling.steps
        self.shift = checkpoint.config.sampling.shift
        self.context_level = (checkpoint.config.sampling.context_noise if context_noise is None
                              else float(context_noise))
        self.hold_still = checkpoint.config.sampling.hold_still
        if not 0.0 <= self.context_level <= 1.0:
            raise ValueError(f"context_noise must be 0 to 1 (a noise level), got {context_noise}")
        # `backend`: a name ('eager', 'compile', 'onnx', 'onnx+int8'), a BackendConfig, or a ready Backend
        self.backend = backend if isinstance(backend, Backend) else create_backend(checkpoint, backend, self.device,
                                                                                  dtype)
        self.generator, self.vae = self.backend.generator, self.backend.vae
        g = self.generator.config
        self.grid = g.grid
        self.cache = self.backend.new_cache()
        # Preallocated per-frame buffers: the hot path writes into these, it does not allocate them.
        self.noise = torch.empty((1, g.latent_channels, *g.latent_size), device=self.device, dtype=dtype)
        self.context_noise = torch.zeros_like(self.noise)  # drawn only when context_level > 0
        self.frame_cond = torch.zeros((1, g.frame_cond_dim), device=self.device, dtype=dtype)
        self.token_cond = torch.zeros((1, g.token_cond_channels, *self.grid), device=self.device, dtype=dtype)
        self.noise_generator = torch.Generator(self.device)
        # The world's state beyond pixels (worldsim/world): where the player is, advanced by the learned movement
        # every step; a world with a keyframe memory is conditioned on the view recorded nearest to that pose.
        self.movement, self.memory = checkpoint.movement, checkpoint.memory
        self.scheme_channels = self.scheme.encoding.token_channels  # the memory's anchor fills the channels after
        self.pose_channels = self.scheme.encoding.pose_channels  # the last of the scheme's: the absolute camera
        if self.pose_channels and self.movement is None:
            raise ValueError(f"{checkpoint.path or 'this checkpoint'}: its '{checkpoint.config.encoding['type']}' "
                             "encoding conditions on the player's pose, but it has no movement model "
                             "(movement.safetensors) to track it")
        self.memory_anchor = self.memory is not None and self.memory.config.condition
        self.memory_pull = self.memory.config.pull if self.memory is not None else 0.0
        self.write_back = self.memory.config.write_back if self.memory is not None and self.memory_pull > 0 else 0
        self.warp_move = checkpoint.config.sampling.warp_move
        self.warped = g.warp_fov > 0  # the generator is shown its recycled frame warped by the whole move
        self.walls = None if self.movement is None else self.movement.walkable.walls
        # the recorded camera's
        self.fov = g.warp_fov or (self.memory.config.fov if self.memory is not None else MemoryConfig.fov)
        where = checkpoint.path or "this checkpoint"
        if self.warped and self.walls is None:
            raise ValueError(f"{where}: its generator is shown the recycled frame warped by the player's move with "
                             "depth from the map's walls, but it has no movement with walls (movement.safetensors; "
                             "scripts/add_map_walls.py adds them) to warp it by")
        if self.warp_move > 0 and (self.walls is None or self.warped):
            raise ValueError(f"{where}: sampling.warp_move warps the recycled frame with depth from the map's walls "
                             "for a world that turns it itself, but " + (
                                 "this world's is warped by the whole move already" if self.warped else
                                 "its movement has no walls (scripts/add_map_walls.py adds them)") + "; use 0")
        warp_views = self.memory_pull > 0 and self.memory.config.warp_views
        if warp_views and self.walls is None:
            raise ValueError(f"{where}: memory.warp_views warps the pulled view to the player's pose with depth from "
                             "the map's walls, but its movement has no walls (scripts/add_map_walls.py adds them); "
                             "set it false")
        self.view_walls = self.walls if warp_views else None  # the pulled view is warped by them, else turned
        # the pulled view is moved in pixels (decoded and encoded again), else in latent columns
        self.view_vae = self.vae if self.memory_pull > 0 and self.memory.config.pixel_views else None
        # the recycled frame is turned in pixels through it (GeneratorConfig.turn_in_pixels), else in latent columns
        self.turn_vae = self.vae if g.turn_in_pixels else None
        if self.view_vae is not None or self.turn_vae is not None:  # an encode every frame: 1.25x channels_last
            self.vae.encoder.to(memory_format=torch.channels_last)
        self.written: WrittenViews | None = None  # frames generated here, by where they were seen from
        self.player: PlayerState | None = None
        self.latent: torch.Tensor | None = None
        self.decoded: torch.Tensor | None = None  # the last step's frame before conversion to uint8
        self.frame_index = 0
        self.timings_ms = {"condition": 0.0, "generate": 0.0, "decode": 0.0}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.checkpoint.config.vae.image_size

    def start_frame(self, index: int = 0) -> np.ndarray:
        frames = self.checkpoint.start_frames
        if frames is None or len(frames) == 0:
            raise ValueError("this checkpoint has no start frames; pass a first frame to reset()")
        return frames[index % len(frames)].numpy()

    def start_pose(self, index: int = 0) -> np.ndarray | None:
        """The recorded pose (x, y, heading) of start frame `index`, if the checkpoint has start poses."""
        poses = self.checkpoint.start_poses
        return None if poses is None or len(poses) == 0 else poses[index % len(poses)].double().numpy()

    @torch.inference_mode()
    def reset(self, first_frame: np.ndarray | None = None, pose: np.ndarray | None = None) -> np.ndarray:
        """Start a new rollout from a real first frame (uint8 (H, W, 3)) seen from `pose` (x, y, heading); returns
        the frame the player sees. Without a first frame: start frame 0 and its recorded pose."""
        if first_frame is None:
            frame, pose = self.start_frame(), self.start_pose() if pose is None else pose
        else:
            frame = first_frame
        h, w = self.image_size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise ValueError(f"first frame must be uint8 ({h}, {w}, 3), got {frame.dtype} {frame.shape}")
        if self.movement is None:
            self.player = None
        elif pose is not None:
            self.player = self.movement.start(np.asarray(pose, dtype=np.float64))
        elif self.memory is not None or self.pose_channels or self.warped:
            why = "warps its recycled frame by the player's moves" if self.warped else \
                "is anchored to the player's pose"
            raise ValueError(f"this world {why}: reset() needs the pose (x, y, heading) the first frame was seen from")
        else:
            self.player = None  # a first frame from nowhere known: no pose to track
        self.latent = self.vae.encode(frames_to_tensor(frame[None]).to(self.device, self.dtype))
        self.written = None
        if self.write_back and self.player is not None:  # the real first frame is its place's view as it is
            self.written = WrittenViews(self.memory.config, self.write_back)
            self.written.write(self.player.pose, self.latent, 0, settled=True)
        self.cache.reset()
        self.backend.flush()
        self.noise_generator.manual_seed(self.seed)
        self.frame_index = 0
        self.decoded = None
        return tensor_to_frames(self.vae.decode(self.latent))[0]

    def encode(self, action: np.ndarray) -> Condition:
        frame, tokens = self.scheme.encode_actions(action, self.grid)
        return Condition(np.asarray(action, dtype=np.float32), frame, tokens)

    @torch.inference_mode()
    def step(self, condition: Condition) -> np.ndarray:
        """One frame: condition -> generator (one evaluation per sampler step) -> decoder -> uint8 (H, W, 3)."""
        if self.latent is None:
            raise RuntimeError("call reset() before step()")
        t0 = time.perf_counter()
        # 1. condition into the preallocated buffers
        self.frame_cond[0].copy_(torch.from_numpy(condition.frame))
        self.token_cond[0, :self.scheme_channels].copy_(torch.from_numpy(condition.tokens))
        before = self.player
        after = None if before is None else self.movement.step(before, condition.action)
        if not (self.hold_still and self.frame_index > 0 and self._still(condition, before, after)):
            torch.randn(self.noise.shape, generator=self.noise_generator, out=self.noise, device=self.device,
                        dtype=self.dtype)
        if self.context_level > 0:
            torch.randn(self.noise.shape, generator=self.noise_generator, out=self.context_noise,
                        device=self.device, dtype=self.dtype)
        if before is not None:  # the pose this frame is seen from, and the view recorded nearest to it
            if self.memory_pull > 0:  # toward what was seen first (or recorded) where the recycled frame was seen from
                view = (self.written.view(before.pose, self.frame_index, self.view_walls, self.view_vae)
                        if self.written is not None else None)
                if view is None:
                    view = self.memory.views(before.pose, dtype=self.dtype, walls=self.view_walls,
                                             vae=self.view_vae)[0]
                self.latent = pull_toward(self.latent, view.to(self.device, self.dtype), self.memory_pull,
                                          self.memory.config.pull_scale)
            if self.warped or self.warp_move > 0:  # the move drawn into the recycled frame: all of it, turn
                # included, for a world trained so; else a share of its translation (the generator turns it itself)
                seen_from = after.pose if self.warped else np.array(
                    [*(before.pose[:2] + self.warp_move * (after.pose[:2] - before.pose[:2])), before.heading])
                if not np.array_equal(seen_from, before.pose):
                    self.latent = warp_latent(self.latent, *warp_field(before.pose, seen_from, self.walls, self.fov,
                                                                       self.latent.shape[-1]))
            self.player = after
            if self.pose_channels:
                pose_maps = self.scheme.encoding.pose_maps(self.player.pose, self.grid)
                self.token_cond[0, self.scheme_channels - self.pose_channels:self.scheme_channels].copy_(
                    torch.from_numpy(pose_maps))
            if self.memory_anchor:
                anchor = self.memory.anchor_tokens(self.player.pose, self.generator.config.patch)
                self.token_cond[0, self.scheme_channels:].copy_(anchor)
        t1 = time.perf_counter()
        # 2. generate the next latent against the sliding KV cache (the backend stands in for the generator)
        self.latent = step_frame(self.backend, self.cache, self.latent, self.frame_cond, self.token_cond,
                                 self.noise, self.steps, self.shift, context_noise=self.context_noise,
                                 context_level=self.context_level, vae=self.turn_vae)
        if self.written is not None:
            self.written.write(self.player.pose, self.latent, self.frame_index + 1)
        t2 = time.perf_counter()
        # 3. decode
        self.decoded = self.backend.decode(self.latent)
        frame = tensor_to_frames(self.decoded)[0]
        t3 = time.perf_counter()
        self.frame_index += 1
        self.timings_ms = {"condition": (t1 - t0) * 1e3, "generate": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3}
        return frame

    @staticmethod
    def _still(condition: Condition, before: PlayerState | None, after: PlayerState | None) -> bool:
        """Whether this step leaves the player where they are: the tracked pose barely moves and does not turn
        (standing, or pressed against a wall), or, in a world that tracks no pose, nothing is pressed."""
        if before is None or after is None:
            return not np.any(condition.action)
        return (math.hypot(after.x - before.x, after.y - before.y) < STILL_DISTANCE
                and abs(after.heading - before.heading) < STILL_DEGREES)

    def latent_is_finite(self) -> bool:
        return self.latent is not None and bool(torch.isfinite(self.latent).all())

    def output_is_finite(self) -> bool:
        """Whether the last step's latent and decoded frame are free of NaN/inf (uint8 frames hide it)."""
        if self.latent is None:
            return False
        if self.decoded is None:
            return self.latent_is_finite()
        return bool(torch.isfinite(self.latent).all() & torch.isfinite(self.decoded).all())  # one sync

    def state_is_finite(self) -> bool:
        """Whether everything the next frame depends on (latent and KV cache) is finite: worth a snapshot."""
        return self.latent_is_finite() and all(bool(torch.isfinite(t).all()) for t in self._cache_buffers())

    @torch.inference_mode()
    def inject_fault(self, where: str = "latent") -> None:
        """Test hook (soak, fault tests): poison the `latent` or the KV `cache` with NaN, as a bad step would."""
        if where == "latent" and self.latent is not None:
            self.latent.fill_(float("nan"))
        elif where == "cache":
            for buffer in self._cache_buffers():
                buffer.fill_(float("nan"))
        else:
            raise ValueError(f"inject_fault: unknown target {where!r}; allowed: latent, cache")

    def _cache_buffers(self) -> list[torch.Tensor]:
        """The cache's k, v and sink buffers, whether stacked tensors or per-layer lists."""
        groups = (self.cache.k, self.cache.v, self.cache.sink_k)
        return [t for group in groups for t in (group if isinstance(group, list) else [group])]

    def snapshot(self) -> SessionSnapshot:
        if self.latent is None:
            raise RuntimeError("call reset() before snapshot()")
        return SessionSnapshot(self.cache.snapshot(), self.latent.clone(), self.noise_generator.get_state(),
                               self.frame_index, self.player,
                               self.written.copy() if self.written is not None else None, self.noise.clone())

    def restore(self, snap: SessionSnapshot) -> None:
        """Rewind to a snapshot; the same conditions afterwards give the same frames (noise state included)."""
        self.cache.restore(snap.cache)
        self.backend.flush()
        self.latent = snap.latent.clone()
        self.decoded = None
        self.noise_generator.set_state(snap.noise_state)
        self.frame_index = snap.frame
        self.player = snap.player  # immutable: shared, not copied
        self.written = snap.written.copy() if snap.written is not None else None
        if snap.noise is not None:
            self.noise.copy_(snap.noise)
