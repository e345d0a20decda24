"""KVCache: the generator's memory of past frames, preallocated and bounded by construction.

Layout per layer: `k` and `v` of shape (B, heads, (sink + window) * tokens, head_dim). The first `sink * tokens`
entries hold the sink frames (the first frames of the rollout, kept forever); the rest is a ring buffer over the last
`window` frames, written at slot `frame % window`. Memory is fixed at construction: after 100,000 frames it is the
same as after `window` frames.

Keys are stored already rotated by their absolute time position, so a step only rotates its own keys. A sink frame's
keys are also kept in `sink_k` as written, and rotated further each step to sit just before the window (a fixed
distance), so the first frame never drifts out of the range of relative positions the model was trained on.

`differentiable=True` replaces the buffers out of place instead of writing into them, so gradients flow from later
frames through the cache into the frames that wrote it (student forcing); inference writes in place.
`per_layer=True` keeps one separately allocated buffer per layer (lists, written in place, never reallocated): what
compiled steps, CUDA graphs and ONNX Runtime bindings need, since a write into a view of one stacked buffer would
be traced as a copy of all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CacheSnapshot:
    k: torch.Tensor
    v: torch.Tensor
    sink_k: torch.Tensor
    position: int


class KVCache:
    def __init__(self, layers: int, batch: int, heads: int, tokens: int, head_dim: int, window: int, sink: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 differentiable: bool = False, per_layer: bool = False):
        if window < 1 or sink < 0:
            raise ValueError(f"window must be >= 1 and sink >= 0, got window={window}, sink={sink}")
        self.layers, self.batch, self.heads, self.tokens, self.head_dim = layers, batch, heads, tokens, head_dim
        self.window, self.sink = window, sink
        self.differentiable = differentiable
        self.layered = differentiable or per_layer  # per-layer lists rather than stacked tensors
        length = (sink + window) * tokens
        shape = (batch, heads, length, head_dim)
        sink_shape = (batch, heads, sink * tokens, head_dim)
        if self.layered:  # lists, so each layer is its own buffer (differentiable: replaced out of place)
            new = lambda s: [torch.zeros(s, device=device, dtype=dtype) for _ in range(layers)]  # noqa: E731
        else:
            new = lambda s: torch.zeros((layers, *s), device=device, dtype=dtype)  # noqa: E731
        self.k, self.v, self.sink_k = new(shape), new(shape), new(sink_shape)
        self.position = 0  # index of the next frame to be written
        self._masks: dict[int, torch.Tensor] = {}
        self._indices: dict = {}  # index tensors by what they index, built once

    @property
    def length(self) -> int:
        return (self.sink + self.window) * self.tokens

    def nbytes(self) -> int:
        tensors = [*self.k, *self.v, *self.sink_k] if self.layered else [self.k, self.v, self.sink_k]
        return sum(t.numel() * t.element_size() for t in tensors)

    def reset(self) -> None:
        """Forget everything; the next frame is frame 0.

        Stale entries are masked out, but they are zeroed too: a masked NaN still poisons attention (softmax
        weight 0 x NaN = NaN), so a reset must also recover from a faulty rollout.
        """
        self.position = 0
        if self.differentiable:  # new tensors: also drops references to the previous rollout's graph
            self.k = [torch.zeros_like(t) for t in self.k]
            self.v = [torch.zeros_like(t) for t in self.v]
            self.sink_k = [torch.zeros_like(t) for t in self.sink_k]
        else:  # in place: the buffers keep their addresses (bound graphs read them there)
            with torch.no_grad():
                for group in (self.k, self.v, self.sink_k):
                    for buffer in group if self.layered else (group,):
                        buffer.zero_()

    def detach(self) -> None:
        """Cut the graph at this point (long-video training: the next segment reuses a detached cache)."""
        if self.differentiable:
            self.k = [t.detach() for t in self.k]
            self.v = [t.detach() for t in self.v]
            self.sink_k = [t.detach() for t in self.sink_k]

    def snapshot(self) -> CacheSnapshot:
        stack = (lambda t: torch.stack(t)) if self.layered else (lambda t: t)
        return CacheSnapshot(stack(self.k).detach().clone(), stack(self.v).detach().clone(),
                             stack(self.sink_k).detach().clone(), self.position)

    def restore(self, snap: CacheSnapshot) -> None:
        """Rewind to a snapshot (the snapshot stays valid and can be restored again: branching)."""
        if self.differentiable:
            self.k, self.v, self.sink_k = list(snap.k.clone()), list(snap.v.clone()), list(snap.sink_k.clone())
        elif self.layered:  # in place: the buffers keep their addresses (bound graphs read them there)
            for buffers, saved in ((self.k, snap.k), (self.v, snap.v), (self.sink_k, snap.sink_k)):
                for buffer, layer in zip(buffers, saved):
                    buffer.copy_(layer)
        else:
            self.k.copy_(snap.k)
            self.v.copy_(snap.v)
            self.sink_k.copy_(snap.sink_k)
        self.position = snap.position

    # ---- positions -------------------------------------------------------------------------------------------

    def ring_offset(self, frame: int) -> int:
        return (self.sink + frame % self.window) * self.tokens

    def sink_distance(self, s: int) -> int:
        """Relative time distance at which evicted sink frame `s` is seen: just before the window's oldest frame."""
        return self.window + self.sink - 1 - s

    def evicted_sinks(self, frame: int) -> range:
        """Sink frames no longer inside the window when `frame` is generated (they are read from the sink region)."""
        return range(min(self.sink, max(0, frame - self.window + 1)))

    def mask(self, frame: int) -> torch.Tensor | None:
        """Which cache entries `frame` may attend to (its own entries are written before attending), (length,)."""
        if frame >= self.window + self.sink - 1:  # steady state: ring full and every sink evicted
            return None
        key = frame
        if key not in self._masks:
            valid = torch.zeros(self.sink + self.window, dtype=torch.bool)
            valid[: len(self.evicted_sinks(frame))] = True
            valid[self.sink: self.sink + min(frame + 1, self.window)] = True
            self._masks[key] = valid.repeat_interleave(self.tokens)[None].to(self._device())  # (1, length)
        return self._masks[key]

    def full_mask(self) -> torch.Tensor:
        """Every entry visible, (1, length): the steady-state mask for graphs that always take one."""
        if -1 not in self._masks:
            self._masks[-1] = torch.ones((1, self.length), dtype=torch.bool, device=self.device)
        return self._masks[-1]

    def write_index(self, frame: int) -> torch.Tensor:
        """The ring entries of `frame`, (tokens,) long."""
        return self._entries(self.ring_offset(frame))

    def sink_index(self, s: int) -> torch.Tensor:
        """The entries of sink frame `s`, (tokens,) long (in `sink_k` and at the start of `k` / `v`)."""
        return self._entries(s * self.tokens)

    def key_index(self, frame: int) -> torch.Tensor:
        """The sink seats at the start of `k`, then the ring entries of `frame`: (sink * tokens + tokens,) long."""
        key = ("keys", self.ring_offset(frame))
        if key not in self._indices:
            self._indices[key] = torch.cat([torch.arange(self.sink * self.tokens, device=self.device),
                                            self.write_index(frame)])
        return self._indices[key]

    def _entries(self, start: int) -> torch.Tensor:
        if start not in self._indices:
            self._indices[start] = torch.arange(start, start + self.tokens, device=self.device)
        return self._indices[start]

    @property
    def device(self) -> torch.device:
        return (self.k[0] if self.layered else self.k).device

    def _device(self) -> torch.device:
        return self.device

    # ---- writes ----------------------------------------------------------------------------------------------

    def write(self, layer: int, offset: int, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
        """Store keys (and values) of shape (B, heads, n, head_dim) at entries offset .. offset + n."""
        end = offset + k.shape[2]
        if self.differentiable:
            self.k[layer] = _replace(self.k[layer], offset, end, k)
            if v is not None:
                self.v[layer] = _replace(self.v[layer], offset, end, v)
        else:
            self.k[layer][:, :, offset:end] = k
            if v is not None:
                self.v[layer][:, :, offset:end] = v

    def write_sink_key(self, layer: int, s: int, keys: torch.Tensor) -> None:
        """Keep sink frame `s`'s keys (B, heads, tokens, head_dim) as written, rotated at time `s`."""
        a, b = s * self.tokens, (s + 1) * self.tokens
        if self.differentiable:
            self.sink_k[layer] = _replace(self.sink_k[layer], a, b, keys)
        else:
            self.sink_k[layer][:, :, a:b] = keys

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[layer], self.v[layer]


def _replace(buffer: torch.Tensor, start: int, end: int, values: torch.Tensor) -> torch.Tensor:
    return torch.cat([buffer[:, :, :start], values, buffer[:, :, end:]], 2)
