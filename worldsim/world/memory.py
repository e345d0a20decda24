"""Posed keyframe memory: recorded latents with the poses they were seen from, retrieved by the player's pose.

The world was recorded from known poses, and the nearest recorded view of a pose is nearly what the engine shows
there (a probe: 23 dB from the engine's frame, sharp, no drift). So a world with a memory does not have to invent
the room from its own drifting frames: every step the keyframe nearest to the pose being generated is retrieved,
turned by the heading difference (the same pinhole reprojection as the recycled frame), and handed to the generator
as part of its per-token condition, with the remaining offset (forward, right, heading) as constant maps. The
generator's job becomes refining a known view for the exact pose and the recent frames. The view (with its offset
maps) reaches the generator one of two ways: as more input channels of each token (`condition`), where each token
finds its part of it in place, since it is already turned into the current view; or (`attend`) as extra tokens of
the frame that it attends to the way it attends to the sink frame (GeneratorConfig.memory_channels), which are
attended and never stored, so the KV cache stays as it is.

The memory is chosen to cover the map: one keyframe per (cell of `cell` map units, heading bin), the recorded frame
nearest to that bin's centre. Distances mix position and heading: `heading_weight` map units per degree.

The memory can also hold the world at play without conditioning (`pull`): the recycled latent is pulled toward
the keyframe of its pose before each step, so drift cannot pile up.

Frames the player generates can be written back (`write_back` slots, `WrittenViews`): each (cell, heading bin) keeps
the frame its first visit settled on, and coming back there pulls toward it instead of the recorded keyframe, so a
place looks the way the player first saw it (a door they opened stays open). Written frames are made under the
keyframe's pull, so the pull never follows a chain of generated frames; the oldest write goes when the slots are
full.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from worldsim.config import rng
from worldsim.models.generator import PIXEL_BATCH, turn_columns
from worldsim.models.vae import VAE, decode_bfloat16, encode_bfloat16
from worldsim.world.walls import Walls
from worldsim.world.warp import warp_fields, warp_latent

OFFSET_CHANNELS = 3  # forward and right offset of the keyframe's camera from the current one, heading difference
SETTLE_FRAMES = 35  # a written-back view settles over its bin's first 2 s (at 17.5 fps), then is frozen


@dataclass(frozen=True)
class MemoryConfig:
    keyframes: int = field(default=0, metadata=rng(0, 1_000_000))  # at most this many; 0: no memory
    cell: float = field(default=32.0, metadata=rng(1.0, 100_000.0))  # map units per coverage cell
    heading_bins: int = field(default=16, metadata=rng(1, 360))
    heading_weight: float = field(default=2.0, metadata=rng(0.0, 1000.0))  # map units one degree counts as
    offset_scale: float = field(default=64.0, metadata=rng(0.01, 100_000.0))  # map units per unit of offset map
    fov: float = field(default=90.0, metadata=rng(10.0, 170.0))  # the recorded camera's, for the reprojection
    condition: bool = True  # the generator takes the keyframe as part of its token condition (its anchor)
    # ... and attends to it as extra tokens of each frame (as to the sink frame) instead of taking it as input
    attend: bool = False
    # At play, the recycled latent is pulled this far toward the keyframe of the pose it was seen from before the
    # step (0: off): drift cannot pile up where the world is pulled back to what was recorded there.
    pull: float = field(default=0.0, metadata=rng(0.0, 1.0))
    # The pull moves only the average of blocks of this many latent cells a side (1: every cell): the keyframe then
    # anchors the layout of the picture, and its detail stays the generator's own
    pull_scale: int = field(default=1, metadata=rng(1, 64))
    # At play, the first frame generated in each (cell, heading bin) is written back, at most this many (0: off),
    # and the pull goes toward it there instead of the recorded keyframe (WrittenViews)
    write_back: int = field(default=0, metadata=rng(0, 1_000_000))
    # The pulled view (keyframe or written) is warped from the pose it was seen from to the pose it is pulled at, the
    # whole move with depth from the map's walls (warp.py), instead of only turned to its heading: the target moves
    # with the player within a keyframe's cell instead of jumping from cell to cell. Needs the map's walls.
    warp_views: bool = False
    # The pulled view is turned or warped in pixels (decoded, moved, encoded again) instead of in latent columns. A
    # latent column is several pixels (8 in the shipped world), and a latent moved by a fraction of one decodes as
    # a cross-fade of two positions, not as a move: the view then steps from column to column, and pulled toward it
    # the picture turns at half the engine's rate. Costs a VAE round trip (bfloat16) per frame that moves.
    pixel_views: bool = False

    def __post_init__(self) -> None:
        if self.attend and not self.condition:
            raise ValueError("memory.attend: the generator attends to the keyframe it is conditioned on, so it needs "
                             "memory.condition: true")

    @property
    def enabled(self) -> bool:
        return self.keyframes > 0

    def attended_channels(self, latent_channels: int, patch: int) -> int:
        """The anchor channels the generator attends to as the view's tokens (GeneratorConfig.memory_channels)."""
        return self.anchor_channels(latent_channels, patch) if self.attend else 0

    def anchor_channels(self, latent_channels: int, patch: int) -> int:
        """Token-condition channels the memory adds: the keyframe's patches and the offset maps."""
        return latent_channels * patch * patch + OFFSET_CHANNELS if self.enabled and self.condition else 0


