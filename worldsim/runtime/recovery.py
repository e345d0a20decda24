"""Recovery from a non-finite world: the last good snapshot is restored (or the world reset), so the player never
sees a frame decoded from NaN or inf.

A step can go non-finite (an fp16 overflow, a cosmic-ray bit flip in the KV cache, a bug in a new backend); once
it has, every later frame inherits it through the cache. `FaultGuard` takes a session snapshot every
`snapshot_every` good frames (cheap: the KV cache is a few MB at most) and checks every step's output; on a
fault it rewinds to the snapshot. Restoring repeats the same computation only if the controls are the same, so
a fault that comes straight back after `max_restores` rewinds asks for a reset instead; a world that faults
again right after resets `max_resets` times is broken, which is an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worldsim.config import rng
from worldsim.errors import WorldsimError

if TYPE_CHECKING:  # profiles read RecoveryConfig without paying for torch
    from worldsim.runtime.session import SessionSnapshot, WorldSession


@dataclass(frozen=True)
class RecoveryConfig:
    """The `recovery:` section of a runtime profile."""

    snapshot_every: int = field(default=24, metadata=rng(1, 100_000))  # good frames between snapshots
    max_restores: int = field(default=3, metadata=rng(0, 1_000))  # rewinds in a row before a reset instead
    max_resets: int = field(default=3, metadata=rng(1, 1_000))  # resets in a row that fault: give up


class Verdict(enum.Enum):
    GOOD = "good"  # show the frame
    RESTORED = "restored"  # the frame was garbage; the session is back at the last good snapshot
    RESET = "reset"  # the frame was garbage and rewinding did not help: the caller resets the world


class FaultGuard:
    """Checks each step of a session and keeps the snapshot to go back to."""

    def __init__(self, session: WorldSession, config: RecoveryConfig):
        self.session = session
        self.config = config
        self.snapshot: SessionSnapshot | None = None
        self.faults = 0  # non-finite steps seen
        self.restores = 0  # of which recovered by a rewind
        self.resets = 0  # of which recovered by a reset
        self._restores_in_a_row = 0
        self._resets_in_a_row = 0

    def after_reset(self) -> None:
        """The world was just reset: its first frame is the snapshot to come back to."""
        session = self.session
        if not session.state_is_finite():  # a reset zeroes the cache, so only a bad first frame gets here
            self.faults += 1
            self.resets += 1
        self.snapshot = session.snapshot() if session.state_is_finite() else None
        self._restores_in_a_row = 0

    def check(self) -> Verdict:
        """After `session.step`: GOOD, or the session already rewound (RESTORED), or RESET for the caller."""
        session = self.session
        if session.output_is_finite():
            snapshot = self.snapshot
            if snapshot is None or session.frame_index - snapshot.frame >= self.config.snapshot_every:
                self._take_snapshot()
            return Verdict.GOOD
        self.faults += 1
        if self.snapshot is not None and self._restores_in_a_row < self.config.max_restores:
            session.restore(self.snapshot)
            self._restores_in_a_row += 1
            self.restores += 1
            return Verdict.RESTORED
        self._resets_in_a_row += 1
        if self._resets_in_a_row > self.config.max_resets:
            raise WorldsimError(f"the world produced NaN or inf again right after {self.config.max_resets} resets; "
                                "the checkpoint or the backend is broken (try --dtype float32 or another "
                                "--device)")
        self.resets += 1
        return Verdict.RESET

    def _take_snapshot(self) -> None:
        # The cache is checked too: a snapshot must be a state worth going back to.
        if not self.session.state_is_finite():
            return
        self.snapshot = self.session.snapshot()
        # A new good snapshot means the world has moved past whatever faulted: start counting afresh.
        self._restores_in_a_row = 0
        self._resets_in_a_row = 0

    def summary(self) -> dict:
        recovered = self.restores + self.resets
        return {"faults": self.faults, "recovered": recovered, "restored": self.restores, "reset": self.resets}
