"""The ViZDoom adapter: frames, poses, calibration of the camera scheme, keys, scratch files, bad config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from worldsim.config import ConfigError, from_dict

vizdoom = pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")

from worldsim.data import doom  # noqa: E402
from worldsim.data.doom import DoomConfig, DoomEnv  # noqa: E402

ANGLE_TOL = 2 * 360 / 65536 + 1e-3  # the engine turns in 1/65536 turns per tic: two tics per frame


def turned(a: float, b: float) -> float:
    """Signed angle change from a to b in degrees, in [-180, 180)."""
    return (b - a + 180.0) % 360.0 - 180.0


def predicted_walk(speed_per_frame: float, frame_skip: int, frames: int) -> np.ndarray:
    """Distance per recorded frame from rest at a constant command, from Doom's momentum rule (doom.py)."""
    delta = round(speed_per_frame * doom.MOVE_UNITS_PER_SPEED / frame_skip)
    velocity, out = 0.0, []
    for _ in range(frames):
        moved = 0.0
        for _ in range(frame_skip):
            velocity += delta * doom.THRUST_PER_MOVE_UNIT
            moved += velocity
            velocity *= doom.DOOM_FRICTION
        out.append(moved)
    return np.array(out)


def test_reset_and_step_give_frames_and_poses(make_doom, camera):
    env = make_doom(camera)
    frame, pose = env.reset(0)
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    assert pose.shape == (3,) and pose.dtype == np.float32
    assert env.resolution == (160, 120) and env.frame_skip == 2 and env.fps == 17.5
    frame, pose, info = env.step(np.array([0.5, 0.0, 0.25, 0.0]))
    assert frame.shape == (120, 160, 3) and not info.done
    assert info.action.dtype == np.float32 and info.action.shape == (4,)
    meta = env.metadata()
    assert meta["engine"] == "vizdoom" and meta["map"] == "MAP01" and meta["frame_skip"] == 2


@pytest.mark.parametrize("yaw", [1.0, -0.5, 0.3])
def test_yaw_turns_yaw_speed_degrees_per_frame(make_doom, camera, yaw):
    env = make_doom(camera)
    _, pose = env.reset(0)
    for _ in range(4):
        _, after, _ = env.step(np.array([0.0, 0.0, yaw, 0.0]))
        # + yaw turns right, which lowers Doom's counter-clockwise angle; exact up to Doom's angle resolution
        expected = -yaw * camera.encoding_config.yaw_speed
        assert turned(pose[2], after[2]) == pytest.approx(expected, abs=ANGLE_TOL)
        pose = after


def test_yaw_calibration_follows_frame_skip(make_doom, camera):
    env = make_doom(camera, frame_skip=4)
    _, pose = env.reset(0)
    _, after, _ = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    assert turned(pose[2], after[2]) == pytest.approx(-camera.encoding_config.yaw_speed, abs=2 * ANGLE_TOL)


def test_forward_settles_at_forward_speed_per_frame(make_doom, camera):
    env = make_doom(camera)
    _, pose = env.reset(0)  # MAP01 start, facing east down an open hall
    assert pose[2] == pytest.approx(0.0)
    positions = [pose[:2]]
    for _ in range(24):
        _, pose, _ = env.step(np.array([1.0, 0.0, 0.0, 0.0]))
        positions.append(pose[:2])
    steps = np.diff(np.array(positions), axis=0)
    assert np.all(steps[:, 0] > 0) and np.allclose(steps[:, 1], 0.0, atol=1e-3)  # straight ahead (east)
    moved = steps[:, 0]
    np.testing.assert_allclose(moved, predicted_walk(camera.encoding_config.forward_speed, 2, 24), rtol=0.02)
    assert moved[-1] == pytest.approx(camera.encoding_config.forward_speed, rel=0.05)  # steady walking speed


