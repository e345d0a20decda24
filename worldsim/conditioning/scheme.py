"""A conditioning scheme = controls (how a player drives it) + encoding (what the model was trained on).

Schemes live in YAML (assets/schemes/*.yaml). Controls can be remapped freely; the encoding must match the
checkpoint's, and `check_matches` says exactly which field differs when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.conditioning.controls import Controls, ControlsConfig
from worldsim.conditioning.encodings import ENCODINGS, Encoding, EncodingConfig
from worldsim.config import ASSETS_DIR, ConfigError, from_dict, load_yaml, to_dict
from worldsim.input.state import ControllerState

SCHEMES_DIR = ASSETS_DIR / "schemes"


def shipped_schemes() -> dict[str, Path]:
    """The scheme registry: name -> YAML file shipped in assets/schemes."""
    return {p.stem: p for p in sorted(SCHEMES_DIR.glob("*.yaml"))}


def parse_encoding(data: Any, file: object = None, path: str = "encoding") -> EncodingConfig:
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(file, f"{path}.type", "missing encoding type", allowed=", ".join(ENCODINGS))
    kind = data["type"]
    if not isinstance(kind, str) or kind not in ENCODINGS:
        raise ConfigError(file, f"{path}.type", "unknown encoding", kind, ", ".join(ENCODINGS))
    return from_dict(ENCODINGS[kind][0], data, file=file, path=path)


@dataclass(frozen=True)
class Condition:
    """One frame's condition: the action (control values), its frame vector and its token map."""

    action: np.ndarray  # (A,)
    frame: np.ndarray  # (frame_dim,)
    tokens: np.ndarray  # (token_channels, h, w)


class Scheme:
    def __init__(self, name: str, encoding_config: EncodingConfig, controls_config: ControlsConfig,
                 description: str = "", file: object = None):
        self.name = name
        self.description = description
        self.file = file
        self.encoding_config = encoding_config
        self.encoding: Encoding = ENCODINGS[encoding_config.type][1](encoding_config)
        self.controls = Controls(controls_config, self.encoding.control_names, self.encoding.ranges, file)

    @property
    def control_names(self) -> tuple[str, ...]:
        return self.encoding.control_names

    def action(self, state: ControllerState) -> np.ndarray:
        return self.controls.resolve(state)

    def encode_actions(self, actions: np.ndarray, grid: tuple[int, int], poses: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Recorded or live actions (..., A) -> (frame vectors (..., F), token maps (..., C, h, w)). An encoding that
        conditions on the pose gets its pose maps from `poses` (..., 3) when given (recordings); at play time the
        session fills them from the pose it tracks."""
        tokens = self.encoding.token_maps(actions, grid)
        if poses is not None and self.encoding.pose_channels:
            tokens[..., -self.encoding.pose_channels:, :, :] = self.encoding.pose_maps(poses, grid)
        return self.encoding.frame_vectors(actions), tokens

    def action_space(self) -> dict:
        """The encoding as far as recorded actions are concerned (a `world` encoding plays the camera's actions): a
        data set recorded with one scheme trains any scheme with the same action space."""
        return action_space(self.encoding_dict())

    def encode(self, state: ControllerState, grid: tuple[int, int]) -> Condition:
        action = self.action(state)
        frame, tokens = self.encode_actions(action, grid)
        return Condition(action, frame, tokens)

    def encoding_dict(self) -> dict:
        return to_dict(self.encoding_config)

    def check_matches(self, trained: dict, checkpoint: object = "the checkpoint") -> None:
        """Refuse a scheme whose encoding differs from the one the checkpoint was trained with."""
        mine = self.encoding_dict()
        if mine == trained:
            return
        diffs = [f"{k}: scheme has {mine.get(k)!r}, checkpoint has {trained.get(k)!r}"
                 for k in sorted(set(mine) | set(trained)) if mine.get(k) != trained.get(k)]
        raise ConfigError(self.file, "encoding", f"scheme '{self.name}' does not match the encoding "
                          f"{checkpoint} was trained with ({'; '.join(diffs)})",
                          allowed="a scheme with the same encoding; controls may differ")


def action_space(encoding: dict) -> dict:
    if encoding.get("type") == "world":
        return {"type": "camera", **{k: encoding.get(k) for k in ("forward_speed", "strafe_speed", "yaw_speed", "fov")}}
    return dict(encoding)


def scheme_from_dict(data: Any, file: object = None) -> Scheme:
    if not isinstance(data, dict):
        raise ConfigError(file, "", "a scheme must be a mapping", data, "keys name, description, encoding, controls")
    allowed = {"name", "description", "encoding", "controls"}
    for key in data:
        if key not in allowed:
            raise ConfigError(file, str(key), "unknown key", None, ", ".join(sorted(allowed)))
    name = data.get("name", Path(str(file)).stem if file else "scheme")
    if not isinstance(name, str):
        raise ConfigError(file, "name", "wrong type", name, "a string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(file, "description", "wrong type", description, "a string")
    encoding = parse_encoding(data.get("encoding"), file)
    controls = from_dict(ControlsConfig, data.get("controls", {}), file=file, path="controls")
    return Scheme(name, encoding, controls, description, file)


def load_scheme(name_or_path: str | Path) -> Scheme:
    """A shipped scheme by name (`camera`, `keys`, ...) or any scheme YAML file by path."""
    registry = shipped_schemes()
    if str(name_or_path) in registry:
        path = registry[str(name_or_path)]
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ConfigError(path, "", "no such scheme file or shipped scheme name", str(name_or_path),
                              ", ".join(registry) + ", or a path to a .yaml file")
    return scheme_from_dict(load_yaml(path), path)
