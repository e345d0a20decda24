"""The yardsticks `episode_candidates` builds, on random tiny checkpoints (no engine needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.checkpoint import load_checkpoint
from worldsim.eval.candidates import episode_candidates
from worldsim.runtime.session import WorldSession, frames_to_tensor, tensor_to_frames
from worldsim.testing import random_checkpoint


def episode(session: WorldSession, steps: int = 6) -> tuple[np.ndarray, np.ndarray]:
    h, w = session.image_size
    real = np.random.default_rng(0).integers(0, 256, (steps + 1, h, w, 3), dtype=np.uint8)
    actions = np.zeros((steps + 1, 4), dtype=np.float32)
    actions[1::2, 2] = 1.0  # turn right on odd frames, stand still on even ones
    return real, actions


@pytest.mark.parametrize("turn_in_pixels", [False, True])
def test_turned_previous_is_the_reprojected_real_previous_frame(tmp_path, turn_in_pixels):
    ckpt = load_checkpoint(random_checkpoint(tmp_path / "ckpt", yaw_reprojection=[2, 4.0, 90.0],
                                             turn_in_pixels=turn_in_pixels))
    session = WorldSession(ckpt)
    real, actions = episode(session)
    candidates, _, _ = episode_candidates(session, real, actions)
    turned, vae = candidates["turned_previous"], candidates["vae"]
    np.testing.assert_array_equal(turned.previous, real[:-1])
    # standing still (frame 2, 4, ...): the decoded real previous frame, i.e. the VAE's reconstruction of it
    np.testing.assert_array_equal(turned.frames[1::2], vae.previous[1::2])
    # turning (frame 1, 3, ...): something else, and exactly the generator's reprojection of the real latent
    assert not np.array_equal(turned.frames[0::2], vae.previous[0::2])
    with torch.inference_mode():
        latent = session.vae.encode(frames_to_tensor(real[2:3]))
        turn = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
        # as the world turns it: in latent columns, or in pixels through its VAE
        expected = tensor_to_frames(session.vae.decode(session.generator.reproject(latent, turn, session.turn_vae)))
    assert np.abs(turned.frames[2].astype(int) - expected[0].astype(int)).max() <= 1


def test_generators_without_reprojection_have_no_turned_previous(tmp_path):
    session = WorldSession(load_checkpoint(random_checkpoint(tmp_path / "ckpt")))
    candidates, _, _ = episode_candidates(session, *episode(session))
    assert list(candidates) == ["model", "model_teacher", "vae", "copy_previous", "copy_first"]


def test_a_memory_world_gets_the_keyframe_yardstick_and_its_tracked_poses(tmp_path):
    from worldsim.testing import random_world_checkpoint, toy_track

    session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "world")))
    real, actions = episode(session)
    poses, _ = toy_track(steps=len(real))
    candidates, _, tracked = episode_candidates(session, real, actions, poses)
    assert "keyframe" in candidates and tracked.shape == (len(real) - 1, 3)
    keyframe = candidates["keyframe"]
    assert keyframe.frames.shape == candidates["model"].frames.shape
    # at the start the tracked pose is the engine's: the first keyframe is the one nearest to it, decoded
    nearest = session.memory.nearest(tracked[:1])[0]
    with torch.inference_mode():
        turn = torch.tensor([(session.memory.poses[nearest, 2] - tracked[0, 2] + 180) % 360 - 180])
        from worldsim.models.generator import turn_columns

        latent = turn_columns(session.memory.latents[nearest:nearest + 1].float(), turn, session.memory.config.fov)
        expected = tensor_to_frames(session.vae.decode(latent))[0]
    assert np.abs(keyframe.frames[0].astype(int) - expected.astype(int)).max() <= 1


def test_a_world_with_the_map_walls_gets_the_warped_previous_yardstick(tmp_path):
    from dataclasses import replace

    from worldsim.testing import random_world_checkpoint, toy_track
    from worldsim.world.walls import Walls

    session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "world")))
    assert "warped_previous" not in episode_candidates(session, *episode(session), toy_track(steps=7)[0])[0]
    room = np.array([[0, 0, 400, 0], [400, 0, 400, 400], [400, 400, 0, 400], [0, 400, 0, 0]], dtype=float)
    session.movement.walkable = replace(session.movement.walkable, walls=Walls(room))
    real, actions = episode(session)
    poses, _ = toy_track(steps=len(real))
    poses[3] = poses[2]  # the player does not move into frame 3: the warp is the identity there
    candidates = episode_candidates(session, real, actions, poses)[0]
    warped, vae = candidates["warped_previous"], candidates["vae"]
    np.testing.assert_array_equal(warped.previous, real[:-1])
    assert np.abs(warped.frames[2].astype(int) - vae.previous[2].astype(int)).max() <= 1
    assert not np.array_equal(warped.frames[0], vae.previous[0])  # a move is drawn


def test_a_world_that_warps_is_measured_against_the_engine_turn_by_the_warp(tmp_path):
    from worldsim.testing import random_world_checkpoint, toy_track
    from worldsim.world.warp import warp_field, warp_latent

    room = np.array([[0, 0, 400, 0], [400, 0, 400, 400], [400, 400, 0, 400], [0, 400, 0, 0]], dtype=float)
    session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "world", walls=room, warp_fov=90.0)))
    real, actions = episode(session)
    poses, _ = toy_track(steps=len(real))
    candidates = episode_candidates(session, real, actions, poses)[0]
    assert {"turned_previous", "warped_previous"} <= candidates.keys()
    turned = candidates["turned_previous"]
    np.testing.assert_array_equal(turned.previous, real[:-1])
    # frame 1: the real first frame turned by the engine's heading change alone, the player held where it stood
    latent = session.vae.encode(frames_to_tensor(real[:1]))
    held = np.array([*poses[0, :2], poses[1, 2]])
    expected = tensor_to_frames(session.vae.decode(warp_latent(latent, *warp_field(poses[0], held, session.walls,
                                                                                    90.0, latent.shape[-1]))))[0]
    assert np.abs(turned.frames[0].astype(int) - expected.astype(int)).max() <= 1
