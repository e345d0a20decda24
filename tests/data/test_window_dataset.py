"""Windows of frames and of cached latents: shapes, alignment, episode boundaries, resizing, the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.config import ConfigError
from worldsim.data.dataset import LatentCache, LatentWindowDataset, WindowDataset, resize_frames
from worldsim.data.storage import CorruptDataWarning, DatasetIndex, load_episodes
from worldsim.errors import WorldsimError

LATENT = (8, 3, 4)  # (C, h, w) of the stand-in encoder below


class CountingEncoder:
    """Stands in for a VAE: 4x average pooling, 8 channels; counts the frames it was asked to encode."""

    def __init__(self, offset: float = 0.0):
        self.frames, self.offset = 0, offset

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (12, 16, 3)  # model resolution, channels last
        self.frames += len(frames)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.avg_pool2d(x, 4)  # (N, 3, 3, 4)
        return torch.cat([x, x, x[:, :2]], 1) + self.offset


def test_frame_windows_shapes_and_range(fake_dataset, camera):
    data = WindowDataset(fake_dataset, camera, window=5, resolution=(8, 6), split=None, grid=(3, 4))
    assert len(data) == (21 - 4) * 2 + (13 - 4)
    batch = data.sample(4, np.random.default_rng(0))
    assert batch["frames"].shape == (4, 5, 3, 6, 8) and batch["frames"].dtype == torch.float32
    assert batch["frames"].min() >= -1 and batch["frames"].max() <= 1
    assert batch["actions"].shape == (4, 5, 4) and batch["conditions"].shape == (4, 5, 4)
    assert batch["token_maps"].shape == (4, 5, 6, 3, 4) and batch["poses"].shape == (4, 5, 3)
    item = data[0]
    assert item["frames"].shape == (5, 3, 6, 8) and item["token_maps"].shape == (5, 6, 3, 4)
    loader = torch.utils.data.DataLoader(data, batch_size=3, shuffle=True)
    assert next(iter(loader))["frames"].shape == (3, 5, 3, 6, 8)


def test_windows_are_aligned_and_never_cross_episodes(fake_dataset, camera):
    data = WindowDataset(fake_dataset, camera, window=4, resolution=(16, 12), split=None)
    episodes = load_episodes(fake_dataset)
    every = data.gather(data.starts)
    # the fake engine paints the step number into the red channel: consecutive within each window
    step = (every["frames"][:, :, 0, 0, 0] + 1) * 127.5
    assert torch.all(torch.diff(step.round(), dim=1) == 1)
    # actions and poses travel with their frames: window 0 is the start of episode 0
    np.testing.assert_array_equal(every["actions"][0].numpy(), episodes[0].actions[:4])
    np.testing.assert_array_equal(every["poses"][0].numpy(), episodes[0].poses[:4])
    expected = camera.encoding.frame_vectors(every["actions"].numpy())
    np.testing.assert_array_equal(every["conditions"].numpy(), expected)
    assert "token_maps" not in every  # no grid, no token maps


def test_splits_select_episodes(fake_dataset, camera):
    index = DatasetIndex.load(fake_dataset)
    val_frames = index.frames("val")
    val = WindowDataset(fake_dataset, camera, window=2, resolution=(16, 12), split="val")
    assert len(val.frames) == val_frames and val.episodes == 1
    train = WindowDataset(fake_dataset, camera, window=2, resolution=(16, 12), split="train")
    assert len(train.frames) == index.frames() - val_frames


def test_resize_is_an_area_filter():
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    frames[:, ::2, ::2] = 255  # one bright pixel in every 2x2 block
    small = resize_frames(frames, (2, 2))
    assert small.shape == (2, 2, 2, 3) and np.all(small == 64)  # the block's mean, not a sampled pixel
    assert resize_frames(frames, (2, 2), channels_first=True).shape == (2, 3, 2, 2)
    odd = np.full((1, 120, 160, 3), 77, dtype=np.uint8)
    assert np.all(resize_frames(odd, (128, 96)) == 77)  # 5:4 ratio: still exact on flat colour
    assert resize_frames(odd, (160, 120)) is odd


def test_too_short_or_mismatched_is_a_clear_error(fake_dataset, camera, keys):
    with pytest.raises(WorldsimError, match="no window of 50 frames"):
        WindowDataset(fake_dataset, camera, window=50, resolution=(16, 12), split=None)
    with pytest.raises(ConfigError, match="does not match the encoding"):
        WindowDataset(fake_dataset, keys, window=2, resolution=(16, 12), split=None)


def test_corrupt_episode_is_skipped_not_fatal(fake_dataset, camera):
    index = DatasetIndex.load(fake_dataset)
    victim = fake_dataset / index.episodes[0].files[0].name
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.warns(CorruptDataWarning, match=victim.name):
        data = WindowDataset(fake_dataset, camera, window=3, resolution=(16, 12), split=None)
    assert data.episodes == 2 and len(data.frames) == 21 + 13


def test_latent_cache_encodes_once_and_serves_windows(fake_dataset, camera):
    encoder = CountingEncoder()
    cache = LatentCache(fake_dataset, "vae:abc", resolution=(16, 12))
    assert cache.build(encoder) == 3 and encoder.frames == 21 + 21 + 13
    assert LatentCache(fake_dataset, "vae:abc", resolution=(16, 12)).build(encoder) == 0  # reused from disk
    assert encoder.frames == 55
    data = LatentWindowDataset(LatentCache(fake_dataset, "vae:abc", (16, 12)), camera, window=4, split=None)
    batch = data.sample(5, np.random.default_rng(1))
    assert batch["latents"].shape == (5, 4, *LATENT) and batch["latents"].dtype == torch.float32
    assert batch["token_maps"].shape == (5, 4, 6, 3, 4)  # grid defaults to the latent grid
    assert batch["actions"].shape == (5, 4, 4) and batch["poses"].shape == (5, 4, 3)
    stored = np.load(cache.episode_path(0))["latents"]
    assert stored.dtype == np.float16 and stored.shape == (21, *LATENT)
    every = data.gather(data.starts[:1])
    np.testing.assert_array_equal(every["latents"][0].numpy(), stored[:4].astype(np.float32))
    np.testing.assert_array_equal(every["actions"][0].numpy(), load_episodes(fake_dataset)[0].actions[:4])


def test_latent_cache_is_keyed_by_vae_and_follows_the_data(fake_dataset, camera):
    LatentCache(fake_dataset, "vae-1", (16, 12)).build(CountingEncoder())
    other = CountingEncoder(offset=1.0)
    cache = LatentCache(fake_dataset, "vae-2", (16, 12))
    assert cache.dir != LatentCache(fake_dataset, "vae-1", (16, 12)).dir
    assert cache.missing() and cache.build(other) == 3  # a different VAE never reuses stale latents
    assert LatentCache(fake_dataset, "vae-1", (8, 6)).missing()  # nor a different resolution
    # the dataset grows: only the new episode is encoded
    from data_fakes import FakeEnv

    from worldsim.data.policies import ExplorePolicy
    from worldsim.data.record import record

    record(FakeEnv(camera), ExplorePolicy(camera), fake_dataset, episodes=1, steps=9, seed=9, append=True,
           progress=False)
    grown = LatentCache(fake_dataset, "vae-2", (16, 12))
    assert [e.id for e in grown.missing()] == [3]
    before = other.frames
    assert grown.build(other) == 1 and other.frames - before == 10


def test_latent_cache_skips_what_is_missing_or_corrupt(fake_dataset, camera):
    cache = LatentCache(fake_dataset, "vae", (16, 12))
    cache.build(CountingEncoder())
    cache.episode_path(1).write_bytes(b"garbage")
    with pytest.warns(CorruptDataWarning, match="episode 1"):
        data = LatentWindowDataset(LatentCache(fake_dataset, "vae", (16, 12)), camera, window=2, split=None)
    assert data.episodes == 2
    with pytest.raises(WorldsimError, match="no cached latents"), pytest.warns(CorruptDataWarning):
        LatentWindowDataset(LatentCache(fake_dataset, "never-built", (16, 12)), camera, split=None)
    assert [e.id for e in cache.missing()] == [1]  # the damaged episode is encoded again by the next build
    assert cache.build(CountingEncoder()) == 1


def test_latent_cache_build_clears_what_a_killed_build_left(fake_dataset):
    import os

    from data_fakes import dead_pid

    cache = LatentCache(fake_dataset, "vae", (16, 12))
    cache.build(CountingEncoder())
    stale = cache.dir / f".ep000001.npz.{dead_pid()}.1.tmp"
    live = cache.dir / f".manifest.json.{os.getpid()}.1.tmp"  # a build running now: not ours to delete
    stale.write_bytes(b"half an episode")
    live.write_bytes(b"{")
    assert LatentCache(fake_dataset, "vae", (16, 12)).build(CountingEncoder()) == 0
    assert not stale.exists() and live.exists()
