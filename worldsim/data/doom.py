"""ViZDoom adapter: record the shipped world's gameplay from the real Doom engine (freedoom WADs, headless).

Calibration (measured on ViZDoom 1.3.2; tests/data/test_doom_env.py checks it):
  - TURN_LEFT_RIGHT_DELTA is degrees per tic, applied on every tic of a multi-tic `make_action`, fractions
    kept (to Doom's 1/65536 turn); + turns right. The camera scheme's yaw=1.0 sends `yaw_speed / frame_skip`
    and so turns exactly `yaw_speed` degrees within the recorded frame.
  - MOVE_FORWARD_BACKWARD_DELTA / MOVE_LEFT_RIGHT_DELTA are Doom's `forwardmove` / `sidemove`: each tic a
    value v adds v/32 map units/tic to the momentum, which then keeps 0xE800/0x10000 = 0.90625 of itself
    (friction). Constant v settles at v/32 / (1 - 0.90625) = v/3 map units per tic (95% after 30 tics, about
    15 frames at frame skip 2). The engine truncates v to an integer and clamps |v| at 50 (running speed); we
    round to the nearest integer ourselves and record the rounded value. forward=1.0 sends
    `3 * forward_speed / frame_skip`, so steady walking covers `forward_speed` map units per recorded frame.
    Doom's momentum (and walls) make the first frames of a walk shorter; the world model learns that from the
    action history.
  - The engine ignores input for the first 7 tics of an episode, so episodes start at tic
    `EPISODE_START_TICS`: the first recorded action already moves the player (the alignment tests rely on it).

ViZDoom writes `_vizdoom.ini` (its config path) and a `_vizdoom/` folder (into the working directory, during
`init`). Both go to a private temporary folder that `close` removes: recording never litters the user's
folder. The engine process and its shared memory go when the recorder does, even killed (doom_guard.py).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worldsim.conditioning import Scheme
from worldsim.config import ASSETS_DIR, ConfigError, load, rng, to_dict
from worldsim.data import doom_guard
from worldsim.data.doom_map import map_doors, map_walls, wad_maps
from worldsim.data.env import StepInfo
from worldsim.errors import WorldsimError
from worldsim.world.doors import DoorSpec
from worldsim.world.movement import TicPhysics

CONFIGS_DIR = ASSETS_DIR / "doom"
DEFAULT_CONFIG = "freedoom2_map01"

# Doom renders a 90 degree horizontal field of view at 4:3; other aspect ratios widen it, so only 4:3 is
# offered and the camera encoding's `fov` must say 90 for its ray maps to match the pictures.
DOOM_FOV_DEGREES = 90.0
Resolution = Literal["160x120", "200x150", "256x192", "320x240", "400x300", "512x384", "640x480", "800x600"]

DOOM_TICRATE = 35  # engine tics per game second
EPISODE_START_TICS = 10  # measured: input is ignored for the first 7 tics of an episode; start after that
DOOM_FRICTION = 0xE800 / 0x10000  # momentum kept per tic on ordinary floors
THRUST_PER_MOVE_UNIT = 1 / 32  # map units/tic added to momentum per tic for a move delta of 1
MOVE_UNITS_PER_SPEED = (1 - DOOM_FRICTION) / THRUST_PER_MOVE_UNIT  # = 3: delta for a steady 1 map unit/tic
DOOM_STOP_SPEED = 1 / 16  # map units per tic: momentum under this stops dead when nothing is pressed (STOPSPEED)
MAX_MOVE_DELTA = 50  # the engine clamps forward/side move deltas here (Doom's running speed)
POSE_VARIABLES = ("POSITION_X", "POSITION_Y", "ANGLE")

# Keys scheme: action name -> ViZDoom button held while the action is > 0.5.
KEY_BUTTONS: dict[str, str] = {
    "forward": "MOVE_FORWARD",
    "back": "MOVE_BACKWARD",
    "strafe_left": "MOVE_LEFT",
    "strafe_right": "MOVE_RIGHT",
    "turn_left": "TURN_LEFT",
    "turn_right": "TURN_RIGHT",
    "use": "USE",
    "run": "SPEED",
    "attack": "ATTACK",
}
# Camera scheme: control -> ViZDoom button, in the encoding's control order (forward, strafe, yaw, use).
CAMERA_BUTTONS: dict[str, str] = {
    "forward": "MOVE_FORWARD_BACKWARD_DELTA",
    "strafe": "MOVE_LEFT_RIGHT_DELTA",
    "yaw": "TURN_LEFT_RIGHT_DELTA",
    "use": "USE",
}


@dataclass(frozen=True)
class DoomConfig:
    """Which Doom world to record and how it is rendered. Filled from assets/doom/*.yaml."""

    game: Literal["freedoom2", "freedoom1"] = "freedoom2"  # IWAD shipped with the vizdoom package
    scenario: str | None = None  # ViZDoom scenario WAD over the game (e.g. "my_way_home"), or a .wad path
    map: str = "MAP01"
    monsters: bool = False  # a world model of walking around should not spend capacity on being shot
    skill: int = field(default=3, metadata=rng(1, 5))
    resolution: Resolution = "160x120"
    frame_skip: int = field(default=2, metadata=rng(1, 35))  # engine tics per recorded frame (35 tics = 1 s)
    # Status bar, weapon sprite and crosshair are off by default: pixels that ignore the camera only waste
    # the world model's capacity (the weapon bobs with every step).
    render_hud: bool = False
    render_weapon: bool = False
    render_crosshair: bool = False
    render_messages: bool = False  # "picked up a ..." text overlays
    episode_timeout_tics: int = field(default=0, metadata=rng(0, 10_000_000))  # tics of play; 0: no limit

    def __post_init__(self) -> None:
        if not self.map or len(self.map) > 8 or not self.map.isalnum():
            raise ValueError(f"'map' must be a WAD map lump name such as MAP01 or E1M1, got {self.map!r}")

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.resolution.split("x")
        return int(width), int(height)


def load_config(path: str | Path) -> DoomConfig:
    return load(DoomConfig, path)


def make_env(config_path: Path, scheme: Scheme) -> DoomEnv:
    return DoomEnv(load_config(config_path), scheme, config_file=config_path)


def recorded_doors(metadata: dict[str, Any]) -> list[DoorSpec]:
    """The doors of the map an episode was recorded on (from its metadata: game, scenario, map), read from the
    engine's WAD."""
    return map_doors(*_recorded_map(metadata))


def recorded_walls(metadata: dict[str, Any]) -> np.ndarray:
    """The walls (N, 4) of the map an episode was recorded on, at its skill, read from the engine's WAD."""
    return map_walls(*_recorded_map(metadata), int(metadata.get("config", {}).get("skill", DoomConfig.skill)))


def recorded_physics(metadata: dict[str, Any]) -> TicPhysics | None:
    """Doom's player physics per tic for an episode's recording (its frame skip and the camera encoding's speeds),
    with the constants calibrated above; None for encodings that do not send move deltas (keys)."""
    encoding = metadata.get("encoding") or {}
    if encoding.get("type") not in ("camera", "world"):
        return None
    frame_skip = int(metadata.get("frame_skip", DoomConfig.frame_skip))
    move_scale = MOVE_UNITS_PER_SPEED / frame_skip  # move units per map unit per frame (encode_camera's scale)
    return TicPhysics(frame_skip, DOOM_FRICTION, THRUST_PER_MOVE_UNIT,
                      (float(encoding["forward_speed"]) * move_scale, float(encoding["strafe_speed"]) * move_scale),
                      DOOM_STOP_SPEED, 360.0 / 65536)


def _recorded_map(metadata: dict[str, Any]) -> tuple[Path, str]:
    vzd = _import_vizdoom()
    scenario = metadata.get("scenario")
    if scenario:
        wad = shipped_scenarios().get(scenario, Path(scenario))
    else:
        wad = Path(vzd.__file__).parent / f"{metadata.get('game', DoomConfig.game)}.wad"
    return wad, str(metadata.get("map", DoomConfig.map))


def shipped_scenarios() -> dict[str, Path]:
    vizdoom = _import_vizdoom()
    return {p.stem: p for p in sorted(Path(vizdoom.scenarios_path).glob("*.wad"))}


_CWD_LOCK = threading.Lock()  # init() writes `_vizdoom/` into the working directory: it runs inside a chdir


class DoomEnv:
    """ViZDoom behind the `Env` interface (see worldsim/data/env.py), driven by a camera or keys scheme."""

    def __init__(self, config: DoomConfig, scheme: Scheme, config_file: str | Path | None = None):
        vzd = _import_vizdoom()
        self.config = config
        self.scheme = scheme
        self._vzd = vzd
        game_wad = Path(vzd.__file__).parent / f"{config.game}.wad"
        scenario_wad = self._scenario_path(config, config_file)
        self._check_map(config, config_file, scenario_wad or game_wad)
        self._buttons, self._encode = self._action_mapping(scheme, config, config_file)

        doom_guard.sweep()  # engines and shared memory of recorders killed earlier
        self._scratch = tempfile.mkdtemp(prefix="worldsim-vizdoom-")
        game = vzd.DoomGame()
        guard = doom_guard.EngineGuard(self._scratch)  # from before init: a kill at any point is cleaned up
        # Runs on close(), garbage collection or interpreter exit: engine first (it saves its .ini on the way
        # out), then its watchdog and its scratch folder.
        self._cleanup = weakref.finalize(self, _shut_down, game, guard, self._scratch)
        game.set_doom_config_path(os.path.join(self._scratch, "_vizdoom.ini"))
        game.set_doom_game_path(str(game_wad))
        if scenario_wad is not None:
            game.set_doom_scenario_path(str(scenario_wad))
        game.set_doom_map(config.map.upper())
        game.set_doom_skill(config.skill)
        if not config.monsters:
            game.add_game_args("-nomonsters")
        game.set_screen_resolution(getattr(vzd.ScreenResolution, f"RES_{config.resolution.upper()}"))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_render_hud(config.render_hud)
        game.set_render_weapon(config.render_weapon)
        game.set_render_crosshair(config.render_crosshair)
        game.set_render_messages(config.render_messages)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_console_enabled(False)
        game.set_available_buttons([getattr(vzd.Button, b) for b in self._buttons])
        game.set_available_game_variables([getattr(vzd.GameVariable, v) for v in POSE_VARIABLES])
        game.set_episode_start_time(EPISODE_START_TICS)
        game.set_episode_timeout(config.episode_timeout_tics)
        game.set_mode(vzd.Mode.PLAYER)  # synchronous: waits for each action, runs as fast as the CPU allows
        with _CWD_LOCK:
            previous = os.getcwd()
            os.chdir(self._scratch)
            try:
                game.init()
            except Exception as err:  # vizdoom has its own exception types; the user can only fix the config
                self._cleanup()
                raise WorldsimError(f"ViZDoom failed to start ({config_file or 'config'}): {err}") from None
            finally:
                os.chdir(previous)
        guard.started()
        self._game = game
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    # -- construction helpers --------------------------------------------------------------------------------

    @staticmethod
    def _scenario_path(config: DoomConfig, file: Any) -> Path | None:
        if config.scenario is None:
            return None
        scenarios = shipped_scenarios()
        if config.scenario in scenarios:
            return scenarios[config.scenario]
        path = Path(config.scenario)
        if file is not None and not path.is_absolute():
            path = Path(file).parent / path
        if path.suffix.lower() != ".wad" or not path.is_file():
            raise ConfigError(file, "scenario", "unknown scenario", config.scenario,
                              ", ".join(scenarios) + ", or a path to a .wad file")
        return path

    @staticmethod
    def _check_map(config: DoomConfig, file: Any, wad: Path) -> None:
        maps = wad_maps(wad)
        if config.map.upper() not in maps:
            shown = ", ".join(maps) if len(maps) <= 12 else f"{maps[0]} to {maps[-1]}"
            raise ConfigError(file, "map", f"no such map in {wad.name}", config.map, shown)

    @staticmethod
    def _action_mapping(scheme: Scheme, config: DoomConfig, file: Any) -> tuple[list[str], Any]:
        """The scheme's ViZDoom buttons, and a function action (A,) -> (engine values, applied action)."""
        encoding = scheme.encoding_config
        names = scheme.control_names
        low = np.array([scheme.encoding.ranges[n][0] for n in names], dtype=np.float32)
        high = np.array([scheme.encoding.ranges[n][1] for n in names], dtype=np.float32)
        if encoding.type == "keys":
            unknown = [n for n in names if n not in KEY_BUTTONS]
            if unknown:
                raise ConfigError(scheme.file, "encoding.actions", "no ViZDoom button for this action",
                                  unknown[0], ", ".join(KEY_BUTTONS))

            def encode_keys(action: np.ndarray) -> tuple[list[float], np.ndarray]:
                pressed = (action > 0.5).astype(np.float32)
                return pressed.tolist(), pressed

            return [KEY_BUTTONS[n] for n in names], encode_keys
        if encoding.type in ("camera", "world"):  # the world encoding plays the camera's actions
            if not math.isclose(encoding.fov, DOOM_FOV_DEGREES):
                raise ConfigError(scheme.file, "encoding.fov", "ViZDoom renders a fixed horizontal field of "
                                  "view", encoding.fov, f"{DOOM_FOV_DEGREES:g}")
            move_scale = MOVE_UNITS_PER_SPEED / config.frame_skip
            forward_scale = encoding.forward_speed * move_scale  # delta value at forward = 1.0
            strafe_scale = encoding.strafe_speed * move_scale
            yaw_scale = encoding.yaw_speed / config.frame_skip  # degrees per tic at yaw = 1.0
            for key, scale in (("forward_speed", forward_scale), ("strafe_speed", strafe_scale)):
                if scale > MAX_MOVE_DELTA:
                    fastest = MAX_MOVE_DELTA / move_scale
                    raise ConfigError(scheme.file, f"encoding.{key}", "faster than Doom can move at frame "
                                      f"skip {config.frame_skip}", getattr(encoding, key),
                                      f"at most {fastest:.3g}")

            def encode_camera(action: np.ndarray) -> tuple[list[float], np.ndarray]:
                forward, strafe, yaw, use = np.clip(action, low, high).tolist()
                forward_delta = round(forward * forward_scale)  # the engine only takes whole move units
                strafe_delta = round(strafe * strafe_scale)
                pressed = 1.0 if use > 0.5 else 0.0
                applied = np.array([forward_delta / forward_scale, strafe_delta / strafe_scale, yaw, pressed],
                                   dtype=np.float32)
                return [float(forward_delta), float(strafe_delta), yaw * yaw_scale, pressed], applied

            return [CAMERA_BUTTONS[n] for n in names], encode_camera
        raise ConfigError(scheme.file, "encoding.type", "the Doom engine cannot play this encoding",
                          encoding.type, "keys, camera")

    # -- the Env interface -----------------------------------------------------------------------------------

    @property
    def resolution(self) -> tuple[int, int]:
        return self.config.size

    @property
    def frame_skip(self) -> int:
        return self.config.frame_skip

    @property
    def fps(self) -> float:
        return DOOM_TICRATE / self.config.frame_skip

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        self._game.set_seed(int(seed) % 2**32)
        self._game.new_episode()
        self._last = self._observe()
        return self._last

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, StepInfo]:
        if self._last is None:
            raise RuntimeError("DoomEnv.step called before reset")
        values, applied = self._encode(np.asarray(action, dtype=np.float32))
        self._game.make_action(values, self.config.frame_skip)
        if self._game.is_episode_finished():
            return (*self._last, StepInfo(done=True, action=applied))
        self._last = self._observe()
        return (*self._last, StepInfo(done=False, action=applied))

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        state = self._game.get_state()
        return state.screen_buffer, np.asarray(state.game_variables, dtype=np.float32)

    def metadata(self) -> dict[str, Any]:
        return {
            "engine": "vizdoom",
            "engine_version": self._vzd.__version__,
            "map": self.config.map,
            "game": self.config.game,
            "scenario": self.config.scenario,
            "resolution": list(self.resolution),
            "frame_skip": self.config.frame_skip,
            "config": to_dict(self.config),
            "buttons": list(self._buttons),
        }

    def close(self) -> None:
        self._game = None
        if hasattr(self, "_cleanup"):
            self._cleanup()

    def __enter__(self) -> DoomEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shut_down(game: Any, guard: doom_guard.EngineGuard, scratch: str) -> None:
    clean = False
    try:
        game.close()
        clean = True
    finally:
        guard.close(clean)  # not clean: the watchdog kills the engine and removes its shared memory
        shutil.rmtree(scratch, ignore_errors=True)


def _import_vizdoom() -> Any:
    try:
        import vizdoom
    except ImportError:
        raise WorldsimError("recording from Doom (worldsim record, train, eval) needs the vizdoom package of the "
                            "[train] extra: pip install 'worldsim[train]', or from a checkout "
                            "pip install -e \".[train]\"") from None
    return vizdoom

