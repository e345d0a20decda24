"""Clips: K consecutive latent frames with the conditions that produced them, and the teacher-forcing view of them.

Alignment (the data layer's convention): condition k produced frame k from frame k - 1; condition 0 is unused.
Teacher forcing therefore generates frames 1..K-1 with recycled inputs 0..K-2 (targets shifted by one frame).
A world that warps its recycled frame by the move (GeneratorConfig.warp_fov) gets the warps with the clip: warp k
carries frame k - 1 to frame k's pose, as the session warps it at play.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from worldsim.world.warp import warp_latent


@dataclass
class Clip:
    latents: torch.Tensor  # (B, K, C, h, w)
    frame_cond: torch.Tensor  # (B, K, Cf)
    token_cond: torch.Tensor  # (B, K, Ct, gh, gw)
    # (B, K, C, h, w): the keyframe memory's view of each frame's pose, for worlds that pull toward it; else None
    views: torch.Tensor | None = None
    # (B, K, 2, w) float64: the warp fields (worldsim/world/warp.py) of the recorded moves, for worlds that warp,
    # and the poses (B, K, 3) float64 they were made from
    warps: torch.Tensor | None = None
    poses: torch.Tensor | None = None
    # the VAE the clip's latents were encoded by: a generator that turns its recycled frame in pixels
    # (GeneratorConfig.turn_in_pixels) decodes and encodes it through this one
    vae: torch.nn.Module | None = field(default=None, repr=False)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Clip:
        return Clip(*(None if x is None else x.to(device, dtype, non_blocking=True)
                      for x in (self.latents, self.frame_cond, self.token_cond, self.views)),
                    *(None if x is None else x.to(device, non_blocking=True)  # fields and poses stay exact
                      for x in (self.warps, self.poses)), self.vae)

    @property
    def first(self) -> torch.Tensor:
        return self.latents[:, 0]

    @property
    def recycled(self) -> torch.Tensor:
        return self.latents[:, :-1]

    def recycled_seen_by(self, generator) -> torch.Tensor:
        """The recycled inputs as `generator` takes them: reprojected by each frame's commanded motion, if it does."""
        return self.seen_by(generator, self.recycled)

    def check_warps(self, generator) -> None:
        """A generator trained on warped recycled frames gets clips with warps, and only it: a world that warps and
        is shown unwarped frames, or one that turns them and is shown warped ones, would train on the wrong input."""
        if bool(generator.config.warp_fov) != (self.warps is not None):
            raise ValueError("this generator " + ("is shown its recycled frame warped by the move (warp_fov), but "
                                                  "the clip has no warps" if generator.config.warp_fov else
                                                  "does not warp its recycled frame, but the clip carries warps"))

    def seen_by(self, generator, previous: torch.Tensor) -> torch.Tensor:
        """Frames (B, K - 1, C, h, w) recycled into frames 1..K-1 (the real ones or a rollout's) as `generator`
        takes them: warped by the recorded moves (a world that warps), or turned by the commanded yaw."""
        self.check_warps(generator)
        if self.warps is not None:
            previous = warp_latent(previous, self.warps[:, 1:, 0], self.warps[:, 1:, 1])
        return generator.reproject(previous, self.frame_cond[:, 1:], self.vae)

    def warp(self, latent: torch.Tensor, frame: int) -> torch.Tensor:
        """A (B, C, h, w) latent recycled into frame `frame`, warped by the move into it (the identity without
        warps): what the session does to its recycled latent before each step."""
        if self.warps is None:
            return latent
        return warp_latent(latent, self.warps[:, frame, 0], self.warps[:, frame, 1])

    @property
    def targets(self) -> torch.Tensor:
        return self.latents[:, 1:]

    @property
    def conditions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditions of frames 1..K-1, lined up with `targets`."""
        return self.frame_cond[:, 1:], self.token_cond[:, 1:]
