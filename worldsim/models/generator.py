"""The generator: a block-causal transformer over the latent patches of one frame at a time.

Sections: config and presets; rotary positions over (time, row, column); attention contexts (a KV cache for play
and student forcing, a full block-causal sequence for teacher forcing); the transformer; embedders.

One step = one forward pass: its input is the channel-concatenation of noise, the recycled previous latent and the
per-token condition, so the K/V it computes already describe the previous frame and go straight into the cache (no
second clean pass). Attention is full inside a frame and causal across frames, limited to the last `window` frames
plus `sink` first frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from worldsim.config import rng
from worldsim.models.attention import scaled_dot_product_attention
from worldsim.models.kv_cache import KVCache

# ---- config and presets --------------------------------------------------------------------------------------


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
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        h, w = self.latent_size
        if h % self.patch or w % self.patch:
            raise ValueError(f"latent_size {list(self.latent_size)} must be divisible by patch {self.patch}")
        if self.dim % self.heads or (self.dim // self.heads) % 8:
            raise ValueError(f"dim {self.dim} / heads {self.heads} must give a head size divisible by 8")

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

    Time and space rotate disjoint pairs of dimensions, so the two rotations commute: keys can be rotated in space
    once and in time later (the cache re-times its sink frames this way). Time angles are computed in float64, so
    positions in the hundreds of thousands stay exact.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        head_dim = config.head_dim
        self.time_dims = 2 * max(1, head_dim // 8)  # a quarter of the head
        space_pairs = (head_dim - self.time_dims) // 2
        row_pairs = space_pairs // 2
        inv_time = config.rope_theta_time ** (-torch.arange(self.time_dims // 2, dtype=torch.float64)
                                              / (self.time_dims // 2))
        self.register_buffer("inv_time", inv_time, persistent=False)
        rows, cols = config.grid
        r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        inv_row = config.rope_theta_space ** (-torch.arange(row_pairs, dtype=torch.float64) / max(1, row_pairs))
        col_pairs = space_pairs - row_pairs
        inv_col = config.rope_theta_space ** (-torch.arange(col_pairs, dtype=torch.float64) / max(1, col_pairs))
        angles = torch.cat([r.reshape(-1, 1) * inv_row, c.reshape(-1, 1) * inv_col], 1)  # (tokens, space_pairs)
        self.register_buffer("space_cos", angles.cos().float(), persistent=False)
        self.register_buffer("space_sin", angles.sin().float(), persistent=False)

    def time_angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (len(positions), time_dims / 2) for float64 frame positions."""
        angles = (positions.to(torch.float64)[:, None] * self.inv_time) % (2 * math.pi)
        return angles.cos().float(), angles.sin().float()

    def rotate_space(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, frames * tokens, head_dim): rotate the space part; the token order is frame-major."""
        t = self.time_dims
        frames = x.shape[2] // self.space_cos.shape[0]
        cos, sin = self.space_cos.repeat(frames, 1), self.space_sin.repeat(frames, 1)
        return torch.cat([x[..., :t], _rotate(x[..., t:], cos.to(x.dtype), sin.to(x.dtype))], -1)

    def rotate_time(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, H, N, head_dim), cos/sin (N, time_dims / 2): rotate the time part."""
        t = self.time_dims
        return torch.cat([_rotate(x[..., :t], cos.to(x.dtype), sin.to(x.dtype)), x[..., t:]], -1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x0, x1) of the last dimension by the given angles."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)


# ---- attention contexts: where keys and values come from -------------------------------------------------------


