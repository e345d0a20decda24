"""The world's state beyond pixels in the session: the pose advances with every step, the keyframe memory's anchor
reaches the generator, and reset / snapshot / restore / replay stay exact with them."""

import numpy as np
import pytest
import torch
import yaml

from worldsim.checkpoint import CheckpointError, load_checkpoint
from worldsim.config import ConfigError
from worldsim.runtime.session import WorldSession
from worldsim.testing import random_checkpoint, random_world_checkpoint
from worldsim.world.doors import DoorSpec
from worldsim.world.memory import SETTLE_FRAMES

FORWARD_RIGHT = np.array([1.0, 0.0, 0.5, 0.0], np.float32)  # forward, strafe, yaw, use


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return load_checkpoint(random_world_checkpoint(tmp_path_factory.mktemp("world") / "ckpt"))


def roll(session: WorldSession, steps: int = 6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames, poses = [], []
    for _ in range(steps):
        frames.append(session.step(session.encode(FORWARD_RIGHT)))
        poses.append(session.player.pose)
    return frames, poses


def test_a_world_checkpoint_loads_its_movement_memory_and_start_poses(world):
    assert world.movement is not None and world.memory is not None
    assert len(world.memory) <= 12 and world.start_poses.shape == (2, 3)


def test_the_pose_starts_at_the_start_point_and_follows_the_actions(world):
    session = WorldSession(world)
    session.reset()
    np.testing.assert_allclose(session.player.pose, world.movement.start(world.start_poses[0].numpy()).pose)
    _, poses = roll(session)
    assert poses[-1][2] == pytest.approx((session.player.pose[2]) % 360)
    assert np.linalg.norm(poses[-1][:2] - poses[0][:2]) > 0  # it walked
    assert world.movement.walkable.contains(np.array(poses)[:, :2]).all()


def test_the_anchor_reaches_the_generator(world):
    session = WorldSession(world)
    session.reset()
    frame_here = session.step(session.encode(np.zeros(4, np.float32)))
    far = world.memory.poses[np.argmax(np.linalg.norm(world.memory.poses[:, :2] - world.memory.poses[0, :2],
                                                      axis=1))]
    session.reset(world.start_frames[0].numpy(), far)  # same first frame, seen from elsewhere
    frame_there = session.step(session.encode(np.zeros(4, np.float32)))
    assert (frame_here != frame_there).any()


def test_snapshot_restore_and_replay_are_exact_with_the_pose(world):
    session = WorldSession(world)
    session.reset()
    roll(session, 3)
    snap = session.snapshot()
    frames, poses = roll(session)
    session.restore(snap)
    again, poses_again = roll(session)
    assert all((a == b).all() for a, b in zip(frames, again))
    assert np.array(poses).tobytes() == np.array(poses_again).tobytes()
    replay = WorldSession(load_checkpoint(world.path))  # another process would load it again
    replay.reset()
    roll(replay, 3)
    assert np.array(roll(replay)[1]).tobytes() == np.array(poses).tobytes()


def test_doors_live_in_the_session_state(tmp_path):
    outline = np.array([[240, 0, 256, 0], [256, 0, 256, 400], [256, 400, 240, 400], [240, 400, 240, 0]], float)
    door = DoorSpec(outline, outline[[1, 3]], top=92, speed=8, stays_open=False)  # across the room, x 240-256
    session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "door", doors=[door])))
    session.reset()  # at (200, 200) facing +x: the door ahead
    walk, use = np.array([1.0, 0, 0, 0], np.float32), np.array([0, 0, 0, 1.0], np.float32)
    for _ in range(30):
        session.step(session.encode(walk))
    stopped = session.player.x
    assert stopped < 240 - 8  # at the shut door
    snap = session.snapshot()
    frames = [session.step(session.encode(a)) for a in [use] + [walk] * 30]
    assert session.player.x > stopped + 8  # opened, and into the doorway (the toy track's map ends past it)
    session.restore(snap)
    assert session.movement.doors.closed(session.player.doors).all()  # shut again, as it was
    again = [session.step(session.encode(a)) for a in [use] + [walk] * 30]
    assert all((a == b).all() for a, b in zip(frames, again)) and session.player.x > stopped + 8


