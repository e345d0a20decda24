"""Fixtures for the data tests: schemes, a small recorded dataset from the fake engine, ViZDoom envs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest  # noqa: E402
from data_fakes import FakeEnv  # noqa: E402

from worldsim.conditioning import Scheme, load_scheme  # noqa: E402


@pytest.fixture(scope="session")
def camera() -> Scheme:
    return load_scheme("camera")


@pytest.fixture(scope="session")
def keys() -> Scheme:
    return load_scheme("keys")


@pytest.fixture
def fake_dataset(tmp_path: Path, camera: Scheme) -> Path:
    """3 episodes (lengths 21, 21, 13) of the fake engine played by the seeded explorer, 1 in validation."""
    from worldsim.data.policies import ExplorePolicy
    from worldsim.data.record import record

    root = tmp_path / "fake"
    env = FakeEnv(camera)
    record(env, ExplorePolicy(camera), root, episodes=2, steps=20, seed=7, val_fraction=0.5, progress=False,
           chunk_frames=8)
    record(env, ExplorePolicy(camera), root, episodes=1, steps=12, seed=8, val_fraction=0.0, progress=False,
           append=True)
    return root


@pytest.fixture
def make_doom():
    """Factory for ViZDoom envs (closed after the test); skips the test where vizdoom is not installed."""
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.data.doom import DoomConfig, DoomEnv

    envs = []

    def make(scheme: Scheme, **overrides: Any) -> DoomEnv:
        env = DoomEnv(DoomConfig(**overrides), scheme)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()