class CacheContext:
    """One step of play/rollout: the current frame's K/V are written into the cache, then it attends to the cache."""

    def __init__(self, cache: KVCache, rotary: Rotary, advance: bool):
        self.cache, self.rotary, self.advance = cache, rotary, advance
        frame = cache.position
        self.frame = frame
        tokens = cache.tokens
        self.q_cos, self.q_sin = (a.repeat_interleave(tokens, 0)
                                  for a in rotary.time_angles(torch.tensor([float(frame)])))
        self.offset = cache.ring_offset(frame)
        sinks = cache.evicted_sinks(frame)
        self.sinks = list(sinks)
        if self.sinks:
            pos = torch.tensor([float(frame - cache.sink_distance(s)) for s in self.sinks])
            self.sink_cos, self.sink_sin = (a.repeat_interleave(tokens, 0) for a in rotary.time_angles(pos))
        self.mask = cache.mask(frame)
        self.store_sink = frame < cache.sink

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q, k, v: (B, H, tokens, head_dim), not yet rotated
        cache, rot = self.cache, self.rotary
        q = rot.rotate_time(rot.rotate_space(q), self.q_cos, self.q_sin)
        k_space = rot.rotate_space(k)
        cache.write(layer, self.offset, rot.rotate_time(k_space, self.q_cos, self.q_sin), v)
        if self.store_sink:
            s = self.frame
            cache.write_sink_key(layer, s, k_space)
            cache.write(layer, s * cache.tokens, k_space, v)  # values of the sink region never change
        if self.sinks:
            n = len(self.sinks) * cache.tokens
            sink_k = rot.rotate_time(cache.sink_k[layer][:, :, :n], self.sink_cos, self.sink_sin)
            cache.write(layer, 0, sink_k)
        keys, values = cache.layer(layer)
        return scaled_dot_product_attention(q, keys, values, self.mask)