def pull_toward(latent: torch.Tensor, view: torch.Tensor, pull: float, scale: int = 1) -> torch.Tensor:
    """The recycled latent (..., C, h, w) pulled `pull` of the way toward `view`; with `scale` > 1 only its coarse
    layout (the mean over scale x scale blocks, spread back smoothly) moves. Play and training share it."""
    if scale <= 1:
        return torch.lerp(latent, view, pull)
    gap = (view - latent).flatten(0, -4)
    coarse = F.interpolate(F.avg_pool2d(gap, scale, ceil_mode=True), size=gap.shape[-2:], mode="bilinear",
                           align_corners=False)
    return latent + pull * coarse.reshape(latent.shape)


def seen_from(latents: torch.Tensor, was: np.ndarray, now: np.ndarray, fov: float,
              walls: Walls | None = None, vae: VAE | None = None, decoded: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Views (M, C, h, w) seen from poses `was` (M, 3) shown from poses `now` (M, 3): turned by the heading
    difference, or with `walls` warped by the whole move with depth from them; with `vae` the move is made on the
    decoded pixels (`decoded`: the caller has them already), which are encoded again (`MemoryConfig.pixel_views`)."""
    if vae is not None and len(latents) > PIXEL_BATCH:  # the decoder's activations of many frames at once: GBs
        return torch.cat([seen_from(latents[i: i + PIXEL_BATCH], was[i: i + PIXEL_BATCH], now[i: i + PIXEL_BATCH],
                                    fov, walls, vae, None if decoded is None else decoded[i: i + PIXEL_BATCH])
                          for i in range(0, len(latents), PIXEL_BATCH)])
    if vae is not None:
        # a view is data, never trained through, and only a target the recycled latent is pulled part of the way
        # toward: its round trip through the VAE runs in bfloat16 (0.01 of a latent's unit off, 1.5x faster)
        decoded = decode_bfloat16(vae, latents) if decoded is None else decoded
        return encode_bfloat16(vae, seen_from(decoded, was, now, fov, walls), latents.dtype)
    if walls is None:
        return turn_columns(latents, torch.from_numpy(wrap_degrees(was[:, 2] - now[:, 2])), fov)
    fields = warp_fields(np.stack([was, now], 1), walls, fov, latents.shape[-1])[:, 1]  # (M, 2, w)
    return warp_latent(latents, fields[:, 0], fields[:, 1])


class DecodedViews:
    """The last few views a player was pulled toward, decoded (`MemoryConfig.pixel_views`): a player stays by one
    keyframe or written view for many frames, and each would otherwise be decoded again every frame."""

    def __init__(self, kept: int = 16):
        self.kept = kept
        self.entries: OrderedDict[object, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def get(self, key: object, latent: torch.Tensor, vae: VAE) -> torch.Tensor:
        """The pixels of `latent` (1, C, h, w), known by `key` (decoded again if the latent under it changed)."""
        found = self.entries.get(key)
        if found is None or not torch.equal(found[0], latent):
            found = (latent, decode_bfloat16(vae, latent))
            self.entries[key] = found
            if len(self.entries) > self.kept:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return found[1]


def wrap_degrees(angle: np.ndarray) -> np.ndarray:
    return (np.asarray(angle, dtype=np.float64) + 180.0) % 360.0 - 180.0


class KeyframeMemory:
    def __init__(self, config: MemoryConfig, latents: torch.Tensor, poses: np.ndarray, episodes: np.ndarray):
        if not (len(latents) == len(poses) == len(episodes)) or len(latents) == 0:
            raise ValueError(f"a keyframe memory needs as many latents, poses and episode ids, at least one; got "
                             f"{len(latents)}, {len(poses)}, {len(episodes)}")
        self.config = config
        self.latents = latents  # (N, C, h, w), float16 as shipped
        self.poses = np.asarray(poses, dtype=np.float64)  # (N, 3) x, y, heading
        self.episodes = np.asarray(episodes, dtype=np.int64)  # (N,) the recorded episode of each keyframe
        self.decoded = DecodedViews()  # keyframes recently moved in pixels (`MemoryConfig.pixel_views`)

    def __len__(self) -> int:
        return len(self.latents)

    @classmethod
    def build(cls, config: MemoryConfig, latents: np.ndarray, poses: np.ndarray, episodes: np.ndarray
              ) -> KeyframeMemory:
        """Choose keyframes covering the map from recorded latents (N, C, h, w), poses (N, 3), episode ids (N,)."""
        poses = np.asarray(poses, dtype=np.float64)
        bin_width = 360.0 / config.heading_bins
        cells = np.floor(poses[:, :2] / config.cell).astype(np.int64)
        bins = np.floor((poses[:, 2] % 360.0) / bin_width).astype(np.int64) % config.heading_bins
        centre = np.concatenate([(cells + 0.5) * config.cell, ((bins + 0.5) * bin_width)[:, None]], 1)
        distance = _distance(poses, centre, config.heading_weight)
        keys = np.stack([cells[:, 0], cells[:, 1], bins], 1)
        # per (cell, bin): the frame nearest its centre (lexsort: by key, then distance, then index: deterministic)
        order = np.lexsort((np.arange(len(poses)), distance, keys[:, 2], keys[:, 1], keys[:, 0]))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (np.diff(keys[order], axis=0) != 0).any(1)
        chosen = order[first]
        if len(chosen) > config.keyframes:  # keep the bins visited most often (where a player is most likely)
            _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
            visits = counts[inverse.reshape(-1)][chosen]
            chosen = chosen[np.lexsort((chosen, -visits))[: config.keyframes]]
        chosen = np.sort(chosen)
        return cls(config, torch.from_numpy(np.ascontiguousarray(latents[chosen])).to(torch.float16),
                   poses[chosen], np.asarray(episodes)[chosen])

    def nearest(self, poses: np.ndarray, exclude_episodes: np.ndarray | None = None) -> np.ndarray:
        """Index of the nearest keyframe to each pose (..., 3); `exclude_episodes` (...) leaves out keyframes of
        the same recorded episode (training: a clip must not find its own frames). Ties go to the lower index."""
        poses = np.asarray(poses, dtype=np.float64)
        flat = poses.reshape(-1, 3)
        distance = _distance(flat[:, None, :], self.poses[None], self.config.heading_weight)  # (M, N)
        if exclude_episodes is not None:
            same = np.asarray(exclude_episodes).reshape(-1)[:, None] == self.episodes[None]
            distance = np.where(same, np.inf, distance)
        return distance.argmin(1).reshape(poses.shape[:-1])

    def views(self, poses: np.ndarray, exclude_episodes: np.ndarray | None = None,
              dtype: torch.dtype = torch.float32, walls: Walls | None = None, vae: VAE | None = None
              ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """The nearest keyframe of each pose (M, 3) turned to its heading, or with `walls` warped to the pose
        (`MemoryConfig.warp_views`), in pixels with `vae` (`MemoryConfig.pixel_views`): latents (M, C, h, w), the
        keyframes' poses (M, 3), and the turn (M,) in degrees (the current camera is the keyframe's turned right by
        it)."""
        index = self.nearest(poses, exclude_episodes).reshape(-1)
        keys = self.poses[index]
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
        turn = wrap_degrees(keys[:, 2] - poses[:, 2])
        latents = self.latents[torch.from_numpy(index)].to(dtype)
        decoded = None  # one view, as the session asks every frame: its keyframe's pixels are kept
        if vae is not None and len(index) == 1:
            decoded = self.decoded.get((id(vae), int(index[0])), latents, vae)
        return seen_from(latents, keys, poses, self.config.fov, walls, vae, decoded), keys, turn

    def anchor_tokens(self, poses: np.ndarray, patch: int, exclude_episodes: np.ndarray | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The memory's part of the token condition for frames seen from `poses` (..., 3):
        (..., C * patch * patch + 3, h / patch, w / patch)."""
        poses = np.asarray(poses, dtype=np.float64)
        flat = poses.reshape(-1, 3)
        latents, keys, turn = self.views(flat, exclude_episodes, dtype)
        M, C, h, w = latents.shape
        gh, gw = h // patch, w // patch
        patches = latents.reshape(M, C, gh, patch, gw, patch).permute(0, 1, 3, 5, 2, 4).reshape(M, -1, gh, gw)
        heading = np.radians(flat[:, 2])
        delta = keys[:, :2] - flat[:, :2]
        forward = delta[:, 0] * np.cos(heading) + delta[:, 1] * np.sin(heading)
        right = delta[:, 0] * np.sin(heading) - delta[:, 1] * np.cos(heading)
        offsets = np.stack([forward / self.config.offset_scale, right / self.config.offset_scale, turn / 45.0], 1)
        offsets = torch.from_numpy(offsets).to(dtype)[:, :, None, None].expand(M, OFFSET_CHANNELS, gh, gw)
        return torch.cat([patches, offsets], 1).reshape(*poses.shape[:-1], -1, gh, gw)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"latents": self.latents.to(torch.float16).contiguous(), "poses": torch.from_numpy(self.poses),
                "episodes": torch.from_numpy(self.episodes)}

    @classmethod
    def from_tensors(cls, config: MemoryConfig, tensors: dict[str, torch.Tensor]) -> KeyframeMemory:
        missing = {"latents", "poses", "episodes"} - set(tensors)
        if missing:
            raise ValueError(f"memory weights lack {sorted(missing)}")
        return cls(config, tensors["latents"], tensors["poses"].double().numpy(), tensors["episodes"].numpy())