def test_strafe_moves_right_with_the_calibrated_thrust(make_doom, camera):
    env = make_doom(camera)
    _, pose = env.reset(0)
    positions = [pose[:2]]
    for _ in range(3):
        _, pose, _ = env.step(np.array([0.0, 1.0, 0.0, 0.0]))
        positions.append(pose[:2])
    steps = np.diff(np.array(positions), axis=0)
    assert np.allclose(steps[:, 0], 0.0, atol=1e-3) and np.all(steps[:, 1] < 0)  # facing east, right is -y
    expected = predicted_walk(camera.encoding_config.strafe_speed, 2, 3)
    np.testing.assert_allclose(-steps[:, 1], expected, rtol=0.02)


def test_applied_action_is_what_the_engine_can_represent(make_doom, camera):
    env = make_doom(camera)
    env.reset(0)
    _, _, info = env.step(np.array([0.52, -2.0, 0.3, 0.7]))
    # forward 1.0 = 15 whole move units at 10 units/frame, frame skip 2: 0.52 -> 8/15; strafe clipped to -1
    np.testing.assert_allclose(info.action, [8 / 15, -1.0, 0.3, 1.0], atol=1e-6)


def test_keys_scheme_turns_and_walks(make_doom, keys):
    env = make_doom(keys)
    _, pose = env.reset(0)
    turn_right = np.zeros(len(keys.control_names), dtype=np.float32)
    turn_right[keys.control_names.index("turn_right")] = 1
    _, after, info = env.step(turn_right)
    assert turned(pose[2], after[2]) < -1.0
    np.testing.assert_array_equal(info.action, turn_right)
    forward = np.zeros_like(turn_right)
    forward[keys.control_names.index("forward")] = 1
    for _ in range(3):
        _, moved, _ = env.step(forward)
    assert np.hypot(*(moved[:2] - after[:2])) > 5.0


