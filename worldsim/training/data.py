"""Training data in memory: recorded episodes at model resolution, served as VAE frame batches and latent clips.

Frames are resized once on load (area filter: proper anti-aliasing when shrinking) and kept as uint8. After the
VAE stage, every frame is encoded once and the latents are cached on disk keyed by the VAE's weights, so the
generator stages never run the encoder. Conditions are precomputed per frame from the recorded actions with the
scheme's encoding. Clips never cross an episode boundary. Sampling is index arithmetic on whole tensors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from worldsim.conditioning.scheme import Scheme
from worldsim.errors import WorldsimError
from worldsim.training.clips import Clip
from worldsim.training.recipe import Recipe

ENCODE_BATCH = 256


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, 3, h, w) with an area filter (averages every source pixel: no aliasing)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) == tuple(size):
        return x.contiguous()
    out = [F.interpolate(x[i: i + 1024].float(), size=size, mode="area").round().clamp(0, 255).to(torch.uint8)
           for i in range(0, len(x), 1024)]
    return torch.cat(out).contiguous()


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    return frames.float().div(127.5).sub(1.0)


class Split:
    """One split's frames, actions and episode layout."""

    def __init__(self, episodes: list, scheme: Scheme, size: tuple[int, int], grid: tuple[int, int] | None = None):
        if not episodes:
            raise WorldsimError("no readable episodes in this split")
        self.frames = torch.cat([resize_frames(e.frames, size) for e in episodes])  # (N, 3, h, w) uint8
        actions = np.concatenate([e.actions for e in episodes]).astype(np.float32)
        self.actions = actions
        self.frame_cond = torch.from_numpy(scheme.encoding.frame_vectors(actions))
        self.lengths = [len(e) for e in episodes]
        self.starts = np.cumsum([0] + self.lengths[:-1])
        self.scheme = scheme
        self.token_cond: torch.Tensor | None = None
        self.latents: torch.Tensor | None = None
        self.first_frames = self.frames[torch.from_numpy(self.starts)]

    def set_grid(self, grid: tuple[int, int]) -> None:
        self.token_cond = torch.from_numpy(self.scheme.encoding.token_maps(self.actions, grid)).to(torch.bfloat16)

    def clip_starts(self, frames: int) -> np.ndarray:
        """Every index where a clip of `frames` frames starts inside one episode."""
        valid = [np.arange(s, s + n - frames + 1) for s, n in zip(self.starts, self.lengths) if n >= frames]
        if not valid:
            raise WorldsimError(f"no episode has {frames} frames; record longer episodes or shorten clip_frames")
        return np.concatenate(valid)


class TrainingData:
    def __init__(self, train: list, val: list, scheme: Scheme, image_size: tuple[int, int], fps: float,
                 source: str = ""):
        self.scheme = scheme
        self.image_size = image_size
        self.fps = fps
        self.source = source
        self.train = Split(train, scheme, image_size)
        self.val = Split(val or train[-1:], scheme, image_size)
        self._starts: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_recipe(cls, recipe: Recipe, scheme: Scheme, image_size: tuple[int, int]) -> TrainingData:
        from worldsim.data.storage import DatasetIndex, load_episodes

        root = Path(recipe.data.dir)
        if not (root / "index.json").exists():
            if recipe.data.record is None:
                raise WorldsimError(f"no dataset at {root}; record one with `worldsim record --out {root} ...` or "
                                    "add a data.record section to the recipe")
            record_dataset(recipe, scheme, root)
        index = DatasetIndex.load(root)
        trained_with = index.info.get("encoding")
        if trained_with is not None:
            scheme.check_matches(trained_with, f"the dataset {root}")
        frame_skip = index.info.get("frame_skip", 2)
        return cls(load_episodes(root, "train"), load_episodes(root, "val"), scheme, image_size,
                   35.0 / frame_skip, str(root))

    def describe(self) -> dict:
        return {"dir": self.source, "train_frames": len(self.train.frames), "val_frames": len(self.val.frames),
                "train_episodes": len(self.train.lengths), "val_episodes": len(self.val.lengths)}

    # ---- frames (VAE stage) -------------------------------------------------------------------------------------

    def frames(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(self.train.frames), (batch,), generator=gen)
        return to_unit(self.train.frames[idx])

    def val_frames(self, n: int) -> torch.Tensor:
        idx = torch.linspace(0, len(self.val.frames) - 1, min(n, len(self.val.frames))).long()
        return to_unit(self.val.frames[idx])

    def start_frames(self, n: int = 8) -> torch.Tensor:
        """Real first frames of validation episodes, uint8 (n, H, W, 3): a player's starting points."""
        return self.val.first_frames[:n].permute(0, 2, 3, 1).contiguous()

    # ---- latents (generator stages) -------------------------------------------------------------------------------

    def use_vae(self, vae: torch.nn.Module, token_grid: tuple[int, int]) -> None:
        """Encode every frame once with this VAE (cached on disk next to the data, keyed by the VAE's weights) and
        render the token condition maps at the generator's token grid."""
        key = _weights_key(vae)
        for name, split in (("train", self.train), ("val", self.val)):
            if split.latents is not None and getattr(split, "latent_key", None) == key:
                continue
            cache = Path(self.source) / "latents" / f"{key}-{name}.safetensors" if self.source else None
            if cache is not None and cache.exists():
                latents = load_file(str(cache))["latents"]
                if len(latents) != len(split.frames):
                    latents = None
            else:
                latents = None
            if latents is None:
                latents = encode_frames(vae, split.frames)
                if cache is not None:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache.with_name(f".{cache.name}.tmp")
                    save_file({"latents": latents}, str(tmp))
                    tmp.replace(cache)
            split.latents = latents
            split.latent_key = key
            split.set_grid(token_grid)

    def clips(self, batch: int, frames: int, gen: torch.Generator, split: str = "train") -> Clip:
        data = self.train if split == "train" else self.val
        if data.latents is None:
            raise RuntimeError("call use_vae() before sampling latent clips")
        key = (id(data), frames)
        if key not in self._starts:
            self._starts[key] = torch.from_numpy(data.clip_starts(frames))
        starts = self._starts[key]
        first = starts[torch.randint(0, len(starts), (batch,), generator=gen)]
        idx = first[:, None] + torch.arange(frames)[None]  # (B, K)
        return Clip(data.latents[idx].float(), data.frame_cond[idx], data.token_cond[idx].float())

    def val_clip(self, frames: int | None = None) -> Clip:
        """The first validation episode from its real first frame (deterministic: samples are comparable)."""
        n = min(frames or self.val.lengths[0], self.val.lengths[0])
        idx = torch.arange(n)[None]
        return Clip(self.val.latents[idx].float(), self.val.frame_cond[idx], self.val.token_cond[idx].float())


def _weights_key(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def encode_frames(vae: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> bf16 latents (N, C, h, w), in batches under bf16 autocast."""
    device = next(vae.parameters()).device
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16):
        for i in range(0, len(frames), ENCODE_BATCH):
            out.append(vae.encode(to_unit(frames[i: i + ENCODE_BATCH]).to(device)).to(torch.bfloat16).cpu().contiguous())
    return torch.cat(out).contiguous()


def record_dataset(recipe: Recipe, scheme: Scheme, root: Path) -> None:
    """Record the recipe's data set from its seed (data sets are regenerated, never committed)."""
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