def _distance(a: np.ndarray, b: np.ndarray, heading_weight: float) -> np.ndarray:
    position = np.sqrt(((a[..., :2] - b[..., :2]) ** 2).sum(-1))
    return position + heading_weight * np.abs(wrap_degrees(a[..., 2] - b[..., 2]))


class WrittenViews:
    """Frames generated at play, kept by the (cell, heading bin) of the pose they were seen from (`MemoryConfig`'s
    bins); the oldest bin goes when `slots` are full. Lives in the session's state.

    A bin's frame settles over its first SETTLE_FRAMES frames (each frame generated there in that time replaces
    it), while the pull still goes toward the recorded keyframe; after that it is frozen, and the pull goes toward
    it. So every written frame was made under the keyframe's pull, and the pull never follows a chain of generated
    frames (measured: pulling toward the first frame generated in a bin at once lets the drift run from bin to bin,
    and the world collapses as it did with no memory)."""

    def __init__(self, config: MemoryConfig, slots: int):
        self.config, self.slots = config, slots
        # bin -> (latent, the pose it was seen from, the frame its bin was first written)
        self.entries: OrderedDict[tuple[int, int, int], tuple[torch.Tensor, np.ndarray, int]] = OrderedDict()
        self.decoded = DecodedViews()  # written views recently moved in pixels

    def __len__(self) -> int:
        return len(self.entries)

    def key(self, pose: np.ndarray) -> tuple[int, int, int]:
        bins = self.config.heading_bins
        cx, cy = np.floor(np.asarray(pose[:2], dtype=np.float64) / self.config.cell).astype(np.int64)
        return int(cx), int(cy), int(np.floor((float(pose[2]) % 360.0) / (360.0 / bins))) % bins

    def write(self, pose: np.ndarray, latent: torch.Tensor, frame: int, settled: bool = False) -> None:
        """Keep `latent` (1, C, h, w), generated at `frame` from `pose` (x, y, heading), in its bin unless the bin
        has settled; `settled`: it needs no settling (a real frame: the place as it is)."""
        key = self.key(pose)
        first = frame - SETTLE_FRAMES if settled else frame
        if key in self.entries:
            first = self.entries[key][2]
            if frame - first >= SETTLE_FRAMES:
                return
        elif len(self.entries) >= self.slots:
            self.entries.popitem(last=False)
        self.entries[key] = (latent.detach().clone(), np.array(pose, dtype=np.float64), first)

    def view(self, pose: np.ndarray, frame: int, walls: Walls | None = None,
             vae: VAE | None = None) -> torch.Tensor | None:
        """The settled frame of the bin of `pose`, turned to its heading (with `walls`: warped to it; with `vae`: in
        pixels), or None."""
        found = self.entries.get(self.key(pose))
        if found is None or frame - found[2] < SETTLE_FRAMES:
            return None
        latent, written_at, _ = found
        decoded = None if vae is None else self.decoded.get((id(vae), self.key(pose)), latent, vae)
        return seen_from(latent, written_at[None], np.asarray(pose, dtype=np.float64)[None], self.config.fov, walls,
                         vae, decoded)

    def copy(self) -> WrittenViews:
        """A copy for a snapshot (the latents are never changed in place, so they are shared)."""
        out = WrittenViews(self.config, self.slots)
        out.entries = OrderedDict(self.entries)
        return out
