"""What the training stages see of a recorded data set, built on worldsim/data's windows and latent cache.

The VAE stage draws single frames (pixels, resized once with an area filter). The generator stages draw clips of
cached latents: every frame is encoded once per VAE (keyed by a hash of its weights) and stored next to the data,
so training never runs the encoder. Batches are drawn with the trainer's torch generator, whose state is saved in
checkpoints, so a resumed run samples exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from worldsim.conditioning.scheme import Scheme
from worldsim.data.dataset import LatentCache, LatentWindowDataset, WindowDataset, to_model_range
from worldsim.data.storage import INDEX_FILE, DatasetIndex
from worldsim.errors import WorldsimError
from worldsim.training.clips import Clip
from worldsim.training.recipe import Recipe, WorldSpec
from worldsim.world.doors import DoorSpec
from worldsim.world.memory import KeyframeMemory
from worldsim.world.movement import MovementModel, TicPhysics
from worldsim.world.walls import Walls
from worldsim.world.warp import warp_fields

ENCODE_BATCH = 256


class TrainingData:
    def __init__(self, root: str | Path, scheme: Scheme, image_size: tuple[int, int]):
        self.root = Path(root)
        self.scheme = scheme
        self.image_size = image_size  # (height, width)
        self.resolution = (image_size[1], image_size[0])  # the data layer's (width, height)
        self.index = DatasetIndex.load(self.root)
        self.fps = 35.0 / self.index.info.get("frame_skip", 2)  # ViZDoom runs at 35 tics per second
        self.val = WindowDataset(self.root, scheme, window=1, resolution=self.resolution, split="val")
        self._train_frames: WindowDataset | None = None  # pixels of the training split: the VAE stage only
        self._cache: LatentCache | None = None
        self._vae: torch.nn.Module | None = None
        self._grid: tuple[int, int] | None = None
        self._clips: dict[tuple[str, int], LatentWindowDataset] = {}
        self.movement: MovementModel | None = None
        self.memory: KeyframeMemory | None = None
        self._patch = 1
        self.warp_fov = 0.0  # > 0: clips carry the warp fields of their recorded moves (GeneratorConfig.warp_fov)
        self._world_key: tuple | None = None  # what the movement and memory were built from

    @classmethod
    def from_recipe(cls, recipe: Recipe, scheme: Scheme, image_size: tuple[int, int]) -> TrainingData:
        """The recipe's data set; recorded first (or its interrupted recording finished) when the recipe says how."""
        root = Path(recipe.data.dir)
        index = DatasetIndex.load(root) if (root / INDEX_FILE).exists() else None
        if index is None or not index.complete:
            if recipe.data.record is None:
                if index is None:
                    raise WorldsimError(f"no dataset at {root}; record one with `worldsim record --out {root} ...` "
                                        "or add a data.record section to the recipe")
                raise WorldsimError(f"{root} holds an unfinished recording ({index.progress()}); finish it "
                                    "by running the `worldsim record` command that started it again (same "
                                    "arguments), or add a data.record section to the recipe")
            record_dataset(recipe, scheme, root)  # a rerun with the same arguments records what is missing
        return cls(root, scheme, image_size)

    def describe(self) -> dict:
        return {"dir": str(self.root), "episodes": len(self.index.episodes),
                "train_frames": self.index.frames("train"), "val_frames": self.index.frames("val")}

    # ---- frames (VAE stage) -------------------------------------------------------------------------------------

    def frames(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """Random training frames, float (B, 3, H, W) in [-1, 1]."""
        if self._train_frames is None:
            self._train_frames = WindowDataset(self.root, self.scheme, window=1, resolution=self.resolution,
                                               split="train")
        return self._train_frames.gather(_draw(self._train_frames.starts, batch, gen))["frames"][:, 0]

    def val_frames(self, n: int) -> torch.Tensor:
        idx = np.linspace(0, len(self.val.frames) - 1, min(n, len(self.val.frames))).astype(np.int64)
        return to_model_range(self.val.frames[idx])

    def start_frames(self, n: int = 8) -> torch.Tensor:
        """Real first frames of validation episodes, uint8 (n, H, W, 3): a player's starting points."""
        return torch.from_numpy(self.val.frames[self.val.episode_starts[:n]]).permute(0, 2, 3, 1).contiguous()

    def start_poses(self, n: int = 8) -> torch.Tensor:
        """The recorded poses (n, 3) of `start_frames(n)`."""
        return torch.from_numpy(self.val.poses[self.val.episode_starts[:n]].astype(np.float64))

    # ---- the world's state beyond pixels (worldsim/world) ---------------------------------------------------------

    def use_world(self, spec: WorldSpec, patch: int, warp_fov: float = 0.0) -> None:
        """Learn the movement and build the keyframe memory from the training split (after `use_vae`: the memory
        holds this VAE's latents); clips then carry the memory's anchor in their token condition, and with
        `warp_fov` > 0 the warp fields of their recorded moves, by the map's walls, for a camera of that fov."""
        self.warp_fov = warp_fov
        key = (spec, self._cache.dir if self._cache is not None else None, patch)
        if key == self._world_key:  # the stages of one run share it: fitted once
            return
        self._world_key = key
        if not spec.movement:
            self.movement, self.memory = None, None
            return
        train = self._windows(1, "train")
        ends = [*train.episode_starts[1:], len(train.poses)]
        episodes = [(train.poses[a:b], train.actions[a:b]) for a, b in zip(train.episode_starts, ends)]
        walls = self._walls() if spec.walls else None
        self.movement = MovementModel.fit(episodes, tuple(self.scheme.control_names), spec.cell, spec.max_hole,
                                          self._doors() if spec.doors else None,
                                          int(self.index.info.get("frame_skip", 2)),
                                          None if walls is None else Walls(walls), spec.reach,
                                          self._physics() if spec.physics else None)
        self.memory = (KeyframeMemory.build(spec.memory, train.latents, train.poses, train.frame_episodes)
                       if spec.memory.enabled else None)
        self._patch = patch
        if warp_fov and self.movement.walkable.walls is None:
            raise WorldsimError(f"model.warp: the recordings in {self.root} do not name a map with walls (Doom "
                                "maps do), so there is no depth to warp the recycled frame by; set it false")
        if self.memory is not None and spec.memory.warp_views and self.movement.walkable.walls is None:
            raise WorldsimError(f"world.memory.warp_views: the recordings in {self.root} do not name a map with "
                                "walls (Doom maps do), so there is no depth to warp the pulled view by; set it false")

    def _doors(self) -> list[DoorSpec] | None:
        """The doors of the map the data was recorded on, when its engine's map file says (Doom)."""
        if self.index.info.get("engine") != "vizdoom":
            return None
        from worldsim.data.doom import recorded_doors
        return recorded_doors(self.index.episodes[0].metadata)

    def _physics(self) -> TicPhysics | None:
        """The recording engine's player physics, when its adapter knows it (Doom, camera schemes)."""
        if self.index.info.get("engine") != "vizdoom":
            return None
        from worldsim.data.doom import recorded_physics
        return recorded_physics(self.index.episodes[0].metadata)

    def _walls(self) -> np.ndarray | None:
        """The walls of the map the data was recorded on, when its engine's map file says (Doom)."""
        if self.index.info.get("engine") != "vizdoom":
            return None
        from worldsim.data.doom import recorded_walls
        return recorded_walls(self.index.episodes[0].metadata)

    def world_sets(self) -> dict[str, dict[str, torch.Tensor]]:
        """The weight sets a checkpoint carries the world's state in (movement, start poses, memory)."""
        sets = {}
        if self.movement is not None:
            sets["movement"] = {**self.movement.to_tensors(), "start_poses": self.start_poses()}
        if self.memory is not None:
            sets["memory"] = self.memory.to_tensors()
        return sets

    # ---- latent clips (generator stages) ---------------------------------------------------------------------------

    def use_vae(self, vae: torch.nn.Module, token_grid: tuple[int, int]) -> None:
        """Encode every frame with this VAE once (cached on disk), conditions rendered at the generator's grid."""
        # the memory's pulled views (`memory.pixel_views`) and a generator's recycled frames (`turn_in_pixels`)
        # are moved in pixels through it
        self._vae = vae
        cache = LatentCache(self.root, f"vae-{_weights_key(vae)}", self.resolution)
        device = next(vae.parameters()).device

        @torch.no_grad()
        def encode(frames: np.ndarray) -> torch.Tensor:
            x = to_model_range(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return vae.encode(x).float()

        cache.build(encode, ENCODE_BATCH, progress=True)
        if self._cache is None or cache.dir != self._cache.dir or token_grid != self._grid:
            self._cache, self._grid, self._clips = cache, token_grid, {}

    def _windows(self, frames: int, split: str) -> LatentWindowDataset:
        if self._cache is None:
            raise RuntimeError("call use_vae() before sampling latent clips")
        if (split, frames) not in self._clips:
            self._clips[split, frames] = LatentWindowDataset(self._cache, self.scheme, frames, split, self._grid)
        return self._clips[split, frames]

    def clips(self, batch: int, frames: int, gen: torch.Generator, split: str = "train") -> Clip:
        windows = self._windows(frames, split)
        return self._clip(windows.gather(_draw(windows.starts, batch, gen)))

    def val_clip(self, frames: int | None = None) -> Clip:
        """The first validation episode from its real first frame (deterministic: samples are comparable)."""
        first_len = int(self.index.select("val")[0].frames)
        windows = self._windows(min(frames or first_len, first_len), "val")
        return self._clip(windows.gather(windows.starts[:1]))

    def _clip(self, batch: dict[str, torch.Tensor]) -> Clip:
        tokens, views = batch["token_maps"], None
        if self.memory is not None:  # the view recorded nearest to each frame's pose, never from its own episode
            poses = batch["poses"].double().numpy()
            own = np.broadcast_to(batch["episodes"].numpy()[:, None], poses.shape[:2])
            if self.memory.config.condition:
                tokens = torch.cat([tokens, self.memory.anchor_tokens(poses, self._patch, own)], 2)
            if self.memory.config.pull > 0:
                walls = self.movement.walkable.walls if self.memory.config.warp_views else None
                vae = self._vae if self.memory.config.pixel_views else None
                views = self.memory.views(poses.reshape(-1, 3), own.reshape(-1), walls=walls, vae=vae)[0].reshape(
                    *poses.shape[:2], *self.memory.latents.shape[1:])
        if not self.warp_fov:  # the clip carries the VAE a generator that turns in pixels turns it through
            return Clip(batch["latents"], batch["conditions"], tokens, views, vae=self._vae)
        poses = batch["poses"].double()  # warped by the recorded moves, as the session warps by the tracked ones
        return Clip(batch["latents"], batch["conditions"], tokens, views, self._warps(poses, batch["latents"]), poses,
                    self._vae)

    def _warps(self, poses: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(warp_fields(poses.cpu().numpy(), self.movement.walkable.walls, self.warp_fov,
                                            latents.shape[-1])).to(latents.device)

    def continued(self, clip: Clip, previous: Clip) -> Clip:
        """`clip`'s moves made from where `previous` ends, for a rollout that goes on from there with another clip's
        conditions (the long stage's extensions), in a world that warps: each step's displacement in the player's
        own frame and its turn, from the new pose, and the warps seen there. The walls are not collided with: what
        matters is that the recycled frame is warped with the depth where the rollout is, not where the other clip
        was recorded. Clips without poses are returned as they are."""
        if clip.poses is None or previous.poses is None:
            return clip
        start, poses = previous.poses[:, -1].cpu().numpy(), clip.poses.cpu().numpy()
        heading = np.radians(poses[:, :-1, 2])
        step = poses[:, 1:, :2] - poses[:, :-1, :2]
        ahead = step[..., 0] * np.cos(heading) + step[..., 1] * np.sin(heading)
        right = step[..., 0] * np.sin(heading) - step[..., 1] * np.cos(heading)
        moved = np.empty_like(poses)
        moved[:, 0] = start
        for k in range(1, poses.shape[1]):
            a = np.radians(moved[:, k - 1, 2])
            moved[:, k, 0] = moved[:, k - 1, 0] + ahead[:, k - 1] * np.cos(a) + right[:, k - 1] * np.sin(a)
            moved[:, k, 1] = moved[:, k - 1, 1] + ahead[:, k - 1] * np.sin(a) - right[:, k - 1] * np.cos(a)
            moved[:, k, 2] = moved[:, k - 1, 2] + poses[:, k, 2] - poses[:, k - 1, 2]
        poses = torch.from_numpy(moved).to(clip.poses.device)
        return Clip(clip.latents, clip.frame_cond, clip.token_cond, clip.views, self._warps(poses, clip.latents), poses,
                    clip.vae)


def _draw(starts: np.ndarray, batch: int, gen: torch.Generator) -> np.ndarray:
    # drawn on the generator's device (a CUDA generator cannot draw on the CPU), indices brought back to index
    return starts[torch.randint(0, len(starts), (batch,), generator=gen, device=gen.device).cpu().numpy()]


def _weights_key(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def record_dataset(recipe: Recipe, scheme: Scheme, root: Path) -> None:
    """Record the recipe's data set from its seed (data sets are regenerated, never committed), or finish an
    interrupted recording of it."""
    from worldsim.data.env import make_env
    from worldsim.data.policies import ExplorePolicy
    from worldsim.data.record import record

    spec = recipe.data.record
    env = make_env("doom", spec.doom, scheme)
    try:
        record(env, ExplorePolicy(scheme, seed=spec.seed), root, episodes=spec.episodes, steps=spec.steps,
               seed=spec.seed, val_fraction=spec.val_fraction)
    finally:
        env.close()
