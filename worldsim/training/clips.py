"""Clips: K consecutive latent frames with the conditions that produced them, and the teacher-forcing view of them.

Alignment (the data layer's convention): condition k produced frame k from frame k - 1; condition 0 is unused.
Teacher forcing therefore generates frames 1..K-1 with recycled inputs 0..K-2 (targets shifted by one frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Clip:
    latents: torch.Tensor  # (B, K, C, h, w)
    frame_cond: torch.Tensor  # (B, K, Cf)
    token_cond: torch.Tensor  # (B, K, Ct, gh, gw)
    # (B, K, C, h, w): the keyframe memory's view of each frame's pose, for worlds that pull toward it; else None
    views: torch.Tensor | None = None

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Clip:
        return Clip(*(None if x is None else x.to(device, dtype, non_blocking=True)
                      for x in (self.latents, self.frame_cond, self.token_cond, self.views)))

    @property
    def first(self) -> torch.Tensor:
        return self.latents[:, 0]

    @property
    def recycled(self) -> torch.Tensor:
        return self.latents[:, :-1]

    def recycled_seen_by(self, generator) -> torch.Tensor:
        """The recycled inputs as `generator` takes them: reprojected by each frame's commanded motion, if it does."""
        return generator.reproject(self.recycled, self.frame_cond[:, 1:])

    @property
    def targets(self) -> torch.Tensor:
        return self.latents[:, 1:]

    @property
    def conditions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditions of frames 1..K-1, lined up with `targets`."""
        return self.frame_cond[:, 1:], self.token_cond[:, 1:]
