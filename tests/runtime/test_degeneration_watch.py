"""The degeneration detector at play time: the player is told and offered a reset, a kiosk resets by itself."""

from __future__ import annotations

import numpy as np

from worldsim.eval.degeneration import DetectorConfig
from worldsim.input.devices import LiveInput
from worldsim.runtime.degeneration_watch import DegenerationWatch
from worldsim.runtime.kiosk import KioskConfig


class Flags:
    """A detector that flags every frame once `after` frames were scored (stands in for a fitted one)."""

    def __init__(self, after: int = 0, persistence: int = 8):
        self.config, self.threshold, self.after, self.seen = DetectorConfig(persistence=persistence), 1.0, after, 0

    def scores(self, frames: np.ndarray) -> np.ndarray:
        self.seen += len(frames)
        return np.full(len(frames), 2.0 if self.seen > self.after else 0.0)


def test_the_watch_fires_once_after_enough_flagged_looks_and_resets():
    watch = DegenerationWatch(Flags(persistence=8), every=4)  # two flagged looks in a row
    frame = np.zeros((8, 8, 3), np.uint8)
    fired = [watch.check(frame) for _ in range(16)]
    assert fired.index(True) == 7 and sum(fired) == 1  # looks at frames 4 and 8
    watch.reset()
    assert not any(watch.check(frame) for _ in range(7)) and watch.check(frame)


def test_a_checkpoint_without_a_detector_is_not_watched(tiny_checkpoint, tmp_path):
    assert DegenerationWatch.for_checkpoint(tiny_checkpoint) is None
    assert DegenerationWatch.for_checkpoint(None) is None


def test_the_shipped_world_ships_its_detector():
    from worldsim.config import CHECKPOINTS_DIR

    watch = DegenerationWatch.for_checkpoint(CHECKPOINTS_DIR / "doom-camera")
    assert watch is not None and watch.detector.threshold > 0
    streaks = np.zeros((96, 128, 3), np.uint8)
    streaks[::4] = (40, 40, 220)
    streaks[1::4] = 250
    assert watch.detector.scores(streaks[None])[0] > watch.detector.threshold


def test_the_player_is_told_and_offered_a_reset(make_loop):
    loop = make_loop(LiveInput(gamepads=False))
    loop.watch = DegenerationWatch(Flags(after=4), every=1)
    for _ in range(16):
        loop.frame()
    assert any("degenerated" in n and "R / Backspace" in n for n in loop.notices)
    assert loop.session.frame_index == 16  # the player decides


def test_a_kiosk_resets_a_degenerated_world_and_counts_it(make_loop):
    loop = make_loop(LiveInput(gamepads=False), kiosk=KioskConfig(idle_timeout_s=1000.0))
    loop.watch = DegenerationWatch(Flags(after=4), every=1)
    for _ in range(16):
        loop.frame()
    assert loop.kiosk_counts["degenerated"] >= 1 and loop.session.frame_index < 16
