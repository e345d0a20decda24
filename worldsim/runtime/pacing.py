"""Adaptive frame pacing: when the generator cannot keep up with the target frame rate, aim lower.

A loop that asks for 24 fps on a machine that manages 17 runs every frame as soon as the previous one is done,
so frames arrive at uneven intervals (each as slow as its own step) and the motion judders. `FramePacer` watches
how long each frame's work takes (events, step, draw, flip; not the sleep) and, when the slow frames no longer
fit the budget, lowers the target to a rate the machine sustains with some headroom: frames then come at even
intervals, a little less often. When the work gets faster again it climbs back towards the target slowly, so it
does not oscillate. While it is below the target the loop also does less HUD work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from worldsim.config import rng

HEADROOM = 1.15  # aim for frames 15% longer than the slow ones take: room for the sleep's jitter
RAISE_BELOW = 0.75  # climb back only when slow frames take less than 75% of the current budget
RAISE_FACTOR = 1.1  # ... and then by 10% per window, not straight to the target


@dataclass(frozen=True)
class PacingConfig:
    """The `pacing:` section of a runtime profile."""

    adaptive: bool = True  # false: always aim for the target frame rate
    min_fps: float = field(default=8.0, metadata=rng(1.0, 1000.0))  # never aim lower than this
    window_frames: int = field(default=30, metadata=rng(5, 10_000))  # frames judged together
    slow_percentile: float = field(default=90.0, metadata=rng(50.0, 100.0))  # "slow frames" = this percentile


class FramePacer:
    """The frame rate to aim for, given the target and how long recent frames took."""

    def __init__(self, target_fps: float, config: PacingConfig):
        self.target_fps = target_fps
        self.config = config
        self.fps = target_fps
        self.changes = 0  # how often the aim moved, for the stats
        self._work_s = np.zeros(config.window_frames)  # preallocated: add() runs every frame
        self._count = 0

    @property
    def behind(self) -> bool:
        """Aiming below the target: the loop should spend less on extras (HUD text)."""
        return self.fps < self.target_fps

    def add(self, work_s: float) -> float:
        """One frame's work time (seconds, without the sleep); returns the frame rate to tick at."""
        if not self.config.adaptive or self.target_fps <= 0:
            return self.target_fps
        window = self._work_s
        window[self._count] = work_s
        self._count += 1
        if self._count == len(window):
            self._count = 0
            self._adjust(float(np.percentile(window, self.config.slow_percentile)))
        return self.fps

    def _adjust(self, slow_s: float) -> None:
        budget_s = 1.0 / self.fps
        if slow_s > budget_s:
            fps = max(self.config.min_fps, min(self.target_fps, 1.0 / (slow_s * HEADROOM)))
        elif slow_s < RAISE_BELOW * budget_s and self.fps < self.target_fps:
            fps = min(self.target_fps, self.fps * RAISE_FACTOR)
        else:
            return
        if fps != self.fps:
            self.fps = fps
            self.changes += 1