def test_written_views_live_in_the_session_state(tmp_path):
    session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "w", pull=0.5, write_back=64)))
    session.reset()
    assert len(session.written) == 1  # the real first frame
    roll(session, 3)
    snap = session.snapshot()
    frames, _ = roll(session)
    written = len(session.written)
    session.restore(snap)
    again, _ = roll(session)
    assert all((a == b).all() for a, b in zip(frames, again)) and len(session.written) == written
    session.reset()
    assert len(session.written) == 1


def test_write_back_pulls_toward_the_real_first_frame_where_it_was_seen(tmp_path):
    still = np.zeros(4, np.float32)
    frames = {}
    for slots in (0, 64):
        session = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / str(slots), pull=0.5,
                                                                       write_back=slots)))
        session.reset()
        frames[slots] = [session.step(session.encode(still)) for _ in range(SETTLE_FRAMES + 3)]
    # standing where it started, the pull goes toward the real first frame (the place as it is), not the keyframe
    assert all((a != b).any() for a, b in zip(frames[0], frames[64]))


def test_hold_still_keeps_the_noise_while_the_pose_stays_and_replays_exactly(tmp_path):
    path = random_world_checkpoint(tmp_path / "w", pull=0.4)
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["sampling"]["hold_still"] = True
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    session = WorldSession(load_checkpoint(path))
    session.reset()
    still, walk = np.zeros(4, np.float32), np.array([1.0, 0, 0, 0], np.float32)
    session.step(session.encode(walk))
    noise = session.noise.clone()
    session.step(session.encode(walk))
    assert not torch.equal(session.noise, noise)  # moving: fresh noise
    for _ in range(40):  # let the momentum die out
        session.step(session.encode(still))
    noise = session.noise.clone()
    snap = session.snapshot()
    frames = [session.step(session.encode(still)) for _ in range(3)]
    assert torch.equal(session.noise, noise)  # standing: the same noise
    session.step(session.encode(walk))
    session.restore(snap)
    assert [(f == g).all() for f, g in zip(frames, [session.step(session.encode(still)) for _ in range(3)])]
    assert torch.equal(session.noise, noise)


def test_a_memory_world_needs_the_pose_of_its_first_frame(world):
    session = WorldSession(world)
    with pytest.raises(ValueError, match="needs the pose"):
        session.reset(world.start_frames[0].numpy())


def test_a_world_without_movement_tracks_no_pose(tiny_checkpoint):
    session = WorldSession(load_checkpoint(tiny_checkpoint))
    session.reset()
    session.step(session.encode(FORWARD_RIGHT))
    assert session.player is None and session.snapshot().player is None


def test_missing_memory_weights_are_refused_by_name(world, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(world.path, broken)
    (broken / "memory.safetensors").unlink()
    with pytest.raises(CheckpointError, match="memory.safetensors is missing"):
        load_checkpoint(broken)


def test_a_memory_config_that_does_not_fit_the_generator_is_refused(world, tmp_path):
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(world.path, edited)
    config = yaml.safe_load((edited / "config.yaml").read_text())
    config["memory"]["keyframes"] = 0  # the generator still takes the anchor channels
    (edited / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="condition sizes do not match"):
        load_checkpoint(edited)


def test_a_world_that_attends_to_its_keyframe_plays_replays_and_is_checked(tmp_path):
    path = random_world_checkpoint(tmp_path / "attend", attend=True)
    world = load_checkpoint(path)
    g = world.generator.config
    assert g.memory_channels == world.config.memory.anchor_channels(g.latent_channels, g.patch) > 0
    test_the_anchor_reaches_the_generator(world)
    test_snapshot_restore_and_replay_are_exact_with_the_pose(world)
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["memory"]["attend"] = False  # the generator still attends to the view
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="memory_channels.*attended keyframe view does not match"):
        load_checkpoint(path)
    config["memory"].update(attend=True, condition=False)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="memory.condition: true"):
        load_checkpoint(path)


