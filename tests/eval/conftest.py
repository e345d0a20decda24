"""Fixtures for the evaluation tests: a tiny ViZDoom recording, a tiny IDM trained on it, a ground truth.

Everything that needs the engine skips where vizdoom is not installed; each fixture is built once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_IDM = dict(image_size=(16, 24), channels=(8, 8), feature_dim=8)  # the tiny VAE's resolution


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine two threads wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def doom_dataset(tmp_path_factory) -> Path:
    """3 episodes x 30 steps of the explorer in ViZDoom (seed 1), one of them in the val split."""
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    from worldsim.conditioning import load_scheme
    from worldsim.data.env import make_env
    from worldsim.data.policies import ExplorePolicy
    from worldsim.data.record import record

    scheme = load_scheme("camera")
    root = tmp_path_factory.mktemp("eval-data") / "doom"
    env = make_env("doom", None, scheme)
    try:
        record(env, ExplorePolicy(scheme, seed=1), root, episodes=3, steps=30, seed=1, val_fraction=0.34,
               progress=False)
    finally:
        env.close()
    return root


@pytest.fixture(scope="session")
def tiny_idm(doom_dataset, tmp_path_factory) -> Path:
    from worldsim.eval.idm import IDMConfig, IDMTrainConfig, train_idm

    path = tmp_path_factory.mktemp("idm") / "idm"
    train_idm(doom_dataset, path, IDMConfig(**TINY_IDM), IDMTrainConfig(steps=3, batch=4), progress=False)
    return path


@pytest.fixture(scope="session")
def shared_ground_truth(tmp_path_factory) -> Path:
    """A ground-truth folder shared by the end-to-end tests (recorded by the first that needs it)."""
    pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")
    return tmp_path_factory.mktemp("gt") / "ground-truth"
