"""The posed keyframe memory: coverage, deterministic nearest retrieval, and the anchor it hands the generator."""

import numpy as np
import pytest
import torch

from worldsim.testing import SpaceToDepth
from worldsim.world.memory import (
    OFFSET_CHANNELS,
    SETTLE_FRAMES,
    KeyframeMemory,
    MemoryConfig,
    WrittenViews,
    pull_toward,
    seen_from,
)
from worldsim.world.walls import Walls


def recorded(n=600, seed=0):
    gen = np.random.default_rng(seed)
    poses = np.stack([gen.uniform(0, 256, n), gen.uniform(0, 128, n), gen.uniform(0, 360, n)], 1)
    latents = gen.standard_normal((n, 4, 6, 8)).astype(np.float16)
    episodes = np.arange(n) % 5
    return latents, poses, episodes


def test_one_keyframe_per_cell_and_heading_bin_up_to_the_limit():
    latents, poses, episodes = recorded()
    config = MemoryConfig(keyframes=10_000, cell=64.0, heading_bins=4)
    memory = KeyframeMemory.build(config, latents, poses, episodes)
    bins = {(int(x // 64), int(y // 64), int(h // 90)) for x, y, h in memory.poses}
    assert len(bins) == len(memory) == 4 * 2 * 4  # every (cell, bin) of the 256 x 128 area, once
    assert len(KeyframeMemory.build(MemoryConfig(keyframes=7, cell=64.0, heading_bins=4), latents, poses,
                                    episodes)) == 7


def test_nearest_finds_a_keyframe_at_its_own_pose_and_is_deterministic():
    latents, poses, episodes = recorded()
    memory = KeyframeMemory.build(MemoryConfig(keyframes=50, cell=64.0, heading_bins=4), latents, poses, episodes)
    index = memory.nearest(memory.poses)
    np.testing.assert_array_equal(index, np.arange(len(memory)))
    queries = np.random.default_rng(1).uniform(0, 128, (20, 3))
    np.testing.assert_array_equal(memory.nearest(queries), memory.nearest(queries))


def test_heading_counts_in_the_distance():
    latents = np.zeros((2, 4, 6, 8), np.float16)
    poses = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 90.0]])
    memory = KeyframeMemory(MemoryConfig(keyframes=2, heading_weight=2.0), torch.from_numpy(latents), poses,
                            np.zeros(2))
    assert memory.nearest(np.array([9.0, 0.0, 0.0])) == 0  # 9 units away, same heading
    assert memory.nearest(np.array([9.0, 0.0, 80.0])) == 1  # 1 unit and 10 degrees (20) vs 9 units and 80 degrees


def test_a_clip_never_retrieves_its_own_episode():
    latents, poses, episodes = recorded()
    memory = KeyframeMemory.build(MemoryConfig(keyframes=10_000, cell=32.0), latents, poses, episodes)
    own = memory.episodes[memory.nearest(memory.poses)]
    index = memory.nearest(memory.poses, exclude_episodes=own)
    assert (memory.episodes[index] != own).all()


def test_anchor_tokens_are_the_keyframe_patches_and_its_offset():
    latents, poses, episodes = recorded()
    memory = KeyframeMemory.build(MemoryConfig(keyframes=50, cell=64.0, heading_bins=4), latents, poses, episodes)
    tokens = memory.anchor_tokens(memory.poses[:3], patch=2)
    assert tokens.shape == (3, 4 * 2 * 2 + OFFSET_CHANNELS, 3, 4)
    # at a keyframe's own pose: no turn, no offset, the patches are its latent's
    first = memory.latents[0].float()
    np.testing.assert_allclose(tokens[0, :4 * 4].reshape(4, 2, 2, 3, 4).permute(0, 3, 1, 4, 2).reshape(4, 6, 8),
                               first, atol=1e-3)
    assert tokens[:, -OFFSET_CHANNELS:].abs().max() == 0
    # one keyframe at the origin facing +x, seen from 32 units behind it and turned 45 degrees left
    single = KeyframeMemory(MemoryConfig(keyframes=1, offset_scale=64.0), memory.latents[:1],
                            np.zeros((1, 3)), np.zeros(1))
    offset = single.anchor_tokens(np.array([-32.0, 0.0, 45.0]), patch=2)[-OFFSET_CHANNELS:, 0, 0]
    ahead, right = 32 * np.cos(np.radians(45)) / 64, 32 * np.sin(np.radians(45)) / 64
    np.testing.assert_allclose(offset.numpy(), [ahead, right, -1.0], atol=1e-6)  # turn -45 / 45


