"""Watching the world degenerate at play time: eval's degeneration detector, on every few frames of a session.

A checkpoint may hold the detector fitted on its world's engine frames (`detector/`, as `worldsim eval` writes it
into its output folder). The game loop then says so on screen when the world has turned into streaks or fog, and
offers a reset; a kiosk resets by itself and logs it. Without a detector nothing is watched.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from worldsim.eval.degeneration import DegenerationDetector

DETECTOR_DIR = "detector"  # inside a checkpoint folder
CHECK_EVERY = 4  # frames: one look costs about a millisecond, a quarter of it per frame is enough


class DegenerationWatch:
    def __init__(self, detector: DegenerationDetector, every: int = CHECK_EVERY):
        self.detector, self.every = detector, every
        self.needed = max(1, math.ceil(detector.config.persistence / every))  # flagged looks in a row to fire
        self.reset()

    def reset(self) -> None:
        self.frames, self.run, self.fired = 0, 0, False

    def check(self, frame: np.ndarray) -> bool:
        """One generated frame (H, W, 3) uint8; True once, at the look where the detector fires (it stays fired
        until `reset`)."""
        self.frames += 1
        if self.fired or self.frames % self.every:
            return False
        flagged = bool(self.detector.scores(frame[None])[0] > self.detector.threshold)
        self.run = self.run + 1 if flagged else 0
        self.fired = self.run >= self.needed
        return self.fired

    @classmethod
    def for_checkpoint(cls, path: str | Path | None) -> DegenerationWatch | None:
        folder = Path(path) / DETECTOR_DIR if path is not None else None
        if folder is None or not (folder / "detector.json").is_file():
            return None
        return cls(DegenerationDetector.load(folder))
