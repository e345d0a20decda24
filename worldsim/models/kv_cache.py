"""KVCache: the generator's memory of past frames, preallocated and bounded by construction.

Layout per layer: `k` and `v` of shape (B, heads, (sink + window) * tokens, head_dim). The first `sink * tokens`
entries hold the sink frames (the first frames of the rollout, kept forever); the rest is a ring buffer over the last
`window` frames, written at slot `frame % window`. Memory is fixed at construction: after 100,000 frames it is the
same as after `window` frames.

Ring keys are stored already rotated by their absolute time position, so a step only rotates its own keys. Sink keys
are stored rotated in space only and re-rotated each step to sit just before the window (a fixed distance), so the
first frame never drifts out of the range of relative positions the model was trained on.

`differentiable=True` replaces the buffers out of place instead of writing into them, so gradients flow from later
frames through the cache into the frames that wrote it (student forcing); inference writes in place.
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
                 differentiable: bool = False):
        if window < 1 or sink < 0:
            raise ValueError(f"window must be >= 1 and sink >= 0, got window={window}, sink={sink}")
        self.layers, self.batch, self.heads, self.tokens, self.head_dim = layers, batch, heads, tokens, head_dim
        self.window, self.sink = window, sink
        self.differentiable = differentiable
        length = (sink + window) * tokens
        shape = (layers, batch, heads, length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.sink_k = torch.zeros((layers, batch, heads, sink * tokens, head_dim), device=device, dtype=dtype)
        if differentiable:  # per-layer lists so each write can replace one layer's tensor out of place
            self.k, self.v, self.sink_k = list(self.k), list(self.v), list(self.sink_k)
        self.position = 0  # index of the next frame to be written
        self._masks: dict[int, torch.Tensor] = {}

    @property
    def length(self) -> int:
        return (self.sink + self.window) * self.tokens

    def nbytes(self) -> int:
        tensors = [*self.k, *self.v, *self.sink_k] if self.differentiable else [self.k, self.v, self.sink_k]
        return sum(t.numel() * t.element_size() for t in tensors)

    def reset(self) -> None:
        """Forget everything; the next frame is frame 0. Stale entries are masked out, so no clearing is needed."""
        self.position = 0
        if self.differentiable:  # drop references to the previous rollout's graph
            self.k = [torch.zeros_like(t) for t in self.k]
            self.v = [torch.zeros_like(t) for t in self.v]
            self.sink_k = [torch.zeros_like(t) for t in self.sink_k]

    def detach(self) -> None:
        """Cut the graph at this point (long-video training: the next segment reuses a detached cache)."""
        if self.differentiable:
            self.k = [t.detach() for t in self.k]
            self.v = [t.detach() for t in self.v]
            self.sink_k = [t.detach() for t in self.sink_k]

    def snapshot(self) -> CacheSnapshot:
        stack = (lambda t: torch.stack(t)) if self.differentiable else (lambda t: t)
        return CacheSnapshot(stack(self.k).detach().clone(), stack(self.v).detach().clone(),
                             stack(self.sink_k).detach().clone(), self.position)

    def restore(self, snap: CacheSnapshot) -> None:
        """Rewind to a snapshot (the snapshot stays valid and can be restored again: branching)."""
        if self.differentiable:
            self.k, self.v, self.sink_k = list(snap.k.clone()), list(snap.v.clone()), list(snap.sink_k.clone())
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

    def _device(self) -> torch.device:
        return (self.k[0] if self.differentiable else self.k).device

    # ---- writes ----------------------------------------------------------------------------------------------

    def write(self, layer: int, offset: int, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
        """Store keys (and values) of shape (B, heads, n, head_dim) at entries offset .. offset + n."""
        end = offset + k.shape[2]
        if self.differentiable:
            self.k[layer] = _replace(self.k[layer], offset, end, k)
            if v is not None:
                self.v[layer] = _replace(self.v[layer], offset, end, v)
        else:
            self.k[layer, :, :, offset:end] = k
            if v is not None:
                self.v[layer, :, :, offset:end] = v

    def write_sink_key(self, layer: int, s: int, k_space: torch.Tensor) -> None:
        a, b = s * self.tokens, (s + 1) * self.tokens
        if self.differentiable:
            self.sink_k[layer] = _replace(self.sink_k[layer], a, b, k_space)
        else:
            self.sink_k[layer, :, :, a:b] = k_space

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[layer], self.v[layer]


def _replace(buffer: torch.Tensor, start: int, end: int, values: torch.Tensor) -> torch.Tensor:
    return torch.cat([buffer[:, :, :start], values, buffer[:, :, end:]], 2)
