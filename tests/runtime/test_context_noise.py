"""Context noise at play time: bounded, and drawn from the session's seeded generator (replays stay exact)."""

import pytest

from worldsim.checkpoint import load_checkpoint
from worldsim.input.state import ControllerState
from worldsim.runtime.session import WorldSession


def test_a_session_refuses_a_context_noise_level_outside_0_to_1(tiny_checkpoint):
    with pytest.raises(ValueError, match="context_noise must be 0 to 1"):
        WorldSession(load_checkpoint(tiny_checkpoint), context_noise=1.5)


def test_context_noise_changes_the_world_and_replays_exactly(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)
    noisy, clean = WorldSession(checkpoint, context_noise=0.5), WorldSession(checkpoint)

    def roll(session: WorldSession) -> list:
        session.reset()
        condition = session.encode(session.scheme.action(ControllerState(keys=frozenset({"w"}))))
        return [session.step(condition) for _ in range(3)]

    first = roll(noisy)
    assert all((a == b).all() for a, b in zip(first, roll(noisy)))
    assert any((a != b).any() for a, b in zip(first, roll(clean)))
