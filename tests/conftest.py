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


@pytest.fixture
def no_hang():
    """Fail a test that blocks (a FIFO opened for reading waits for a writer forever) instead of hanging the run."""
    import signal

    def expired(signum, frame):
        raise TimeoutError("blocked for 20 s: was a special file opened?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(params=["fifo", "dev-zero"])
def make_special(request, no_hang):
    """Puts a FIFO, or a link to /dev/zero, at a path: files every loader must refuse before reading them."""
    if not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"):
        pytest.skip("needs POSIX FIFOs and /dev/zero")

    def make(path):
        path.unlink(missing_ok=True)
        if request.param == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero")
        return path

    make.kind = "a FIFO" if request.param == "fifo" else "a character device"
    return make
