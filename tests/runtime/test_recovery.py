"""NaN/inf recovery: a poisoned latent or KV cache is never shown; the world rewinds to its last good snapshot
(and continues exactly as if nothing had happened), or resets when rewinding does not help."""

import numpy as np
import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.errors import WorldsimError
from worldsim.input.devices import LiveInput
from worldsim.input.state import ControllerState
from worldsim.runtime.recovery import FaultGuard, RecoveryConfig, Verdict
from worldsim.runtime.session import WorldSession


@pytest.fixture
def session(tiny_checkpoint):
    session = WorldSession(load_checkpoint(tiny_checkpoint))
    session.reset()
    return session


def step(session, n: int = 1) -> list[np.ndarray]:
    condition = session.scheme.encode(ControllerState(keys=frozenset({"w"})), session.grid)
    return [session.step(condition) for _ in range(n)]


@pytest.mark.parametrize("where", ["latent", "cache"])
def test_guard_rewinds_to_the_last_snapshot_and_the_world_continues_unchanged(session, where):
    guard = FaultGuard(session, RecoveryConfig(snapshot_every=4))
    guard.after_reset()
    reference = WorldSession(session.checkpoint)
    reference.reset()
    expected = step(reference, 12)
    for _ in range(6):
        step(session)
        assert guard.check() is Verdict.GOOD
    assert guard.snapshot.frame == 4
    session.inject_fault(where)
    step(session)
    assert guard.check() is Verdict.RESTORED and session.frame_index == 4 and session.state_is_finite()
    replayed = step(session, 8)  # frames 5..12 again: noise state and cache came back with the snapshot
    assert all(np.array_equal(a, b) for a, b in zip(replayed, expected[4:]))
    assert guard.summary() == {"faults": 1, "recovered": 1, "restored": 1, "reset": 0}


def test_a_fault_that_keeps_coming_back_asks_for_a_reset_then_gives_up(session, monkeypatch):
    guard = FaultGuard(session, RecoveryConfig(snapshot_every=4, max_restores=2, max_resets=2))
    guard.after_reset()
    monkeypatch.setattr(session, "output_is_finite", lambda: False)  # every step comes out garbage
    verdicts = []
    with pytest.raises(WorldsimError, match="NaN or inf again right after 2 resets"):
        for _ in range(20):
            step(session)
            verdicts.append(guard.check())
            if verdicts[-1] is Verdict.RESET:
                session.reset()
                guard.after_reset()
    restored, reset = Verdict.RESTORED, Verdict.RESET
    assert verdicts == [restored, restored, reset, restored, restored, reset, restored, restored]


def test_reset_wipes_a_poisoned_cache(session):
    """Masked cache entries still reach attention (0 x NaN = NaN): a reset must zero them, not only mask them."""
    guard = FaultGuard(session, RecoveryConfig())
    step(session, 3)
    session.inject_fault("cache")
    session.reset()
    guard.after_reset()
    step(session, 3)
    assert session.output_is_finite() and guard.check() is Verdict.GOOD and guard.faults == 0


def test_the_loop_never_shows_a_nan_frame(make_loop):
    loop = make_loop(LiveInput(gamepads=False), profile_changes={"recovery": RecoveryConfig(snapshot_every=3)})
    for _ in range(5):
        loop.frame()
    shown = loop.frame_image.copy()
    history = len(loop.history.frames)
    loop.session.inject_fault("latent")
    loop.frame()
    assert np.array_equal(loop.frame_image, shown)  # the last good frame stays up
    assert loop.frames == 5 and loop.session.frame_index == 3  # rewound to the snapshot at frame 3
    assert len(loop.history.frames) == history - 2  # frames 4 and 5 are no longer the world's past
    loop.frame()
    assert loop.frames == 6 and loop.session.frame_index == 4
    stats = loop.stats()
    assert stats["faults"] == {"faults": 1, "recovered": 1, "restored": 1, "reset": 0}
