"""The heartbeat between a kiosk player and its supervisor: a file the game loop touches, whose age says it hangs.

The player (`worldsim play --kiosk --heartbeat FILE`) touches the file at most every `interval_s`, from the
game loop itself, so a loop stuck anywhere (a deadlocked driver, an endless step) stops beating. The supervisor
(`HeartbeatMonitor`) notices the file's modification time changing, timed with its own monotonic clock, so a
wall-clock jump (NTP, daylight saving) can neither fake a beat nor make a healthy player look hung.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


class Heartbeat:
    """The player's side: `beat(now_s)` every loop iteration; it writes only when `interval_s` has passed."""

    def __init__(self, path: str | Path, interval_s: float = 1.0):
        self.path = Path(path)
        self.interval_s = interval_s
        self.beats = 0
        self._next_s = 0.0
        self._failing = False

    def beat(self, now_s: float) -> None:
        if now_s < self._next_s:
            return
        self._next_s = now_s + self.interval_s
        try:
            # The content is for people reading the directory; the supervisor only looks at the mtime.
            self.path.write_text(f"{os.getpid()} {self.beats}\n")
        except OSError as err:  # a full disk or a removed directory: say so once, the supervisor will act
            if not self._failing:
                log.warning("cannot write heartbeat %s: %s", self.path, err)
            self._failing = True
            return
        self._failing = False
        self.beats += 1


class HeartbeatMonitor:
    """The supervisor's side: how long since the player's heartbeat file last changed (None: never beat)."""

    def __init__(self, path: str | Path, clock=time.monotonic):
        self.path = Path(path)
        self.clock = clock
        self._last_mtime_ns: int | None = None
        self._last_change_s: float | None = None

    def clear(self) -> None:
        """Before a new player starts: forget the old one's beats and its file."""
        self.path.unlink(missing_ok=True)
        self._last_mtime_ns = None
        self._last_change_s = None

    def seconds_since_beat(self) -> float | None:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
        except OSError:  # not written yet
            mtime_ns = None
        now = self.clock()
        if mtime_ns is not None and mtime_ns != self._last_mtime_ns:
            self._last_mtime_ns = mtime_ns
            self._last_change_s = now
        return None if self._last_change_s is None else now - self._last_change_s
