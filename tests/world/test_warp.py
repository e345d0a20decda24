"""The 2.5D warp of a frame by the player's move, with depth from the map's walls (worldsim/world/warp.py)."""

import math

import numpy as np
import pytest
import torch

from worldsim.world.walls import Walls
from worldsim.world.warp import warp_field, warp_fields, warp_latent

# a long wall across x = 100, facing a camera at the origin that looks along +x
WALL_AHEAD = Walls(np.array([[100.0, -1000.0, 100.0, 1000.0]]))


def test_rays_stop_at_the_first_wall_they_meet():
    walls = Walls(np.array([[100.0, -50.0, 100.0, 50.0], [200.0, -50.0, 200.0, 50.0]]))
    rays = np.array([[1.0, 0.0], [-1.0, 0.0], [math.cos(1.0), math.sin(1.0)]])
    np.testing.assert_allclose(walls.ray_distances(np.zeros(2), rays, far=500.0), [100.0, 500.0, 500.0])


def test_no_move_is_the_identity():
    pose = np.array([0.0, 0.0, 0.0])
    source, scale = warp_field(pose, pose, WALL_AHEAD, 90.0, 16)
    np.testing.assert_allclose(source, np.arange(16), atol=1e-9)
    np.testing.assert_allclose(scale, 1.0, atol=1e-12)
    latent = torch.randn(2, 8, 12, 16, dtype=torch.float64)
    torch.testing.assert_close(warp_latent(latent, source, scale), latent)


def test_walking_forward_enlarges_the_view_about_its_centre():
    source, scale = warp_field(np.array([0.0, 0.0, 0.0]), np.array([20.0, 0.0, 0.0]), WALL_AHEAD, 90.0, 16)
    np.testing.assert_allclose(scale, 100.0 / 80.0)  # the wall came from 100 to 80 units away: 1.25x as large
    np.testing.assert_allclose(source[:8] + source[::-1][:8], 15.0, atol=1e-9)  # symmetric about the centre
    assert (np.abs(source[:8] - 7.5) < np.abs(np.arange(8) - 7.5)).all()  # each column shows one nearer the centre


def test_strafing_right_moves_the_view_left():
    source, scale = warp_field(np.array([0.0, 0.0, 0.0]), np.array([0.0, -10.0, 0.0]), WALL_AHEAD, 90.0, 16)
    # 10 units to the right at 100 units' depth: a tenth of the image plane's half width, 0.8 of a column
    np.testing.assert_allclose(source[:14], np.arange(14) + 0.8, atol=1e-9)
    np.testing.assert_allclose(scale, 1.0)


@pytest.mark.parametrize("yaw", [3.0, -7.0])
def test_a_turn_moves_columns_as_the_pinhole_turn_does(yaw):
    before, after = np.array([0.0, 0.0, 10.0]), np.array([0.0, 0.0, 10.0 - yaw])  # turned right by yaw
    source, _ = warp_field(before, after, WALL_AHEAD, 90.0, 16)
    half = math.tan(math.radians(45.0))
    x_out = ((np.arange(16) + 0.5) / 16 * 2 - 1) * half
    expected = np.clip((np.tan(np.arctan(x_out) + math.radians(yaw)) / half + 1) / 2 * 16 - 0.5, 0, 15)
    np.testing.assert_allclose(source, expected, atol=0.01)  # the inverse is interpolated between columns


def test_warp_fields_carry_each_frame_to_the_next_pose_from_the_identity():
    poses = np.array([[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, -5.0, 3.0]]])
    fields = warp_fields(poses, WALL_AHEAD, 90.0, 16)
    assert fields.shape == (1, 3, 2, 16)
    np.testing.assert_array_equal(fields[0, 0], np.stack([np.arange(16.0), np.ones(16)]))
    for k in (1, 2):
        np.testing.assert_allclose(fields[0, k], np.stack(warp_field(poses[0, k - 1], poses[0, k], WALL_AHEAD, 90.0,
                                                                     16)))


def test_a_batch_of_latents_is_warped_each_by_its_own_field():
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 3, 8, 12, 16, generator=gen)  # (B, K, C, h, w)
    source, scale = torch.rand(2, 3, 16, generator=gen) * 15, torch.rand(2, 3, 16, generator=gen) + 0.5
    batched = warp_latent(latents, source, scale)
    for b in range(2):
        for k in range(3):
            torch.testing.assert_close(batched[b, k], warp_latent(latents[b, k], source[b, k].numpy(),
                                                                  scale[b, k].numpy()))


def test_many_cameras_cast_their_rays_at_once_as_each_alone():
    walls = Walls(np.array([[100.0, -50.0, 100.0, 50.0], [-80.0, -500.0, -80.0, 500.0], [0.0, 60.0, 90.0, 60.0]]))
    origins = np.array([[0.0, 0.0], [20.0, 10.0], [-10.0, 40.0]])
    angles = np.linspace(-3, 3, 7)
    directions = np.stack([np.cos(angles), np.sin(angles)], -1)[None].repeat(3, 0) * np.array([1, -1, 1])[:, None, None]
    batched = walls.ray_distances(origins, directions)
    assert batched.shape == (3, 7)
    for origin, rays, distances in zip(origins, directions, batched):
        np.testing.assert_allclose(distances, walls.ray_distances(origin, rays))