def test_scratch_files_never_land_in_the_working_directory(make_doom, camera, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = make_doom(camera)
    scratch = Path(env._scratch)
    assert Path(env._game.get_doom_config_path()).parent == scratch
    env.reset(0)
    env.step(np.zeros(4))
    assert os.getcwd() == str(tmp_path)
    env.close()
    assert list(tmp_path.iterdir()) == []
    assert not scratch.exists()


def test_episode_timeout_ends_the_episode(make_doom, camera):
    env = make_doom(camera, episode_timeout_tics=6)  # tics of play: 3 recorded frames at frame skip 2
    env.reset(0)
    assert [env.step(np.zeros(4))[2].done for _ in range(3)] == [False, False, True]


def test_unknown_map_names_the_maps_that_exist(camera):
    with pytest.raises(ConfigError, match=r"'map'.*MAP99.*MAP01 to MAP32"):
        DoomEnv(DoomConfig(map="MAP99"), camera)


def test_unknown_scenario_is_a_config_error(camera):
    with pytest.raises(ConfigError, match="my_way_home"):
        DoomEnv(DoomConfig(scenario="no_such_scenario"), camera)


def test_bad_config_values_fail_at_load_time(tmp_path):
    with pytest.raises(ConfigError, match="resolution.*unknown value.*160x120"):
        from_dict(DoomConfig, {"resolution": "1920x1080"})
    with pytest.raises(ConfigError, match="frame_skip.*out of range"):
        from_dict(DoomConfig, {"frame_skip": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(DoomConfig, {"mapp": "MAP01"})


def test_camera_speeds_beyond_doom_are_refused(camera, tmp_path):
    from worldsim.conditioning.scheme import scheme_from_dict

    fast = scheme_from_dict({"encoding": {"type": "camera", "forward_speed": 40.0}}, tmp_path / "fast.yaml")
    with pytest.raises(ConfigError, match=r"forward_speed.*at most 33"):
        DoomEnv(DoomConfig(), fast)
    wide = scheme_from_dict({"encoding": {"type": "camera", "fov": 110.0}}, tmp_path / "wide.yaml")
    with pytest.raises(ConfigError, match="fov"):
        DoomEnv(DoomConfig(), wide)


@pytest.mark.parametrize("name", ["freedoom2_map01", "freedoom2_map02", "freedoom2_map03", "my_way_home"])
def test_shipped_configs_start(name, camera):
    from worldsim.data.env import engine_configs, make_env

    assert name in engine_configs("doom")
    env = make_env("doom", name, camera)
    try:
        frame, pose = env.reset(1)
        assert frame.shape == (120, 160, 3) and frame.std() > 1.0  # a real picture, not a blank screen
    finally:
        env.close()


def test_recorded_alignment_matches_the_engines_pose_change(make_doom, camera, tmp_path):
    from data_fakes import ScriptedPolicy

    from worldsim.data.record import record
    from worldsim.data.storage import load_episodes

    # a right turn commanded at step 3 and a backward step at step 5 (the MAP01 start faces an open hall east)
    script = [[0, 0, 0, 0]] * 2 + [[0, 0, 1.0, 0]] + [[0, 0, 0, 0]] + [[-1.0, 0, 0, 0]] + [[0, 0, 0, 0]]
    record(make_doom(camera), ScriptedPolicy(script), tmp_path / "d", episodes=1, steps=6, seed=0,
           val_fraction=0, progress=False)
    (episode,) = load_episodes(tmp_path / "d")
    turns = [turned(a, b) for a, b in zip(episode.poses[:-1, 2], episode.poses[1:, 2])]
    assert np.flatnonzero(np.abs(turns) > 1e-3).tolist() == [2]  # between frames 2 and 3, not 3 and 4
    assert turns[2] == pytest.approx(-camera.encoding_config.yaw_speed, abs=ANGLE_TOL)
    assert episode.actions[3, 2] == 1.0 and not np.array_equal(episode.frames[3], episode.frames[2])
    moved = np.hypot(*np.diff(episode.poses[:, :2], axis=0).T)
    assert moved[:4].max() == 0 and moved[4] > 0.5  # the step back shows up between frames 4 and 5
    assert episode.actions[5, 0] == -1.0


def test_the_recorded_physics_follows_the_engines_player_tic_for_tic(make_doom, camera):
    from worldsim.world.movement import MovementModel
    from worldsim.world.walkable import WalkableMap

    env = make_doom(camera)
    _, pose = env.reset(0)  # MAP01 start, facing east down an open hall
    physics = doom.recorded_physics({**env.metadata(), "encoding": camera.encoding_dict()})  # as recordings say
    assert physics.tics_per_frame == 2 and physics.move_units == (15.0, 12.0)
    open_floor = WalkableMap.fit(pose[:2] + np.mgrid[-256:257:8, -256:257:8].reshape(2, -1).T.astype(np.float64))
    movement = MovementModel(None, -camera.encoding_config.yaw_speed, open_floor, tuple(camera.control_names),
                             physics=physics)
    state = movement.start(pose.astype(np.float64))
    script = [[1.0, 0.0, 0.0, 0.0]] * 5 + [[0.7, 0.4, 0.35, 0.0]] * 5 + [[0.2, -0.3, -0.6, 0.0]] * 5 + [[0.0] * 4] * 5
    for action in np.array(script):
        _, pose, _ = env.step(action)
        state = movement.step(state, action)
        # map units: the engine thrusts in 16.16 fixed point along an 8,192-entry sine table
        assert np.hypot(state.x - pose[0], state.y - pose[1]) < 0.05
        assert turned(state.heading, pose[2]) == pytest.approx(0.0, abs=1e-3)  # degrees: the engine's own steps


def test_keys_recordings_have_no_move_deltas_to_integrate(make_doom, keys):
    assert doom.recorded_physics({**make_doom(keys).metadata(), "encoding": keys.encoding_dict()}) is None