class SequenceContext:
    """Teacher forcing / discriminator: all frames at once with the same block-causal, sliding-window visibility as
    a rollout through the cache (tested to give the same frames)."""

    def __init__(self, frames: int, tokens: int, window: int, sink: int, rotary: Rotary, device: torch.device):
        self.frames, self.tokens, self.rotary = frames, tokens, rotary
        pos = torch.arange(frames, dtype=torch.float64)
        self.cos, self.sin = (a.repeat_interleave(tokens, 0).to(device) for a in rotary.time_angles(pos))
        i = torch.arange(frames)[:, None]
        j = torch.arange(frames)[None, :]
        visible = (j <= i) & (j > i - window)  # (query frame, key frame)
        # Sink copies: query frame i sees its own copy of sink frame s once s has left its window.
        self.sink_pairs = [(q, s) for q in range(frames) for s in range(min(sink, frames)) if q - s >= window]
        if self.sink_pairs:
            dist = lambda s: window + sink - 1 - s  # noqa: E731 - same distance as KVCache.sink_distance
            sink_pos = torch.tensor([float(q - dist(s)) for q, s in self.sink_pairs])
            self.sink_cos, self.sink_sin = (a.repeat_interleave(tokens, 0).to(device)
                                            for a in rotary.time_angles(sink_pos))
            extra = torch.zeros(frames, len(self.sink_pairs), dtype=torch.bool)
            for n, (q, _) in enumerate(self.sink_pairs):
                extra[q, n] = True
            visible = torch.cat([visible, extra], 1)
        self.mask = visible.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1).to(device)
        self.sink_index = torch.tensor([s * tokens + t for _, s in self.sink_pairs for t in range(tokens)],
                                       dtype=torch.long, device=device)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # q, k, v: (B, H, frames * tokens, head_dim)
        rot = self.rotary
        q = rot.rotate_time(rot.rotate_space(q), self.cos, self.sin)
        k_space = rot.rotate_space(k)
        keys = rot.rotate_time(k_space, self.cos, self.sin)
        values = v
        if self.sink_pairs:
            sink_k = rot.rotate_time(k_space[:, :, self.sink_index], self.sink_cos, self.sink_sin)
            keys = torch.cat([keys, sink_k], 2)
            values = torch.cat([v, v[:, :, self.sink_index]], 2)
        return scaled_dot_product_attention(q, keys, values, self.mask)


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

    def forward(self, x: torch.Tensor, layer: int, context: CacheContext | SequenceContext) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, N, hd)
        out = context.attend(layer, self.q_norm(q), self.k_norm(k), v)  # (B, H, N, hd)
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

    def forward(self, x: torch.Tensor, c: torch.Tensor, layer: int, context) -> torch.Tensor:
        # x (B, frames, tokens, D); c (B, frames, D)
        B, Fr, T, D = x.shape
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(F.silu(c)).unsqueeze(2).chunk(6, -1)
        h = self.norm1(x) * (1 + scale_a) + shift_a
        x = x + gate_a * self.attn(h.reshape(B, Fr * T, D), layer, context).view(B, Fr, T, D)
        h = self.norm2(x) * (1 + scale_m) + shift_m
        return x + gate_m * self.mlp(h)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        C, p = config.latent_channels, config.patch
        in_features = 2 * C * p * p + config.token_cond_channels  # patches of (noise, recycled) + token condition
        self.patch_in = nn.Linear(in_features, config.dim)
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

    def new_cache(self, batch: int = 1, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  differentiable: bool = False) -> KVCache:
        c = self.config
        return KVCache(c.depth, batch, c.heads, c.tokens, c.head_dim, c.window, c.sink, device, dtype,
                       differentiable)

    def _embed(self, noisy, recycled, token_cond, frame_cond, t, aug):
        """Inputs (B, F, C, h, w) / (B, F, Cf) / (B, F) -> tokens (B, F, T, D) and conditioning (B, F, D)."""
        x = patchify(torch.cat([noisy, recycled], 2), self.config.patch)  # (B, F, T, 2 C p p)
        if token_cond is not None and token_cond.shape[2]:
            x = torch.cat([x, token_cond.flatten(3).transpose(2, 3)], -1)  # + (B, F, T, Ct), row-major like patches
        x = self.patch_in(x)
        c = self.time_embed(t) + self.aug_embed(aug)
        if self.frame_embed is not None:
            c = c + self.frame_embed(frame_cond)
        return x, c

    def _run(self, x, c, context, return_features: bool = False):
        for layer, block in enumerate(self.blocks):
            if self.config.grad_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, c, layer, context, use_reentrant=False)
            else:
                x = block(x, c, layer, context)
        if return_features:
            return x
        shift, scale = self.modulation_out(F.silu(c)).unsqueeze(2).chunk(2, -1)
        out = self.patch_out(self.norm_out(x) * (1 + scale) + shift)  # (B, F, T, C * p * p)
        h, w = self.config.latent_size
        return unpatchify(out, self.config.patch, h, w)

    def step(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
             frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor, cache: KVCache,
             advance: bool = True) -> torch.Tensor:
        """One frame, one forward pass: (B, C, h, w) inputs -> velocity (B, C, h, w); writes this frame's K/V.

        `advance=False` re-evaluates the same frame (multi-step sampling): the K/V of the last call are the ones kept.
        """
        one = lambda a: None if a is None else a.unsqueeze(1)  # noqa: E731 - add the frame axis
        x, c = self._embed(one(noisy), one(recycled), one(token_cond), one(frame_cond), t[:, None], aug[:, None])
        out = self._run(x, c, CacheContext(cache, self.rotary, advance))[:, 0]
        if advance:
            cache.position += 1
        return out + t.view(-1, 1, 1, 1).to(out.dtype) * noisy if self.config.residual else out

    def forward(self, noisy: torch.Tensor, recycled: torch.Tensor, token_cond: torch.Tensor | None,
                frame_cond: torch.Tensor | None, t: torch.Tensor, aug: torch.Tensor,
                return_features: bool = False) -> torch.Tensor:
        """All frames at once, block-causal (teacher forcing): (B, F, C, h, w) inputs, t/aug (B, F) -> (B, F, ...)."""
        B, Fr = noisy.shape[:2]
        x, c = self._embed(noisy, recycled, token_cond, frame_cond, t, aug)
        context = SequenceContext(Fr, self.config.tokens, self.config.window, self.config.sink, self.rotary,
                                  noisy.device)
        out = self._run(x, c, context, return_features)
        if return_features or not self.config.residual:
            return out
        return out + t.reshape(B, Fr, 1, 1, 1).to(out.dtype) * noisy


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
