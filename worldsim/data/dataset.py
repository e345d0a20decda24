"""Training windows: K consecutive frames (or latents) with the actions and conditions that produced them.

`WindowDataset` serves pixels for the VAE stage: episodes are decoded once, resized once to the model
resolution with an area (box) filter and held in memory as uint8 (N, 3, H, W) (100k frames at 128x96:
3.7 GB); a batch is one numpy gather and one float conversion, no per-frame Python.

`LatentCache` encodes every frame once with a checkpoint's VAE and stores float16 latents (with the actions
and poses, so training never decompresses a frame again) in `<dataset>/latents/<key>-<hash>/`, one file per
episode, written atomically. The key names the VAE (e.g. its checkpoint id): another VAE or resolution gets
its own folder, and an episode whose chunk files changed is encoded again. `LatentWindowDataset` serves
windows of them.

Both return, for a batch of B windows of K frames (aligned as storage.py says: conditions[:, t] produced
frame t):
    frames       float32 (B, K, 3, H, W) in [-1, 1]   (WindowDataset)
    latents      float32 (B, K, C, h, w)              (LatentWindowDataset)
    actions      float32 (B, K, A)                    the scheme's action vectors
    conditions   float32 (B, K, F)                    the scheme's frame vectors
    token_maps   float32 (B, K, C_tok, gh, gw)        the scheme's token maps on `grid` (when a grid is set)
    poses        float32 (B, K, 3)                    [x, y, angle_degrees]
`dataset[i]` is one window without the B axis (for a torch DataLoader); `sample(B, rng)` a random batch.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from worldsim.conditioning import Scheme
from worldsim.conditioning.scheme import action_space
from worldsim.config import ConfigError
from worldsim.data.storage import (
    TEMP_FILE,
    CorruptDataWarning,
    DatasetIndex,
    EpisodeEntry,
    atomic_write,
    atomic_write_json,
    iter_episodes,
)
from worldsim.errors import WorldsimError
from worldsim.leftovers import remove_stale_files

DEFAULT_RESOLUTION = (128, 96)  # (width, height) of the shipped world's model
DEFAULT_WINDOW = 9
RESIZE_BATCH = 512  # frames per torch call: amortises the call, bounds the float32 temporaries
LATENTS_DIR = "latents"
LATENT_MANIFEST = "manifest.json"

Encoder = Callable[[np.ndarray], Any]  # frames uint8 (N, H, W, 3) -> latents (N, C, h, w), tensor or array


def resize_frames(frames: np.ndarray, resolution: tuple[int, int],
                  channels_first: bool = False) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, h, w, 3) at resolution (w, h), or (N, 3, h, w) with `channels_first`.

    Area (box) filter when shrinking, so fine wall textures do not alias; antialiased bilinear when growing.
    """
    width, height = resolution
    same = frames.shape[1:3] == (height, width)
    if same and not channels_first:
        return frames
    shrink = height <= frames.shape[1] and width <= frames.shape[2]
    shape = (len(frames), 3, height, width) if channels_first else (len(frames), height, width, 3)
    out = np.empty(shape, dtype=np.uint8)
    with torch.inference_mode():
        for i in range(0, len(frames), RESIZE_BATCH):
            x = torch.from_numpy(frames[i : i + RESIZE_BATCH]).permute(0, 3, 1, 2)  # (n, 3, H, W)
            if not same:
                x = x.float()
                if shrink:
                    x = F.interpolate(x, size=(height, width), mode="area")
                else:
                    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                                      align_corners=False)
                x = x.round_().clamp_(0, 255).to(torch.uint8)
            out[i : i + RESIZE_BATCH] = (x if channels_first else x.permute(0, 2, 3, 1)).numpy()
    return out


