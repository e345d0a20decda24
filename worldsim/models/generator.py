"""The generator: a block-causal transformer over the latent patches of one frame at a time.

Sections: config and presets; rotary positions over (time, row, column); attention contexts (a KV cache for play
and student forcing, a full block-causal sequence for teacher forcing); the transformer; embedders.

One step = one forward pass: its input is the channel-concatenation of noise, the recycled previous latent and the
per-token condition, so the K/V it computes already describe the previous frame and go straight into the cache (no
second clean pass). Attention is full inside a frame and causal across frames, limited to the last `window` frames
plus `sink` first frames. A world with a keyframe memory may also have each frame attend to the recorded view
of its pose as extra tokens of that frame (`memory_channels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from worldsim.config import rng
from worldsim.models.attention import scaled_dot_product_attention
from worldsim.models.kv_cache import KVCache
from worldsim.models.vae import decode_bfloat16, encode_bfloat16

# ---- config and presets --------------------------------------------------------------------------------------

REVEAL_FILLS = ("edge", "zero")  # GeneratorConfig.reveal


@dataclass(frozen=True)
class GeneratorConfig:
    latent_channels: int = field(default=8, metadata=rng(1, 1024))
    latent_size: tuple[int, int] = (12, 16)  # (h, w) of one latent frame
    patch: int = field(default=2, metadata=rng(1, 16))
    dim: int = field(default=256, metadata=rng(8, 16384))
    depth: int = field(default=6, metadata=rng(1, 256))
    heads: int = field(default=4, metadata=rng(1, 256))
    mlp_ratio: float = field(default=4.0, metadata=rng(0.5, 16.0))
    window: int = field(default=16, metadata=rng(1, 4096))  # frames attended, the current one included
    sink: int = field(default=1, metadata=rng(0, 64))  # first frames kept in attention forever
    frame_cond_dim: int = field(default=4, metadata=rng(0, 4096))  # per-frame condition (drives adaLN)
    token_cond_channels: int = field(default=6, metadata=rng(0, 4096))  # per-token condition map channels
    rope_theta_time: float = field(default=1000.0, metadata=rng(1.0, 1e7))
    rope_theta_space: float = field(default=100.0, metadata=rng(1.0, 1e7))
    # Generate the change from the recycled frame instead of the frame itself, with a skip (v += t * x_t) so that an
    # untrained network already copies the previous frame at t = 1: the baseline a small world model struggles to
    # beat is where training starts, and capacity goes to what changes.
    residual: bool = False
    # Motion made explicit (camera schemes): the recycled frame is turned by the commanded yaw before the network sees
    # it, a pinhole reprojection of the latent columns that is exact for a pure rotation. A few degrees of turn move
    # the image by a fraction of a token, which a small model does not learn to draw from the ray maps alone.
    # (index of yaw in frame_cond, degrees per unit, horizontal field of view in degrees); empty: off.
    yaw_reprojection: tuple[float, ...] = ()
    # What the columns a turn reveals (seen by no column of the recycled frame) hold: "edge", the edge column
    # repeated; "zero", the latents' mean (they are normalised), so the generator is not shown a smeared edge
    reveal: Literal["edge", "zero"] = "edge"
    # The turn is made on the decoded frame, which is encoded again (by the VAE the caller passes to `reproject`):
    # a latent column is 8 pixels, and a latent moved by a fraction of a column decodes as a cross-fade of two
    # positions, not a move, so a picture turned in latent columns follows a turn at a fraction of its rate
    turn_in_pixels: bool = False
    # Motion made explicit by the world instead (maps with walls): the recycled latent arrives warped by the player's
    # move, turn included, with depth from the map's walls as a camera of this horizontal fov (degrees) sees it
    # (worldsim/world/warp.py). Whoever holds the poses and walls warps it (the session, the training clips), not the
    # network; it replaces yaw_reprojection. 0: off
    warp_fov: float = field(default=0.0, metadata=rng(0.0, 179.0))
    # The last this many token-condition channels are a keyframe view of the frame's pose (patches and offset maps,
    # worldsim/world/memory.py) that the frame attends to as extra tokens, the way it attends to the sink frame,
    # instead of taking it in its own input; 0: none
    memory_channels: int = field(default=0, metadata=rng(0, 4096))
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        h, w = self.latent_size
        if h % self.patch or w % self.patch:
            raise ValueError(f"latent_size {list(self.latent_size)} must be divisible by patch {self.patch}")
        if self.reveal not in REVEAL_FILLS:
            raise ValueError(f"reveal {self.reveal!r} is not one of {list(REVEAL_FILLS)}")
        if self.memory_channels > self.token_cond_channels:
            raise ValueError(f"memory_channels {self.memory_channels} are the last of the token condition's "
                             f"{self.token_cond_channels} channels, so at most that many")
        if self.dim % self.heads or (self.dim // self.heads) % 8:
            raise ValueError(f"dim {self.dim} / heads {self.heads} must give a head size divisible by 8")
        if self.warp_fov and self.yaw_reprojection:
            raise ValueError("warp_fov and yaw_reprojection both reproject the recycled frame (the warp turns it "
                             "too): set one of them")
        if self.turn_in_pixels and not self.yaw_reprojection:
            raise ValueError("turn_in_pixels says how the recycled frame is turned: it needs yaw_reprojection")
        if self.yaw_reprojection:
            if len(self.yaw_reprojection) != 3:
                raise ValueError(f"yaw_reprojection must be [yaw index, degrees per unit, fov] or empty, got "
                                 f"{list(self.yaw_reprojection)}")
            index, _, fov = self.yaw_reprojection
            if not (0 <= index < self.frame_cond_dim and index == int(index)) or not 0 < fov < 180:
                raise ValueError(f"yaw_reprojection {list(self.yaw_reprojection)}: the yaw index must name one of "
                                 f"the {self.frame_cond_dim} frame_cond entries and the fov lie in (0, 180)")

    @property
    def grid(self) -> tuple[int, int]:
        return self.latent_size[0] // self.patch, self.latent_size[1] // self.patch

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


# Architecture presets by name; the latent shape and condition sizes come from the VAE and the scheme.
GENERATOR_PRESETS: dict[str, dict] = {
    "tiny": dict(dim=32, depth=2, heads=2, window=4, sink=1),  # tests: runs in milliseconds
    "world-s": dict(dim=256, depth=6, heads=4, window=16, sink=1, residual=True),  # the shipped CPU world
    "world-m": dict(dim=384, depth=8, heads=6, window=16, sink=1, residual=True),  # the runtime's CPU speed target
    "world-l": dict(dim=1024, depth=16, heads=16, window=24, sink=1, residual=True),  # one GPU
    # AAPT's 8B-class configuration (36 blocks), for throughput measurements with random weights on a GPU.
    "paper-scale": dict(dim=4096, depth=36, heads=32, window=30, sink=1, mlp_ratio=4.0),
}

# ---- rotary positions over (time, row, column) -----------------------------------------------------------------


class Rotary(nn.Module):
    """RoPE with the head split into a time part and a space part (rows, columns).

    A rotation is applied as `x * cos + swap_pairs(x) * sin` with full-width tables (`sin` carries each pair's
    sign), so rotating the queries and keys of every head in time and space takes three element-wise ops. Time and
    space rotate disjoint pairs of dimensions, so a key rotated at its own time can be rotated further in time later
    (the cache re-times its sink frames this way). Time angles are computed in float64 on the CPU, so positions in the
    hundreds of thousands stay exact whatever the model's dtype and device.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        head_dim = config.head_dim
        self.time_dims = 2 * max(1, head_dim // 8)  # a quarter of the head
        self.tokens = config.tokens
        space_pairs = (head_dim - self.time_dims) // 2
        row_pairs = space_pairs // 2
        # A plain attribute, not a buffer: `module.to(dtype)` would round a buffer to the model's precision.
        time_pairs = torch.arange(self.time_dims // 2, dtype=torch.float64, device="cpu")
        self.inv_time = config.rope_theta_time ** (-time_pairs / (self.time_dims // 2))
        rows, cols = config.grid
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        inv_row = config.rope_theta_space ** (-torch.arange(row_pairs, dtype=torch.float64) / max(1, row_pairs))
        col_pairs = space_pairs - row_pairs
        inv_col = config.rope_theta_space ** (-torch.arange(col_pairs, dtype=torch.float64) / max(1, col_pairs))
        angles = torch.cat([r.reshape(-1, 1) * inv_row, c.reshape(-1, 1) * inv_col], 1)  # (tokens, space_pairs)
        space_cos, space_sin = _full_width(angles.cos(), angles.sin())  # (tokens, head_dim - time_dims)
        self.register_buffer("space_cos", space_cos.float(), persistent=False)
        self.register_buffer("space_sin", space_sin.float(), persistent=False)

    def time_angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (len(positions), time_dims / 2) for frame positions (float32, on the CPU)."""
        angles = (positions.to("cpu", torch.float64)[:, None] * self.inv_time) % (2 * math.pi)
        return angles.cos().float(), angles.sin().float()

    def tables(self, positions: torch.Tensor, space: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-width rotation tables (len(positions) * tokens, head_dim) for the tokens of frames at `positions`
        (frame-major): time and space, or time only (`space=False`: the space dimensions are left as they are)."""
        cos, sin = _full_width(*self.time_angles(positions))  # (frames, time_dims)
        frames, device = len(positions), self.space_cos.device
        cos = cos.to(device).repeat_interleave(self.tokens, 0)  # (frames * tokens, time_dims)
        sin = sin.to(device).repeat_interleave(self.tokens, 0)
        if space:
            rest_cos, rest_sin = self.space_cos.repeat(frames, 1), self.space_sin.repeat(frames, 1)
        else:
            rest_cos, rest_sin = self.space_cos.new_ones(()), self.space_sin.new_zeros(())
            rest_cos, rest_sin = (t.expand(frames * self.tokens, self.space_cos.shape[1]) for t in (rest_cos, rest_sin))
        return torch.cat([cos, rest_cos], 1), torch.cat([sin, rest_sin], 1)


    def step_tables(self, frame: int, sink_positions: list[float]) -> tuple[torch.Tensor, ...]:
        """`tables` for one cached step, computed in numpy (a few microseconds, where a dozen tiny torch ops cost
        ~100 us per frame): rope tables (tokens, head_dim) of `frame` in time and space, and time-only tables
        (len(sink_positions) * tokens, head_dim) for the sink keys."""
        angles = np.outer(np.array([frame, *sink_positions], dtype=np.float64), self.inv_time.numpy()) % (2 * math.pi)
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
        full_cos, full_sin = np.repeat(cos, 2, 1), np.empty((len(angles), self.time_dims), dtype=np.float32)
        full_sin[:, 0::2], full_sin[:, 1::2] = -sin, sin
        device, td, sd = self.space_cos.device, self.time_dims, self.space_cos.shape[1]
        full_cos, full_sin = torch.from_numpy(full_cos).to(device), torch.from_numpy(full_sin).to(device)
        rope_cos = torch.cat([full_cos[0].expand(self.tokens, td), self.space_cos], 1)
        rope_sin = torch.cat([full_sin[0].expand(self.tokens, td), self.space_sin], 1)
        n = len(sink_positions) * self.tokens
        sink_cos = torch.cat([full_cos[1:].repeat_interleave(self.tokens, 0), full_cos.new_ones(()).expand(n, sd)], 1)
        sink_sin = torch.cat([full_sin[1:].repeat_interleave(self.tokens, 0), full_sin.new_zeros(()).expand(n, sd)], 1)
        return rope_cos, rope_sin, sink_cos, sink_sin


def _full_width(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair cos, sin (..., pairs) -> tables (..., 2 * pairs) for `rotate`: cos repeated, sin as (-sin, +sin)."""
    return cos.repeat_interleave(2, -1), torch.stack([-sin, sin], -1).flatten(-2)


def swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (x1, x0, x3, x2, ...) along the last dimension."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x0, x1) of the last dimension: (x0 cos - x1 sin, x1 cos + x0 sin)."""
    return torch.addcmul(x * cos, swap_pairs(x), sin)


def fold_scales(cos: torch.Tensor, sin: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables (N, hd) and per-channel scales (..., hd) -> tables (..., N, 1, hd) that scale, then rotate.

    rotate(w * x) = x * (w * cos) + swap_pairs(x) * (swap_pairs(w) * sin): the q/k RMSNorm scales ride along with
    the rotation instead of costing two more passes over q and k. `scales` (layers, 2, hd) gives (layers, N, 2, 1, hd)
    for the (B, N, 2, heads, hd) layout of stacked queries and keys.
    """
    cos, sin = cos[:, None, None, :], sin[:, None, None, :]  # (N, 1, 1, hd)
    w = scales.unsqueeze(-2).unsqueeze(-4)  # (..., 1, 2, 1, hd)
    w_swapped = swap_pairs(scales).unsqueeze(-2).unsqueeze(-4)
    return cos * w, sin * w_swapped


# ---- attention contexts: where keys and values come from -------------------------------------------------------


@dataclass
class StepPlan:
    """Everything a cached step needs that depends on the frame's position, as tensors: with it the step is one fixed
    graph for every frame (what the ONNX export, torch.compile and CUDA graphs need)."""

    rope_cos: torch.Tensor  # (tokens, head_dim): this frame's rotation, time and space (queries and keys)
    rope_sin: torch.Tensor
    sink_cos: torch.Tensor  # (sink * tokens, head_dim): time rotation of each stored sink key to its seat
    sink_sin: torch.Tensor
    write_index: torch.Tensor  # (tokens,) long: the ring entries this frame's keys and values go to
    sink_index: torch.Tensor  # (tokens,) long: the sink entries it is stored at, when `store_sink`
    key_index: torch.Tensor  # (sink * tokens + tokens,) long: the sink seats, then write_index (one scatter)
    value_index: torch.Tensor  # (2 * tokens,) long: write_index, then sink_index when storing, else write_index again
    store_sink: torch.Tensor  # () bool: this frame is one of the first `sink` frames
    mask: torch.Tensor | None  # (1, length) bool: the entries it may attend to; None: all of them
    storing_sink: bool  # store_sink as a Python bool, for eager steps that skip the store


def plan_step(cache: KVCache, rotary: Rotary, full_mask: bool = False) -> StepPlan:
    """The plan of the frame at `cache.position`, on the cache's device. `full_mask=True` gives a mask tensor also in
    the steady state, where every entry is visible (a graph with a fixed set of inputs)."""
    frame, device = cache.position, cache.device
    # Sink s is stored as written at its own time s and seen at time frame - sink_distance(s): rotate by the
    # difference. For sinks still inside the window the mask hides the result.
    delta = [float(frame - cache.sink_distance(s) - s) for s in range(cache.sink)]
    rope_cos, rope_sin, sink_cos, sink_sin = rotary.step_tables(frame, delta)
    storing = frame < cache.sink
    write_index, sink_index = cache.write_index(frame), cache.sink_index(frame if storing else 0)
    mask = cache.mask(frame)
    if mask is None and full_mask:
        mask = cache.full_mask()
    return StepPlan(rope_cos.to(device), rope_sin.to(device), sink_cos.to(device), sink_sin.to(device),
                    write_index, sink_index, cache.key_index(frame),
                    torch.cat([write_index, sink_index if storing else write_index]),
                    torch.tensor(storing, device=device), mask, storing)


class CacheContext:
    """One step of play/rollout: the current frame's K/V are written into the cache, then it attends to the cache.

    The cache tensors are the stacked (layers, B, heads, length, head_dim) buffers written in place (inference), or
    per-layer lists whose entries are replaced out of place (`in_place=False`: gradients flow through the cache in
    student forcing; the ONNX export returns the new tensors). `traced=True` makes the step branch-free in the
    frame's position (the sink store becomes a select), so one exported graph serves every frame.
    """

    def __init__(self, k, v, sink_k, plan: StepPlan, qk_scales: torch.Tensor, in_place: bool = True,
                 traced: bool = False):
        self.k, self.v, self.sink_k = k, v, sink_k
        self.plan, self.in_place, self.traced = plan, in_place, traced
        dtype = qk_scales.dtype
        # 1. rotation tables of every layer, with its q/k norm scales folded in: (layers, tokens, 2, 1, head_dim)
        self.rope_cos, self.rope_sin = fold_scales(plan.rope_cos.to(dtype), plan.rope_sin.to(dtype), qk_scales)
        # 2. the sink keys of every layer rotated to their seats just before the window: (layers, B, H, n, hd)
        stored = sink_k if isinstance(sink_k, torch.Tensor) else torch.stack(sink_k)
        self.sink_entries = stored.shape[3]
        self.sink_keys = rotate(stored, plan.sink_cos.to(dtype), plan.sink_sin.to(dtype))
        self.sinks_written = False
        if in_place and self.sink_entries and isinstance(k, torch.Tensor):
            k[:, :, :, : self.sink_entries] = self.sink_keys  # every layer at once
            self.sinks_written = True
        self.sink_range = torch.arange(self.sink_entries, device=plan.write_index.device)
        self.memory_mask = None  # the mask with an attended view's tokens, made by the first layer that has one

    def attend(self, layer: int, qk: torch.Tensor, v: torch.Tensor, memory=None) -> torch.Tensor:
        # qk (B, T, 2, H, hd): queries and keys RMS-normalised without their scales; v (B, T, H, hd);
        # memory: keys normalised like qk's and values (B, T, H, hd) of the frame's keyframe view, or None
        p = self.plan
        qk = rotate(qk, self.rope_cos[layer], self.rope_sin[layer])
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), v.transpose(1, 2)  # (B, H, T, hd)
        if self.in_place:
            keys, values = self.k[layer], self.v[layer]  # (B, H, length, hd) views of the buffers
            k, v = k.to(keys.dtype), v.to(values.dtype)  # autocast computes in a lower precision than the cache
            if self.sink_entries and not self.sinks_written:
                keys[:, :, : self.sink_entries] = self.sink_keys[layer]
            keys.index_copy_(2, p.write_index, k)
            values.index_copy_(2, p.write_index, v)
            if p.storing_sink:  # the sink region's values never change after this; its keys are re-timed per step
                self.sink_k[layer].index_copy_(2, p.sink_index, k)
                values.index_copy_(2, p.sink_index, v)
        else:
            keys = self.k[layer]
            k, v = k.to(keys.dtype), v.to(keys.dtype)
            if self.sink_entries:  # the re-timed sink keys and this frame's keys in one scatter
                keys = _scatter(keys, p.key_index, torch.cat([self.sink_keys[layer], k], 2))
            else:  # key_index is write_index when there are no sinks
                keys = _scatter(keys, p.key_index, k)
            if self.traced:  # branch-free: value_index repeats the ring entries when no sink is stored
                values = _scatter(self.v[layer], p.value_index, torch.cat([v, v], 2))
                self.sink_k[layer] = torch.where(p.store_sink, _scatter(self.sink_k[layer], p.sink_index, k),
                                                 self.sink_k[layer])
            else:  # (duplicate indices would double gradients, so training takes the branch)
                values = _scatter(self.v[layer], p.write_index, v)
                if p.storing_sink:
                    self.sink_k[layer] = _scatter(self.sink_k[layer], p.sink_index, k)
                    values = _scatter(values, p.sink_index, v)
            self.k[layer], self.v[layer] = keys, values
        if memory is None:
            return scaled_dot_product_attention(q, keys, values, p.mask)
        # the view sits where this frame does, in time and space (it is already turned into the current view); it is
        # attended, never stored
        memory_k = rotate(memory[0], self.rope_cos[layer][:, 1], self.rope_sin[layer][:, 1]).transpose(1, 2)
        keys = torch.cat([keys, memory_k.to(keys.dtype)], 2)
        values = torch.cat([values, memory[1].transpose(1, 2).to(values.dtype)], 2)
        if p.mask is not None and self.memory_mask is None:
            self.memory_mask = torch.cat([p.mask, p.mask.new_ones(1, memory_k.shape[2])], 1)
        return scaled_dot_product_attention(q, keys, values, self.memory_mask)


def _scatter(buffer: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`buffer` (B, H, length, hd) with entries `index` replaced by `values`, out of place (differentiable).

    Written as an indexed assignment into a copy rather than `index_copy`: the two are the same in torch, but this
    one exports to ONNX as ScatterND, which onnxruntime runs about twice as fast as index_copy's ScatterElements."""
    out = buffer.clone()
    out[:, :, index] = values
    return out


class SequenceContext:
    """Teacher forcing / discriminator: all frames at once with the same block-causal, sliding-window visibility as
    a rollout through the cache (tested to give the same frames)."""

    def __init__(self, frames: int, tokens: int, window: int, sink: int, rotary: Rotary, device: torch.device,
                 qk_scales: torch.Tensor):
        self.frames, self.tokens, self.qk_scales = frames, tokens, qk_scales
        dtype = qk_scales.dtype
        cos, sin = rotary.tables(torch.arange(frames, dtype=torch.float64))  # (frames * tokens, hd)
        self.cos, self.sin = cos.to(device, dtype), sin.to(device, dtype)
        i = torch.arange(frames)[:, None]
        j = torch.arange(frames)[None, :]
        visible = (j <= i) & (j > i - window)  # (query frame, key frame)
        # Sink copies: query frame i sees its own copy of sink frame s once s has left its window.
        self.sink_pairs = [(q, s) for q in range(frames) for s in range(min(sink, frames)) if q - s >= window]
        if self.sink_pairs:
            dist = lambda s: window + sink - 1 - s  # noqa: E731 - same distance as KVCache.sink_distance
            # the copy is seen at time q - dist(s); its key was rotated at time s: rotate by the difference
            delta = torch.tensor([float(q - dist(s) - s) for q, s in self.sink_pairs])
            sink_cos, sink_sin = rotary.tables(delta, space=False)
            self.sink_cos, self.sink_sin = sink_cos.to(device, dtype), sink_sin.to(device, dtype)
            extra = torch.zeros(frames, len(self.sink_pairs), dtype=torch.bool)
            for n, (q, _) in enumerate(self.sink_pairs):
                extra[q, n] = True
            visible = torch.cat([visible, extra], 1)
        self.mask = visible.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1).to(device)
        self.sink_index = torch.tensor([s * tokens + t for _, s in self.sink_pairs for t in range(tokens)],
                                       dtype=torch.long, device=device)
        self._memory_mask = None

    def memory_mask(self) -> torch.Tensor:
        """The mask with each frame's keyframe view appended: frame i sees its own view and no other."""
        if self._memory_mask is None:
            own = torch.eye(self.frames, dtype=torch.bool, device=self.mask.device)
            own = own.repeat_interleave(self.tokens, 0).repeat_interleave(self.tokens, 1)
            self._memory_mask = torch.cat([self.mask, own], 1)
        return self._memory_mask

    def attend(self, layer: int, qk: torch.Tensor, v: torch.Tensor, memory=None) -> torch.Tensor:
        # qk (B, frames * tokens, 2, H, hd) normalised without scales; v (B, frames * tokens, H, hd); memory: as in
        # CacheContext.attend, for every frame
        cos, sin = fold_scales(self.cos, self.sin, self.qk_scales[layer])  # (frames * tokens, 2, 1, hd)
        qk = rotate(qk, cos, sin)
        q, keys, values = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), v.transpose(1, 2)
        if self.sink_pairs:
            sink_k = rotate(keys[:, :, self.sink_index], self.sink_cos, self.sink_sin)
            keys = torch.cat([keys, sink_k], 2)
            values = torch.cat([values, values[:, :, self.sink_index]], 2)
        if memory is None:
            return scaled_dot_product_attention(q, keys, values, self.mask)
        memory_k = rotate(memory[0], cos[:, 1], sin[:, 1]).transpose(1, 2)
        keys = torch.cat([keys, memory_k.to(keys.dtype)], 2)
        values = torch.cat([values, memory[1].transpose(1, 2).to(values.dtype)], 2)
        return scaled_dot_product_attention(q, keys, values, self.memory_mask())


# ---- the transformer ----------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class Attention(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.heads, self.head_dim = config.heads, config.head_dim
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.q_norm = RMSNorm(config.head_dim)  # qk-norm keeps attention logits bounded in long rollouts
        self.k_norm = RMSNorm(config.head_dim)
        self.proj = nn.Linear(config.dim, config.dim)
        # this layer's keys and values of the keyframe view's tokens (the view is embedded once for all layers)
        self.memory_kv = nn.Linear(config.dim, 2 * config.dim) if config.memory_channels else None

    def forward(self, x: torch.Tensor, layer: int, context: CacheContext | SequenceContext,
                memory: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, self.head_dim)
        # q and k normalised in one pass; their scales (q_norm, k_norm weights) are folded into the context's
        # rotation tables (Generator.qk_scales), so the rotation applies them for free.
        qk = F.rms_norm(qkv[:, :, :2], (self.head_dim,), None, self.q_norm.eps)  # (B, N, 2, H, hd)
        memory_kv = None
        if memory is not None:  # (B, N, D) view tokens -> keys normalised like this layer's, values
            memory_k, memory_v = self.memory_kv(memory).view(B, N, 2, self.heads, self.head_dim).unbind(2)
            memory_kv = (F.rms_norm(memory_k, (self.head_dim,), None, self.k_norm.eps), memory_v)
        out = context.attend(layer, qk, qkv[:, :, 2], memory_kv)  # (B, H, N, hd)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation from the frame's conditioning vector."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        hidden = int(config.dim * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(config.dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, config.dim))
        self.modulation = nn.Linear(config.dim, 6 * config.dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, layer: int, context, memory=None) -> torch.Tensor:
        # x (B, frames, tokens, D); c (B, frames, D); memory: the keyframe view's tokens like x, or None
        B, Fr, T, D = x.shape
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(c)).unsqueeze(2).chunk(6, -1)
        h = torch.addcmul(shift_a, self.norm1(x), 1 + scale_a)  # fused multiply-adds: fewer passes, same math
        memory = None if memory is None else memory.reshape(B, Fr * T, D)
        x = torch.addcmul(x, gate_a, self.attn(h.reshape(B, Fr * T, D), layer, context, memory).view(B, Fr, T, D))
        h = torch.addcmul(shift_m, self.norm2(x), 1 + scale_m)
        return torch.addcmul(x, gate_m, self.mlp(h))


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        C, p = config.latent_channels, config.patch
        # patches of (noise, recycled) + the token condition, less the keyframe view the frame attends to
        in_features = 2 * C * p * p + config.token_cond_channels - config.memory_channels
        self.patch_in = nn.Linear(in_features, config.dim)
        self.memory_in = (nn.Sequential(nn.Linear(config.memory_channels, config.dim), nn.SiLU(),
                                        nn.Linear(config.dim, config.dim)) if config.memory_channels else None)
        self.time_embed = TimestepEmbedder(config.dim)
        self.aug_embed = TimestepEmbedder(config.dim)  # noise level added to the recycled frame in training
        self.frame_embed = (nn.Sequential(nn.Linear(config.frame_cond_dim, config.dim), nn.SiLU(),
                                          nn.Linear(config.dim, config.dim)) if config.frame_cond_dim else None)
        self.rotary = Rotary(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(config.dim, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Linear(config.dim, 2 * config.dim)
        self.patch_out = nn.Linear(config.dim, C * p * p)
        for layer in (self.modulation_out, self.patch_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def to_frame(self, output: torch.Tensor, recycled: torch.Tensor) -> torch.Tensor:
        """The generated latent frame from the model's clean output (x0 of the flow)."""
        return output + recycled if self.config.residual else output

    def to_output(self, frame: torch.Tensor, recycled: torch.Tensor) -> torch.Tensor:
        """The clean training target (x0 of the flow) for a real latent frame."""
        return frame - recycled if self.config.residual else frame

    def with_token_channels(self, channels: int, memory_channels: int = 0) -> Generator:
        """A copy taking `channels` token-condition channels (more than now: e.g. a keyframe memory added to a trained
        world), the last `memory_channels` of them a keyframe view it attends to. New inputs start with zero weights
        and a new view with zero values, so the copy computes what this one does, but for the share of attention
        the view's tokens take until trained."""
        old, old_memory = self.config.token_cond_channels, self.config.memory_channels
        if (channels < old or (old_memory and memory_channels != old_memory)
                or (not old_memory and memory_channels > channels - old)):
            raise ValueError(f"token condition channels can only grow, with the attended view's kept and a new "
                             f"view made of new channels ({old} with {old_memory} attended -> {channels} with "
                             f"{memory_channels})")
        weight = self.patch_in.weight
        widened = Generator(replace(self.config, token_cond_channels=channels, memory_channels=memory_channels))
        widened = widened.to(weight.device, weight.dtype)
        state = {**widened.state_dict(), **self.state_dict()}  # what this one has, the view's parts as initialised
        grown = weight.new_zeros(widened.patch_in.weight.shape)
        grown[:, : weight.shape[1]] = weight.detach()
        state["patch_in.weight"] = grown
        if memory_channels and not old_memory:
            for layer in range(self.config.depth):
                state[f"blocks.{layer}.attn.memory_kv.weight"][self.config.dim:] = 0  # the values
                state[f"blocks.{layer}.attn.memory_kv.bias"][self.config.dim:] = 0
        widened.load_state_dict(state)
        return widened.train(self.training)

    def reproject(self, recycled: torch.Tensor, frame_cond: torch.Tensor | None, vae: nn.Module | None = None
                  ) -> torch.Tensor:
        """The recycled latent as the commanded camera will see it; the network's input and residual base.

        recycled (..., C, h, w) with frame_cond (..., Cf): one frame or a sequence. Identity unless configured.
        A generator that turns in pixels (`turn_in_pixels`) needs the `vae` to decode and encode through.
        """
        if not self.config.yaw_reprojection or frame_cond is None:
            return recycled
        index, degrees_per_unit, fov = self.config.yaw_reprojection
        degrees = frame_cond[..., int(index)] * degrees_per_unit
        if not self.config.turn_in_pixels:
            return turn_columns(recycled, degrees, fov, self.config.reveal)
        if vae is None:
            raise ValueError("this generator is shown its recycled frame turned in pixels (turn_in_pixels): "
                             "reproject() needs the VAE to decode and encode it through")
        return turn_in_pixels(recycled, degrees, fov, vae, self.config.reveal)

    def new_cache(self, batch: int = 1, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  differentiable: bool = False, per_layer: bool = False) -> KVCache:
        c = self.config
        return KVCache(c.depth, batch, c.heads, c.tokens, c.head_dim, c.window, c.sink, device, dtype,
                       differentiable, per_layer)

    def _embed(self, noisy, recycled, token_cond, frame_cond, t, aug):
        """Inputs (B, F, C, h, w) / (B, F, Cf) / (B, F) -> tokens (B, F, T, D), conditioning (B, F, D) and the
        keyframe view's tokens (B, F, T, D) or None."""
        x = patchify(torch.cat([noisy, recycled], 2), self.config.patch)  # (B, F, T, 2 C p p)
        memory = None
        if token_cond is not None and token_cond.shape[2]:
            cond = token_cond.flatten(3).transpose(2, 3)  # (B, F, T, Ct), row-major like patches
            if self.config.memory_channels:
                cond, view = cond.split([cond.shape[-1] - self.config.memory_channels, self.config.memory_channels], -1)
                memory = self.memory_in(view)
            x = torch.cat([x, cond], -1)
        x = self.patch_in(x)
        c = self.time_embed(t) + self.aug_embed(aug)
        if self.frame_embed is not None:
            c = c + self.frame_embed(frame_cond)
        return x, c, memory

    def _run(self, x, c, context, memory=None, return_features: bool = False):
        for layer, block in enumerate(self.blocks):
            if self.config.grad_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, c, layer, context, memory, use_reentrant=False)
            else:
                x = block(x, c, layer, context, memory)
        if return_features:
            return x
        shift, scale = self.modulation_out(F.silu(c)).unsqueeze(2).chunk(2, -1)
        out = self.patch_out(self.norm_out(x) * (1 + scale) + shift)  # (B, F, T, C * p * p)
        h, w = self.config.latent_size
        return unpatchify(out, self.config.patch, h, w)

    def qk_scales(self) -> torch.Tensor:
        """(depth, 2, head_dim): every layer's q and k RMSNorm weights, applied inside the rotary tables."""
        return torch.stack([w for block in self.blocks for w in (block.attn.q_norm.weight, block.attn.k_norm.weight)]
                           ).view(self.config.depth, 2, self.config.head_dim)

    def step(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
             frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor, cache: KVCache,
             advance: bool = True) -> torch.Tensor:
        """One frame, one forward pass: (B, C, h, w) inputs -> velocity (B, C, h, w); writes this frame's K/V.

        `advance=False` re-evaluates the same frame (multi-step sampling): the K/V of the last call are the ones kept.
        """
        plan = plan_step(cache, self.rotary)
        out, k, v, sink_k = self.cached_step(noisy, recycled, token_cond, frame_cond, t, aug, cache.k, cache.v,
                                             cache.sink_k, plan, in_place=not cache.differentiable)
        if cache.differentiable:
            cache.k, cache.v, cache.sink_k = k, v, sink_k
        if advance:
            cache.position += 1
        return out

    def cached_step(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
                    frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor, k, v, sink_k,
                    plan: StepPlan, in_place: bool = True, traced: bool = False):
        """`step` on explicit cache tensors and a plan: the form backends compile, capture and export.

        k, v, sink_k: the stacked (depth, B, H, length, hd) buffers, written in place, or (`in_place=False`) lists of
        per-layer tensors, returned replaced. Returns (velocity, k, v, sink_k).
        """
        one = lambda a: None if a is None else a.unsqueeze(1)  # noqa: E731 - add the frame axis
        x, c, memory = self._embed(one(noisy), one(recycled), one(token_cond), one(frame_cond), t[:, None],
                                   aug[:, None])
        if not in_place:
            k, v, sink_k = list(k), list(v), list(sink_k)
        context = CacheContext(k, v, sink_k, plan, self.qk_scales().to(x.dtype), in_place, traced)
        out = self._run(x, c, context, memory)[:, 0]
        if self.config.residual:
            out = out + t.view(-1, 1, 1, 1).to(out.dtype) * noisy
        return out, context.k, context.v, context.sink_k

    def forward(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
                frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor,
                return_features: bool = False) -> torch.Tensor:
        """All frames at once, block-causal (teacher forcing): (B, F, C, h, w) inputs, t/aug (B, F) -> (B, F, ...)."""
        B, Fr = noisy.shape[:2]
        x, c, memory = self._embed(noisy, recycled, token_cond, frame_cond, t, aug)
        context = SequenceContext(Fr, self.config.tokens, self.config.window, self.config.sink, self.rotary,
                                  noisy.device, self.qk_scales().to(x.dtype))
        out = self._run(x, c, context, memory, return_features)
        if return_features or not self.config.residual:
            return out
        return out + t.reshape(B, Fr, 1, 1, 1).to(out.dtype) * noisy


def turn_columns(latent: torch.Tensor, degrees: torch.Tensor, fov: float, reveal: str = "edge") -> torch.Tensor:
    """Resample the columns of (..., C, h, w) latents as a pinhole camera turned right by `degrees` (...) sees them.

    Output column x' shows the direction at x = tan(atan(x') + yaw) of the old image plane (linear interpolation).
    Columns outside the old image are revealed: they repeat its edge (`reveal="edge"`) or are zero ("zero"). Rows
    are kept: the vertical stretch of a few degrees is under a tenth of a cell.
    """
    W = latent.shape[-1]
    half = math.tan(math.radians(fov) / 2)
    columns = torch.arange(W, device=latent.device, dtype=torch.float32)
    x_out = ((columns + 0.5) / W * 2 - 1) * half
    x_src = torch.tan(torch.atan(x_out) + torch.deg2rad(degrees.float())[..., None])  # (..., W)
    unclamped = (x_src / half + 1) / 2 * W - 0.5
    src = unclamped.clamp(0, W - 1)
    weights = (1 - (src[..., None] - columns).abs()).clamp_min(0)  # (..., W out, W in): linear interpolation
    if reveal == "zero":  # fade to zero over the column past the edge, so a small turn stays continuous
        weights = weights * (1 - (unclamped - src).abs()).clamp_min(0)[..., None]
    return torch.einsum("...chj,...ij->...chi", latent, weights.to(latent.dtype))


PIXEL_BATCH = 64  # frames decoded at once by `turn_in_pixels`: the decoder's activations of hundreds are GBs


def turn_in_pixels(latent: torch.Tensor, degrees: torch.Tensor, fov: float, vae: nn.Module,
                   reveal: str = "edge") -> torch.Tensor:
    """`turn_columns` made on the decoded frames of (..., C, h, w) latents, encoded again; a frame that does not
    turn keeps its latent exactly (no round trip). The recycled frame is data, never trained through: no gradient,
    and the round trip runs in bfloat16 (twice as fast; over 480 frames of play the same picture as float32 to
    0.01 dB)."""
    shape = latent.shape
    flat, flat_degrees = latent.reshape(-1, *shape[-3:]), degrees.reshape(-1)
    turning = (flat_degrees != 0).nonzero()[:, 0]
    if len(turning) == 0:
        return latent
    turned = []
    for part in turning.split(PIXEL_BATCH):
        pixels = decode_bfloat16(vae, flat[part])
        with torch.no_grad(), torch.autocast(latent.device.type, enabled=False):  # the move itself in float32
            moved = turn_columns(pixels, flat_degrees[part].float(), fov, reveal)
        turned.append(encode_bfloat16(vae, moved, latent.dtype))
    return flat.index_copy(0, turning, torch.cat(turned)).reshape(shape)


# ---- embedders ----------------------------------------------------------------------------------------------


class TimestepEmbedder(nn.Module):
    """Scalar in [0, 1] -> sinusoidal features -> MLP (as in DiT)."""

    def __init__(self, dim: int, frequencies: int = 128):
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))
        half = frequencies // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t.float() * 1000.0)[..., None] * self.freqs
        return self.mlp(torch.cat([args.cos(), args.sin()], -1).to(self.mlp[0].weight.dtype))


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, F, C, h, w) -> (B, F, (h/p)*(w/p), C*p*p), tokens in row-major order."""
    B, Fr, C, h, w = x.shape
    x = x.reshape(B, Fr, C, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(B, Fr, (h // p) * (w // p), C * p * p)


def unpatchify(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """(B, F, T, C*p*p) -> (B, F, C, h, w)."""
    B, Fr, T, D = x.shape
    C = D // (p * p)
    x = x.reshape(B, Fr, h // p, w // p, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(B, Fr, C, h, w)
