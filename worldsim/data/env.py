"""The engine interface: what worldsim needs from a real game engine to record a world from it.

An engine adapter turns the conditioning scheme's action vector into engine input and gives back
  - frames: uint8 (H, W, 3) RGB, the picture the player saw after the step;
  - poses: float32 [x, y, angle_degrees], the camera's position in map units and its heading,
    counter-clockwise from the map's +x axis (a right turn, yaw > 0 in the camera scheme, lowers the angle).

The interface is deliberately small (reset, step, close, metadata) so a second engine fits in one file: a
module with an `Env` class, a frozen config dataclass and a folder of YAML configs, registered in `ENGINES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from worldsim.conditioning import Scheme
from worldsim.config import ConfigError

# engine name -> module defining `CONFIGS_DIR`, `DEFAULT_CONFIG` and `make_env(config_path, scheme) -> Env`.
# Modules are imported on demand so that reading a dataset never needs the engine installed.
ENGINES: dict[str, str] = {"doom": "worldsim.data.doom"}


@dataclass(frozen=True)
class StepInfo:
    """What happened during one `Env.step` besides the new frame and pose."""

    done: bool  # the episode ended during this step (level exit, death, timeout): the frame is not new
    action: np.ndarray  # (A,) float32: the action the engine really applied, in the scheme's units (clipped
    # to the controls' ranges, rounded to what the engine can represent); this is what gets recorded


class Env(Protocol):
    """A real engine driven by a conditioning scheme's actions. One recorded frame per `step`."""

    scheme: Scheme

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        ...

    @property
    def frame_skip(self) -> int:
        """Engine tics per recorded frame."""
        ...

    @property
    def fps(self) -> float:
        """Recorded frames per second of game time: the rate a person plays at."""
        ...

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Start a new episode; returns (frame (H, W, 3) uint8, pose (3,) float32)."""
        ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, StepInfo]:
        """Apply the scheme's action (A,) for one recorded frame; returns (frame, pose, info)."""
        ...

    def metadata(self) -> dict[str, Any]:
        """JSON-safe facts stored with every episode: engine, version, map, resolution, frame skip, ..."""
        ...

    def close(self) -> None: ...


def engine_module(engine: str) -> Any:
    if engine not in ENGINES:
        raise ConfigError(None, "env", "unknown engine", engine, ", ".join(ENGINES))
    return importlib.import_module(ENGINES[engine])


def engine_configs(engine: str) -> dict[str, Path]:
    """Shipped configs of an engine: name -> YAML file (assets/<engine>/*.yaml)."""
    return {p.stem: p for p in sorted(engine_module(engine).CONFIGS_DIR.glob("*.yaml"))}


def resolve_config(engine: str, name_or_path: str | Path | None) -> Path:
    """A shipped config name (`freedoom2_map02`), a YAML path, or None for the engine's default."""
    shipped = engine_configs(engine)
    if name_or_path is None:
        return shipped[engine_module(engine).DEFAULT_CONFIG]
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(path, "", f"no such {engine} config file or shipped config name", str(name_or_path),
                          ", ".join(shipped) + ", or a path to a .yaml file")
    return path


def make_env(engine: str, config: str | Path | None, scheme: Scheme) -> Env:
    """Build an engine adapter from a config name/path (None: the engine's default world)."""
    module = engine_module(engine)
    return module.make_env(resolve_config(engine, config), scheme)