def test_round_trip_through_tensors():
    latents, poses, episodes = recorded()
    config = MemoryConfig(keyframes=20, cell=64.0)
    memory = KeyframeMemory.build(config, latents, poses, episodes)
    again = KeyframeMemory.from_tensors(config, memory.to_tensors())
    assert torch.equal(again.latents, memory.latents)
    np.testing.assert_array_equal(again.poses, memory.poses)
    with pytest.raises(ValueError, match="lack"):
        KeyframeMemory.from_tensors(config, {"latents": memory.latents})


def test_a_written_view_settles_over_its_bins_first_frames_then_stays():
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=4), slots=2)
    first, second, third = (torch.full((1, 2, 3, 4), float(v)) for v in (1, 2, 3))
    here = np.array([10.0, 10.0, 0.0])
    written.write(here, first, 0)
    assert written.view(here, 1) is None  # settling: the pull still goes toward the recorded keyframe
    written.write(np.array([20.0, 20.0, 10.0]), second, SETTLE_FRAMES - 1)  # same cell and bin: replaces it
    written.write(here, third, SETTLE_FRAMES)  # settled: kept as it was
    torch.testing.assert_close(written.view(np.array([5.0, 5.0, 0.0]), SETTLE_FRAMES), second)
    assert written.view(np.array([10.0, 10.0, 180.0]), 1000) is None  # another heading bin


def test_a_real_frame_needs_no_settling():
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=4), slots=2)
    real = torch.ones(1, 2, 3, 4)
    written.write(np.array([10.0, 10.0, 0.0]), real, 0, settled=True)
    written.write(np.array([10.0, 10.0, 0.0]), torch.zeros(1, 2, 3, 4), 1)  # a generated frame does not replace it
    torch.testing.assert_close(written.view(np.array([10.0, 10.0, 0.0]), 1), real)


def test_written_views_forget_the_oldest_bin_and_copies_are_their_own():
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=4), slots=2)
    for i, x in enumerate((10.0, 100.0)):
        written.write(np.array([x, 10.0, 0.0]), torch.full((1, 1, 1, 4), float(i)), 0)
    snapshot = written.copy()
    written.write(np.array([200.0, 10.0, 0.0]), torch.zeros(1, 1, 1, 4), 0)  # full: the oldest bin goes
    assert len(written) == 2 and written.view(np.array([10.0, 10.0, 0.0]), 100) is None
    assert written.view(np.array([200.0, 10.0, 0.0]), 100) is not None
    assert len(snapshot) == 2 and snapshot.view(np.array([10.0, 10.0, 0.0]), 100) is not None


def test_a_written_view_is_turned_to_the_current_heading():
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=4), slots=4)
    latent = torch.arange(16.0).reshape(1, 1, 1, 16)
    written.write(np.array([10.0, 10.0, 0.0]), latent, 0)
    turned = written.view(np.array([10.0, 10.0, 20.0]), SETTLE_FRAMES)  # turned left: the old view moves right
    assert turned.shape == latent.shape and not torch.equal(turned, latent)
    assert turned[..., 12] < latent[..., 12]


def test_the_pull_moves_the_whole_latent_or_only_its_coarse_layout():
    gen = torch.Generator().manual_seed(0)
    latent, view = torch.randn(1, 8, 12, 16, generator=gen), torch.randn(1, 8, 12, 16, generator=gen)
    torch.testing.assert_close(pull_toward(latent, view, 0.4), torch.lerp(latent, view, 0.4))

    def coarse(x):  # the block means
        return torch.nn.functional.avg_pool2d(x, 4)

    pulled = pull_toward(latent, view, 0.5, scale=4)
    before = (coarse(latent) - coarse(view)).abs().mean()
    assert (coarse(pulled) - coarse(view)).abs().mean() < 0.7 * before  # the layout moved toward the view
    detail = latent - torch.nn.functional.interpolate(coarse(latent), scale_factor=4)
    kept = pulled - torch.nn.functional.interpolate(coarse(pulled), scale_factor=4)
    assert (kept - detail).abs().mean() < 0.2 * detail.abs().mean()  # the detail within blocks stayed


ROOM = Walls(np.array([[0, 0, 256, 0], [256, 0, 256, 128], [256, 128, 0, 128], [0, 128, 0, 0]], dtype=float))


def test_views_can_be_warped_to_the_pose_instead_of_turned():
    latents, poses, episodes = recorded()
    memory = KeyframeMemory.build(MemoryConfig(keyframes=50, cell=64.0, heading_bins=4), latents, poses, episodes)
    at_keyframes = memory.views(memory.poses, walls=ROOM)[0]
    torch.testing.assert_close(at_keyframes, memory.latents.float(), atol=1e-4, rtol=0)  # seen from there: as kept
    aside = memory.poses + np.array([0.0, 6.0, 0.0])  # a step sideways from every keyframe, the same heading
    assert memory.nearest(aside).tolist() == memory.nearest(memory.poses).tolist()
    turned, warped = memory.views(aside)[0], memory.views(aside, walls=ROOM)[0]
    torch.testing.assert_close(turned, memory.latents.float())  # turning alone cannot show the step
    assert not torch.allclose(warped, turned, atol=1e-3)  # the warp moves the columns