def test_a_widened_generator_computes_what_the_narrow_one_did(tmp_path):
    checkpoint = load_checkpoint(random_checkpoint(tmp_path / "narrow"))
    narrow = checkpoint.generator
    wide = narrow.with_token_channels(narrow.config.token_cond_channels + 5)
    g = narrow.config
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, g.latent_channels, *g.latent_size, generator=gen)
    tokens = torch.randn(1, 2, g.token_cond_channels, *g.grid, generator=gen)
    frame = torch.randn(1, 2, g.frame_cond_dim, generator=gen)
    t, aug = torch.ones(1, 2), torch.zeros(1, 2)
    anchor = torch.randn(1, 2, 5, *g.grid, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(wide(x, x, torch.cat([tokens, anchor], 2), frame, t, aug),
                                   narrow(x, x, tokens, frame, t, aug))
    with pytest.raises(ValueError, match="only grow"):
        narrow.with_token_channels(1)


def test_the_absolute_camera_reaches_the_generator_and_needs_a_movement_model(tmp_path):
    world = load_checkpoint(random_world_checkpoint(tmp_path / "abs", keyframes=0, scheme="world"))
    assert world.memory is None and world.config.encoding["type"] == "world"
    session = WorldSession(world)
    first = world.start_frames[0].numpy()
    frames = []
    for pose in world.start_poses.numpy():
        session.reset(first, pose)
        frames.append(session.step(session.encode(np.zeros(4, np.float32))))
    assert (frames[0] != frames[1]).any()  # same frame and action, another place: another picture
    with pytest.raises(ValueError, match="needs the pose"):
        session.reset(first)
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(world.path, bare)
    (bare / "movement.safetensors").unlink()
    with pytest.raises(ValueError, match="conditions on the player's pose.*movement.safetensors"):
        WorldSession(load_checkpoint(bare))


def test_a_full_pull_replaces_the_recycled_frame_by_the_keyframe_of_its_pose(tmp_path):
    world = load_checkpoint(random_world_checkpoint(tmp_path / "pull", condition=False, pull=1.0))
    assert world.generator.config.token_cond_channels == 6  # no anchor input: the memory only pulls
    session = WorldSession(world)
    pose = world.start_poses[0].numpy()
    nexts = []
    for first in world.start_frames.numpy():  # two different first frames seen from the same pose
        session.reset(first, pose)
        nexts.append(session.step(session.encode(np.zeros(4, np.float32))))
    assert (nexts[0] == nexts[1]).all()  # the recycled frame was the keyframe either way
    unpulled = WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "free", condition=False)))
    frames = []
    for first in world.start_frames.numpy():
        unpulled.reset(first, pose)
        frames.append(unpulled.step(unpulled.encode(np.zeros(4, np.float32))))
    assert (frames[0] != frames[1]).any()


ROOM = np.array([[0, 0, 400, 0], [400, 0, 400, 400], [400, 400, 0, 400], [0, 400, 0, 0]], dtype=float)


def plain_and_warped(tmp_path, actions: list[list[float]], **warp) -> tuple[list, list, WorldSession]:
    """The frames a world plays for `actions` from its first start frame, without and with a warp setting (random
    weights, the same for both, in a square room)."""
    sessions = [WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / name, walls=ROOM, **settings)))
                for name, settings in (("plain", {}), ("warped", warp))]
    frames = []
    for session in sessions:
        session.reset()
        frames.append([session.step(session.encode(np.array(action, np.float32))) for action in actions])
    return *frames, sessions[1]


def test_the_recycled_frame_can_be_warped_by_the_move_and_replays_stay_exact(tmp_path):
    still, forward = [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]
    plain, warped, session = plain_and_warped(tmp_path, [still, forward, forward], warp_move=1.0)
    assert (plain[0] == warped[0]).all()  # no move, no warp
    assert (plain[2] != warped[2]).any()  # the move is drawn into the recycled frame
    test_snapshot_restore_and_replay_are_exact_with_the_pose(session.checkpoint)


