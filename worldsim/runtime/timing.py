"""Per-frame timings: a preallocated ring of stage times, summarised for the HUD and the `--stats` file.

Stages of one frame, in loop order: `input` (event poll and the input source), `condition` (scheme encode and
copying it into the session), `generate` (the generator step), `decode` (VAE decode to pixels), `display`
(draw, HUD and flip) and `record` (video and action log, after the flip). `latency` is input-to-photon: from
the input poll of a frame to the flip that shows its result.
"""

from __future__ import annotations

import numpy as np

STAGES = ("input", "condition", "generate", "decode", "display", "record")
LATENCY = len(STAGES)  # column of the input-to-photon latency
DEFAULT_CAPACITY = 36_000  # frames kept for statistics in an open-ended session (25 minutes at 24 fps)


class FrameTimes:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self.ms = np.zeros((capacity, len(STAGES) + 1))  # (frames, stages + latency)
        self.flip_s = np.zeros(capacity)  # perf_counter at each flip: frame rate over any recent span
        self.count = 0  # frames added so far (the ring holds the last `capacity`)
        self.first_poll_s: float | None = None
        self.last_flip_s = 0.0

    def add(self, stage_ms: tuple[float, ...], poll_s: float, flip_s: float) -> None:
        """One generated frame: stage times in STAGES order (ms), when its input was polled, flipped (s)."""
        i = self.count % self.capacity
        row = self.ms[i]
        row[:LATENCY] = stage_ms
        row[LATENCY] = (flip_s - poll_s) * 1e3
        self.flip_s[i] = flip_s
        self.count += 1
        if self.first_poll_s is None:
            self.first_poll_s = poll_s
        self.last_flip_s = flip_s

    def recent(self, frames: int) -> np.ndarray:
        """The last `frames` rows (fewer at the start), oldest first."""
        n = min(frames, self.count, self.capacity)
        end = self.count % self.capacity
        idx = (np.arange(end - n, end)) % self.capacity
        return self.ms[idx]

    def recent_fps(self, frames: int) -> float:
        n = min(frames, self.count, self.capacity)
        if n < 2:
            return 0.0
        end = (self.count - 1) % self.capacity
        start = (self.count - n) % self.capacity
        span = self.flip_s[end] - self.flip_s[start]
        return (n - 1) / span if span > 0 else 0.0

    def summary(self) -> dict:
        """fps over the whole run, and p50/p95 latency and stage times over the frames kept."""
        rows = self.recent(self.capacity)
        if len(rows) == 0:
            return {"frames": 0, "fps": 0.0, "latency_ms": {"p50": 0.0, "p95": 0.0},
                    "stage_ms": dict.fromkeys(STAGES, 0.0), "stage_ms_p95": dict.fromkeys(STAGES, 0.0)}
        p50, p95 = np.percentile(rows, [50, 95], axis=0)
        wall = self.last_flip_s - (self.first_poll_s or self.last_flip_s)
        return {
            "frames": self.count,
            "fps": round(self.count / wall, 3) if wall > 0 else 0.0,
            "latency_ms": {"p50": round(float(p50[LATENCY]), 3), "p95": round(float(p95[LATENCY]), 3)},
            "stage_ms": {name: round(float(p50[i]), 3) for i, name in enumerate(STAGES)},
            "stage_ms_p95": {name: round(float(p95[i]), 3) for i, name in enumerate(STAGES)},
            "frames_in_percentiles": len(rows),
        }
