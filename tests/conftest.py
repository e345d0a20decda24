import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight checkpoint with the camera scheme (built once per test session)."""
    from worldsim.testing import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", scheme="camera")


@pytest.fixture(scope="session")
def tiny_keys_checkpoint(tmp_path_factory):
    from worldsim.testing import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_keys", scheme="keys")