def test_a_warp_without_the_map_walls_is_refused(tmp_path):
    with pytest.raises(ValueError, match="warp_move warps the recycled frame with depth from the map's walls"):
        WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "w", warp_move=1.0)))


def test_a_world_trained_warped_is_shown_its_recycled_frame_warped_by_every_move(tmp_path):
    still, turn = [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]
    plain, warped, session = plain_and_warped(tmp_path, [still, turn], warp_fov=90.0)
    assert (plain[0] == warped[0]).all()  # no move, no warp
    assert (plain[1] != warped[1]).any()  # a turn alone is warped too (it has no yaw turn)
    test_snapshot_restore_and_replay_are_exact_with_the_pose(session.checkpoint)
    with pytest.raises(ValueError, match="needs the pose"):
        session.reset(session.start_frame())


@pytest.mark.parametrize("walls, warp_move, match", [
    (None, 0.0, "shown the recycled frame warped by the player's move .* no movement with walls"),
    (ROOM, 1.0, "warp_move .* this world's is warped by the whole move already"),
])
def test_a_warped_world_without_walls_or_warped_twice_is_refused(tmp_path, walls, warp_move, match):
    with pytest.raises(ValueError, match=match):
        WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "w", walls=walls, warp_move=warp_move,
                                                             warp_fov=90.0)))


def test_the_pulled_view_can_be_warped_to_the_pose_and_replays_stay_exact(tmp_path):
    still, strafe = [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    pulled = {"keyframes": 12, "condition": False, "pull": 0.5}
    plain, warped, session = plain_and_warped(tmp_path, [still, strafe, strafe], **pulled)
    again, views_warped, session = plain_and_warped(tmp_path / "views", [still, strafe, strafe], **pulled,
                                                    warp_views=True)
    assert (warped[2] != views_warped[2]).any()  # off the keyframe's pose the pulled view is warped to it
    test_snapshot_restore_and_replay_are_exact_with_the_pose(session.checkpoint)
    with pytest.raises(ValueError, match="warp_views warps the pulled view .* no walls"):
        WorldSession(load_checkpoint(random_world_checkpoint(tmp_path / "w", condition=False, pull=0.5,
                                                             warp_views=True)))


def test_the_pulled_view_can_be_moved_in_pixels_and_replays_stay_exact(tmp_path):
    still, turn = [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.3, 0.0]
    pulled = {"keyframes": 12, "condition": False, "pull": 0.5, "warp_views": True}
    _, in_latents, session = plain_and_warped(tmp_path, [still, turn, turn], **pulled)
    assert session.view_vae is None
    _, in_pixels, session = plain_and_warped(tmp_path / "pixels", [still, turn, turn], **pulled, pixel_views=True)
    assert session.view_vae is session.vae
    assert (in_latents[2] != in_pixels[2]).any()  # the view is decoded, moved and encoded again
    test_snapshot_restore_and_replay_are_exact_with_the_pose(session.checkpoint)


def test_the_recycled_frame_can_be_turned_in_pixels_and_replays_stay_exact(tmp_path):
    still, turn = [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.3, 0.0]
    frames, sessions = [], []
    for name, pixels in (("latents", False), ("pixels", True)):
        session = WorldSession(load_checkpoint(random_world_checkpoint(
            tmp_path / name, keyframes=0, yaw_reprojection=[2, 4.0, 90.0], turn_in_pixels=pixels)))
        session.reset()
        frames.append([session.step(session.encode(np.array(action, np.float32))) for action in (still, turn, turn)])
        sessions.append(session)
    assert sessions[0].turn_vae is None and sessions[1].turn_vae is sessions[1].vae
    assert (frames[0][0] == frames[1][0]).all()  # no turn: the recycled latent as it is, no round trip
    assert (frames[0][1] != frames[1][1]).any()  # a turn: decoded, turned and encoded again
    test_snapshot_restore_and_replay_are_exact_with_the_pose(sessions[1].checkpoint)