def test_a_written_view_can_be_warped_to_the_pose():
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=4), slots=4)
    latent = torch.randn(1, 2, 3, 16)
    written.write(np.array([100.0, 60.0, 0.0]), latent, 0, settled=True)
    torch.testing.assert_close(written.view(np.array([100.0, 60.0, 0.0]), 0, ROOM), latent, atol=1e-4, rtol=0)
    assert not torch.allclose(written.view(np.array([100.0, 63.0, 0.0]), 0, ROOM), latent, atol=1e-3)


@pytest.mark.parametrize("walls", [None, ROOM])
def test_a_view_can_be_moved_in_pixels_not_cross_faded_between_latent_columns(walls):
    vae = SpaceToDepth()
    gen = torch.Generator().manual_seed(0)
    latents = torch.rand(2, 3 * 16, 3, 8, generator=gen) * 2 - 1  # pixels (2, 3, 12, 32)
    was = np.array([[100.0, 60.0, 10.0], [120.0, 50.0, 200.0]])
    now = was + np.array([[0.0, 0.0, 2.0], [3.0, -2.0, -1.5]])  # turns of a few pixels, a fraction of a column
    moved = seen_from(latents, was, now, 90.0, walls, vae)
    expected = seen_from(vae.decode(latents), was, now, 90.0, walls)  # the same move made on the pixels
    torch.testing.assert_close(vae.decode(moved), expected.clamp(-1, 1))
    in_latents = vae.decode(seen_from(latents, was, now, 90.0, walls))
    assert (in_latents - expected).abs().max() > 0.1  # moved in latent columns the pixels only cross-fade
    # the keyframe memory and the written views move their views so when given the VAE
    memory = KeyframeMemory.build(MemoryConfig(keyframes=2, cell=512.0, heading_bins=2), latents.half().numpy(), was,
                                  np.arange(2))
    nearest = torch.from_numpy(memory.nearest(now).reshape(-1))
    torch.testing.assert_close(memory.views(now, walls=walls, vae=vae)[0],
                               seen_from(memory.latents[nearest].float(), memory.poses[nearest], now, 90.0, walls, vae))
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=1), slots=4)
    written.write(was[0], latents[:1], 0, settled=True)
    torch.testing.assert_close(written.view(now[0], 0, walls, vae), moved[:1])


def test_views_moved_in_pixels_are_decoded_a_batch_at_a_time(monkeypatch):
    from worldsim.world import memory

    vae = SpaceToDepth()
    latents = torch.rand(5, 3 * 16, 3, 8, generator=torch.Generator().manual_seed(1))
    was = np.array([[100.0, 60.0, 10.0 * i] for i in range(5)])
    now = was + np.array([0.0, 0.0, 2.5])
    whole = seen_from(latents, was, now, 90.0, None, vae)
    decoded = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: decoded.append(len(z)) or decode(z))
    monkeypatch.setattr(memory, "PIXEL_BATCH", 2)
    torch.testing.assert_close(seen_from(latents, was, now, 90.0, None, vae), whole)
    assert decoded == [2, 2, 1]


def test_a_view_moved_in_pixels_frame_after_frame_is_decoded_once(monkeypatch):
    vae = SpaceToDepth()
    decoded = []
    decode = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z: decoded.append(len(z)) or decode(z))
    latents = torch.rand(1, 3 * 16, 3, 8, generator=torch.Generator().manual_seed(2))
    memory = KeyframeMemory.build(MemoryConfig(keyframes=1, cell=512.0, heading_bins=1), latents.half().numpy(),
                                  np.array([[100.0, 60.0, 0.0]]), np.zeros(1))
    for heading in (1.0, 2.0, 3.0):  # the player turns by the same keyframe
        memory.views(np.array([100.0, 60.0, heading]), vae=vae)
    assert decoded == [1]
    written = WrittenViews(MemoryConfig(keyframes=1, cell=32.0, heading_bins=1), slots=4)
    pose = np.array([100.0, 60.0, 0.0])
    for i, latent in enumerate((latents, latents, latents + 1)):  # the bin rewritten with another frame
        written.entries.clear()
        written.write(pose, latent, i, settled=True)
        written.view(pose + np.array([0.0, 0.0, 1.0]), i, vae=vae)
    assert decoded == [1, 1, 1]