def to_model_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1], same shape.

    numpy on purpose: at this size torch's intra-op thread pool costs more than the arithmetic when the other
    core is busy (measured 35 ms vs 3.5 ms for 16x9 frames at 128x96 on a loaded 2-core machine).
    """
    out = np.multiply(frames, np.float32(2.0 / 255.0), dtype=np.float32)
    out -= 1.0
    return torch.from_numpy(out)


def check_scheme(scheme: Scheme, index: DatasetIndex) -> None:
    """The scheme must encode actions as the dataset recorded them (its speeds give actions their meaning)."""
    recorded = action_space(index.info.get("encoding", {}))
    mine = scheme.action_space()
    if mine != recorded:
        diffs = [f"{k}: scheme has {mine.get(k)!r}, dataset has {recorded.get(k)!r}"
                 for k in sorted(set(mine) | set(recorded)) if mine.get(k) != recorded.get(k)]
        raise ConfigError(scheme.file, "encoding", f"scheme '{scheme.name}' does not match the encoding "
                          f"dataset {index.root} was recorded with ({'; '.join(diffs)})",
                          allowed="a scheme with the same encoding, or the world encoding of the same camera "
                          "(controls may differ)")


class _Windows(Dataset):
    """Window bookkeeping shared by frames and latents: episodes laid end to end, valid starts, the gather."""

    def _init_windows(self, scheme: Scheme, window: int, grid: tuple[int, int] | None, lengths: list[int],
                      actions: np.ndarray, poses: np.ndarray, where: object, episode_ids: list[int] | None = None
                      ) -> None:
        if window < 1:
            raise WorldsimError(f"window must be at least 1 frame, got {window}")
        self.scheme, self.window, self.grid = scheme, window, grid
        self.actions, self.poses = actions, poses
        offsets = np.cumsum([0, *lengths[:-1]]).astype(np.int64)
        self.episode_starts = offsets  # global index of each episode's first frame
        ids = np.arange(len(lengths)) if episode_ids is None else np.asarray(episode_ids, dtype=np.int64)
        self.frame_episodes = np.repeat(ids, lengths)  # the recorded episode id of every frame
        # A window never crosses an episode boundary: starts run to length - window in each episode.
        starts = [offset + np.arange(n - window + 1) for offset, n in zip(offsets, lengths) if n >= window]
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        if len(self.starts) == 0:
            raise WorldsimError(f"no window of {window} frames in {where}: no readable episode is that long")
        self._steps = np.arange(window, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.gather(self.starts[i : i + 1]).items()}

    def sample(self, batch_size: int, generator: np.random.Generator) -> dict[str, torch.Tensor]:
        """A batch of `batch_size` windows drawn uniformly from all windows."""
        return self.gather(self.starts[generator.integers(0, len(self.starts), size=batch_size)])

    def gather(self, starts: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows beginning at these global frame indices (values of `self.starts`)."""
        idx = np.asarray(starts, dtype=np.int64)[:, None] + self._steps  # (B, K)
        actions = self.actions[idx]  # (B, K, A)
        batch = self._visual(idx)
        batch["actions"] = torch.from_numpy(actions)
        if self.grid is None:
            batch["conditions"] = torch.from_numpy(self.scheme.encoding.frame_vectors(actions))
        else:
            conditions, tokens = self.scheme.encode_actions(actions, self.grid, self.poses[idx])
            batch["conditions"] = torch.from_numpy(conditions)  # (B, K, F)
            batch["token_maps"] = torch.from_numpy(tokens)  # (B, K, C_tok, gh, gw)
        batch["poses"] = torch.from_numpy(self.poses[idx])  # (B, K, 3)
        batch["episodes"] = torch.from_numpy(self.frame_episodes[idx[:, 0]])  # (B,)
        return batch

    def _visual(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class WindowDataset(_Windows):
    """Pixel windows from a recorded dataset, resized once to `resolution` = (width, height), held as uint8
    (N, 3, H, W) in memory."""

    def __init__(self, root: str | Path, scheme: Scheme, window: int = DEFAULT_WINDOW,
                 resolution: tuple[int, int] = DEFAULT_RESOLUTION, split: str | None = "train",
                 grid: tuple[int, int] | None = None):
        index = DatasetIndex.load(root)
        check_scheme(scheme, index)
        self.resolution = resolution
        entries = index.select(split)
        total = sum(e.frames for e in entries)
        width, height = resolution
        # Preallocated from the index, filled episode by episode: peak memory is the dataset plus one episode.
        # Held channels-first, so a batch is a gather and a float conversion with no transpose.
        self.frames = np.empty((total, 3, height, width), dtype=np.uint8)
        actions = np.empty((total, len(scheme.control_names)), dtype=np.float32)
        poses = np.empty((total, 3), dtype=np.float32)
        lengths, used = [], 0
        for episode in iter_episodes(root, split, index):
            n = len(episode)
            if episode.actions.shape[1] != actions.shape[1]:
                warnings.warn(f"skipping episode {episode.id}: {episode.actions.shape[1]} action values, the "
                              f"scheme has {actions.shape[1]}", CorruptDataWarning, stacklevel=2)
                continue
            self.frames[used : used + n] = resize_frames(episode.frames, resolution, channels_first=True)
            actions[used : used + n] = episode.actions
            poses[used : used + n] = episode.poses
            lengths.append(n)
            used += n
        self.frames = self.frames[:used]
        self.episodes = len(lengths)
        self._init_windows(scheme, window, grid, lengths, actions[:used], poses[:used], f"{root} ({split})")

    def _visual(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {"frames": to_model_range(self.frames[idx])}  # (B, K, 3, H, W)


# -- latents -------------------------------------------------------------------------------------------------


def _cache_dirname(key: str, resolution: tuple[int, int]) -> str:
    """Readable and collision-free: a slug of the key plus a hash of (key, resolution)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:48] or "vae"
    digest = hashlib.sha256(json.dumps([key, list(resolution)]).encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}"


def _source_signature(entry: EpisodeEntry) -> list[list[Any]]:
    """What the latents were computed from: chunk names, frame counts and byte sizes."""
    return [[f.name, f.frames, f.bytes] for f in entry.files]


class LatentCache:
    """Per-episode latents of one VAE (`key`) at one resolution, stored next to the dataset."""

    def __init__(self, root: str | Path, key: str, resolution: tuple[int, int] = DEFAULT_RESOLUTION):
        if not key:
            raise WorldsimError("a latent cache needs a key naming the VAE (e.g. its checkpoint id)")
        self.index = DatasetIndex.load(root)
        self.root, self.key, self.resolution = Path(root), key, tuple(resolution)
        self.dir = self.root / LATENTS_DIR / _cache_dirname(key, self.resolution)
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> dict[str, Any]:
        path = self.dir / LATENT_MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") == self.key and data.get("resolution") == list(self.resolution):
                return data
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as err:
            warnings.warn(f"rebuilding latent cache {path}: unreadable manifest ({err})", CorruptDataWarning,
                          stacklevel=3)
        return {"key": self.key, "resolution": list(self.resolution), "episodes": {}}

    def episode_path(self, episode_id: int) -> Path:
        return self.dir / f"ep{episode_id:06d}.npz"

    def is_fresh(self, entry: EpisodeEntry) -> bool:
        known = self.manifest["episodes"].get(str(entry.id))
        if known is None or known["source"] != _source_signature(entry):
            return False
        path = self.episode_path(entry.id)
        return path.is_file() and path.stat().st_size == known.get("bytes")  # a damaged file is re-encoded

    def missing(self, split: str | None = None) -> list[EpisodeEntry]:
        return [e for e in self.index.select(split) if not self.is_fresh(e)]

    def build(self, encode: Encoder, batch_size: int = 256, split: str | None = None,
              progress: bool = False) -> int:
        """Encode every episode that has no up-to-date latents; returns how many were encoded."""
        remove_stale_files(self.dir, TEMP_FILE)  # what a killed build left half-written
        todo = self.missing(split)
        if not todo:
            return 0
        self.dir.mkdir(parents=True, exist_ok=True)
        entries = {e.id: e for e in todo}
        done = 0
        total = sum(e.frames for e in todo)
        with tqdm(total=total, unit="frame", desc="encode", disable=not progress) as bar:
            for episode in iter_episodes(self.root, index=self.index, entries=todo):
                frames = resize_frames(episode.frames, self.resolution)
                latents = np.concatenate([self._encode(encode, frames[i : i + batch_size])
                                          for i in range(0, len(frames), batch_size)])
                if len(latents) != len(frames) or latents.ndim != 4:
                    raise WorldsimError(f"the encoder returned latents of shape {latents.shape} for "
                                        f"{len(frames)} frames; expected (N, C, h, w)")
                arrays = {"latents": latents, "actions": episode.actions, "poses": episode.poses}
                path = self.episode_path(episode.id)
                atomic_write(path, lambda f, a=arrays: np.savez(f, **a))
                entry = entries[episode.id]
                self.manifest["episodes"][str(episode.id)] = {"frames": len(latents),
                                                              "shape": list(latents.shape[1:]),
                                                              "bytes": path.stat().st_size,
                                                              "source": _source_signature(entry)}
                atomic_write_json(self.dir / LATENT_MANIFEST, self.manifest)  # after each episode: resumable
                bar.update(len(frames))
                done += 1
        return done

    @staticmethod
    def _encode(encode: Encoder, frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = encode(frames)
        if isinstance(out, torch.Tensor):
            out = out.detach().to("cpu", torch.float32).numpy()
        return np.asarray(out, dtype=np.float16)

    def load(self, split: str | None = None) -> list[tuple[EpisodeEntry, dict[str, np.ndarray]]]:
        """(entry, {latents, actions, poses}) for every up-to-date episode; stale, missing or corrupt ones are
        skipped with a CorruptDataWarning (run `build` to fill them in)."""
        out = []
        for entry in self.index.select(split):
            path = self.episode_path(entry.id)
            if not self.is_fresh(entry):
                warnings.warn(f"skipping episode {entry.id}: no up-to-date latents in {self.dir} (run build)",
                              CorruptDataWarning, stacklevel=2)
                continue
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in ("latents", "actions", "poses")}
            except Exception as err:  # noqa: BLE001 - any unreadable cache file is skipped, never fatal
                warnings.warn(f"skipping episode {entry.id}: unreadable latents {path} "
                              f"({type(err).__name__}: {err})", CorruptDataWarning, stacklevel=2)
                continue
            if not len(arrays["latents"]) == len(arrays["actions"]) == len(arrays["poses"]) == entry.frames:
                warnings.warn(f"skipping episode {entry.id}: {path} does not hold {entry.frames} frames",
                              CorruptDataWarning, stacklevel=2)
                continue
            out.append((entry, arrays))
        return out


class LatentWindowDataset(_Windows):
    """Windows of cached latents (float16 in memory, float32 per batch); `grid` defaults to the latents'."""

    def __init__(self, cache: LatentCache, scheme: Scheme, window: int = DEFAULT_WINDOW,
                 split: str | None = "train", grid: tuple[int, int] | None = None):
        check_scheme(scheme, cache.index)
        episodes = cache.load(split)
        if not episodes:
            raise WorldsimError(f"no cached latents for split {split!r} in {cache.dir}; "
                                f"build the cache first")
        shapes = {arrays["latents"].shape[1:] for _, arrays in episodes}
        if len(shapes) != 1:
            raise WorldsimError(f"latents in {cache.dir} have different shapes {sorted(shapes)}; "
                                f"rebuild the cache")
        self.latents = np.concatenate([a["latents"] for _, a in episodes])  # (N, C, h, w) float16
        actions = np.concatenate([a["actions"] for _, a in episodes])
        poses = np.concatenate([a["poses"] for _, a in episodes])
        self.episodes = len(episodes)
        grid = grid if grid is not None else tuple(self.latents.shape[2:])
        self._init_windows(scheme, window, grid, [len(a["latents"]) for _, a in episodes], actions, poses,
                           f"{cache.dir} ({split})", [entry.id for entry, _ in episodes])

    def _visual(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {"latents": torch.from_numpy(self.latents[idx].astype(np.float32))}  # (B, K, C, h, w)
