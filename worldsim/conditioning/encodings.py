"""Encodings: named control values (an "action") -> the condition the generator was trained on.

An encoding defines the action space (the controls, their ranges) and turns an action into
  - a frame vector (frame_dim,) that drives adaLN, and
  - a token map (token_channels, h, w) over the generator's token grid, channel-concatenated to its input.
The same function encodes a player's controls at play time and the engine's recorded actions at training time.

An encoding may also condition on where the player is (`pose_channels` > 0, the `world` type): the last
`pose_channels` channels of its token map are then left at zero by `token_maps` and filled by `pose_maps` from
the pose, which the session tracks with its learned movement at play time and the recordings give in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from worldsim.config import rng

NORM_SAMPLES = 4096  # random commands used to measure the ray maps' spread (fixed seed: the encoding is constant)


@dataclass(frozen=True)
class KeysEncodingConfig:
    """Discrete multi-hot intents (DIAMOND/GameNGen style) plus an explicit no-op bit."""

    type: Literal["keys"] = "keys"
    actions: tuple[str, ...] = ("forward", "back", "strafe_left", "strafe_right", "turn_left", "turn_right", "use")

    def __post_init__(self) -> None:
        if len(set(self.actions)) != len(self.actions) or not self.actions:
            raise ValueError(f"actions must be distinct and non-empty, got {list(self.actions)}")


@dataclass(frozen=True)
class CameraEncodingConfig:
    """Continuous relative camera motion per frame, rendered AAPT-style as ray origin/direction maps.

    The speeds say what a full command (1.0) means physically; the recording engine uses the same numbers, so the
    condition a player produces means the same motion the model saw in training.
    """

    type: Literal["camera"] = "camera"
    forward_speed: float = field(default=10.0, metadata=rng(0.01, 1000.0))  # map units per frame at forward=1
    strafe_speed: float = field(default=8.0, metadata=rng(0.01, 1000.0))  # map units per frame at strafe=1
    yaw_speed: float = field(default=4.0, metadata=rng(0.01, 90.0))  # degrees per frame at yaw=1 (+ = right)
    fov: float = field(default=90.0, metadata=rng(10.0, 170.0))  # horizontal field of view, degrees




class KeysEncoding:
    def __init__(self, config: KeysEncodingConfig):
        self.config = config
        self.control_names = config.actions
        self.ranges = {name: (0.0, 1.0) for name in config.actions}
        self.frame_dim = len(config.actions) + 1  # + no-op bit
        self.token_channels = 0
        self.pose_channels = 0

    def action_dim(self) -> int:
        return len(self.control_names)

    def frame_vectors(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) control values -> (..., A + 1) multi-hot with a no-op bit."""
        hot = (np.asarray(actions, dtype=np.float32) > 0.5).astype(np.float32)
        noop = (hot.sum(-1, keepdims=True) == 0).astype(np.float32)
        return np.concatenate([hot, noop], -1)

    def yaw_reprojection(self) -> tuple[float, float, float] | None:
        return None  # keys carry no calibrated turn

    def token_maps(self, actions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        return np.zeros((*np.shape(actions)[:-1], 0, *grid), dtype=np.float32)


class CameraEncoding:
    def __init__(self, config: CameraEncodingConfig):
        self.config = config
        self.control_names = ("forward", "strafe", "yaw", "use")
        self.ranges = {"forward": (-1.0, 1.0), "strafe": (-1.0, 1.0), "yaw": (-1.0, 1.0), "use": (0.0, 1.0)}
        self.frame_dim = 4
        self.token_channels = 6  # ray origin (3) + ray direction (3), in the previous frame's camera coordinates
        self.pose_channels = 0
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def action_dim(self) -> int:
        return len(self.control_names)

    def frame_vectors(self, actions: np.ndarray) -> np.ndarray:
        return np.asarray(actions, dtype=np.float32).copy()

    def yaw_reprojection(self) -> tuple[float, float, float] | None:
        """(index of yaw in the frame vector, degrees per unit, horizontal fov): what GeneratorConfig needs."""
        return float(self.control_names.index("yaw")), self.config.yaw_speed, self.config.fov

    def _pixel_rays(self, grid: tuple[int, int]) -> np.ndarray:
        """Unit view rays through the centre of each token, camera coordinates (x right, y up, z forward)."""
        h, w = grid
        half = math.tan(math.radians(self.config.fov) / 2)
        u = ((np.arange(w) + 0.5) / w * 2 - 1) * half
        v = -((np.arange(h) + 0.5) / h * 2 - 1) * half * h / w
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((h, w))), 0)  # (3, h, w)
        return (rays / np.linalg.norm(rays, axis=0, keepdims=True)).astype(np.float64)

    def _raw_maps(self, actions: np.ndarray, rays: np.ndarray) -> np.ndarray:
        c = self.config
        forward, strafe, yaw = actions[..., 0], actions[..., 1], actions[..., 2]
        theta = np.radians(yaw * c.yaw_speed)[..., None, None]  # turning right rotates rays about +y
        cos, sin = np.cos(theta), np.sin(theta)
        x, y, z = rays[0], rays[1], rays[2]
        shape = np.broadcast_shapes(cos.shape, x.shape)
        direction = np.stack([cos * x + sin * z, np.broadcast_to(y, shape), -sin * x + cos * z], -3)
        origin = np.stack([strafe * c.strafe_speed, np.zeros_like(forward), forward * c.forward_speed], -1)
        origin = np.broadcast_to(origin[..., :, None, None], direction.shape)
        return np.concatenate([origin, direction], -3)  # (..., 6, h, w)

    def _grid_stats(self, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if grid not in self._grids:
            rays = self._pixel_rays(grid)
            sample = np.random.default_rng(0).uniform(-1, 1, (NORM_SAMPLES, 3))
            maps = self._raw_maps(sample, rays)
            mean = maps.mean(axis=(0, 2, 3), keepdims=True)[0]  # (6, 1, 1)
            std = np.maximum(maps.std(axis=(0, 2, 3), keepdims=True)[0], 1e-3)
            self._grids[grid] = (rays, mean, std)
        return self._grids[grid]

    def token_maps(self, actions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """(..., 4) actions -> (..., 6, h, w) ray maps scaled to about unit variance over random commands."""
        rays, mean, std = self._grid_stats(grid)
        maps = self._raw_maps(np.asarray(actions, dtype=np.float64), rays)
        return ((maps - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class WorldEncodingConfig:
    """The absolute camera: ray origin and direction maps in map coordinates, from the player's pose (AAPT's camera
    application conditions on camera rays), optionally with the camera scheme's relative motion. The controls and
    speeds are the camera scheme's; a world trained with it needs the learned movement that tracks the pose."""

    type: Literal["world"] = "world"
    forward_speed: float = field(default=10.0, metadata=rng(0.01, 1000.0))
    strafe_speed: float = field(default=8.0, metadata=rng(0.01, 1000.0))
    yaw_speed: float = field(default=4.0, metadata=rng(0.01, 90.0))
    fov: float = field(default=90.0, metadata=rng(10.0, 170.0))
    relative: bool = True  # also the relative-motion ray maps of the camera encoding
    map_scale: float = field(default=1024.0, metadata=rng(1.0, 1e7))  # map units per unit of the origin maps


class WorldEncoding(CameraEncoding):
    def __init__(self, config: WorldEncodingConfig):
        super().__init__(CameraEncodingConfig(forward_speed=config.forward_speed, strafe_speed=config.strafe_speed,
                                              yaw_speed=config.yaw_speed, fov=config.fov))
        self.config = config
        self.relative_channels = 6 if config.relative else 0
        self.pose_channels = 6  # ray origin (3) + ray direction (3), in map coordinates (x, y, up)
        self.token_channels = self.relative_channels + self.pose_channels

    def token_maps(self, actions: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """The relative-motion maps (if on), then zeros where `pose_maps` goes."""
        shape = (*np.shape(actions)[:-1], self.pose_channels, *grid)
        pose = np.zeros(shape, dtype=np.float32)
        return np.concatenate([super().token_maps(actions, grid), pose], -3) if self.relative_channels else pose

    def pose_maps(self, poses: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """(..., 3) poses (x, y, heading in degrees) -> (..., 6, h, w): the camera's position (scaled) and each
        token's view ray in map coordinates."""
        rays = self._pixel_rays(grid)  # (3, h, w): x right, y up, z forward
        poses = np.asarray(poses, dtype=np.float64)
        heading = np.radians(poses[..., 2])[..., None, None]
        cos, sin = np.cos(heading), np.sin(heading)
        x, y, z = rays[0], rays[1], rays[2]  # map: forward = (cos, sin, 0), right = (sin, -cos, 0), up = (0, 0, 1)
        direction = np.stack([z * cos + x * sin, z * sin - x * cos, np.broadcast_to(y, np.broadcast_shapes(
            cos.shape, y.shape))], -3)
        origin = np.stack([poses[..., 0], poses[..., 1], np.zeros_like(poses[..., 0])], -1) / self.config.map_scale
        origin = np.broadcast_to(origin[..., :, None, None], direction.shape)
        return np.concatenate([origin, direction], -3).astype(np.float32)


ENCODINGS = {"keys": (KeysEncodingConfig, KeysEncoding), "camera": (CameraEncodingConfig, CameraEncoding),
             "world": (WorldEncodingConfig, WorldEncoding)}
Encoding = KeysEncoding | CameraEncoding | WorldEncoding
EncodingConfig = KeysEncodingConfig | CameraEncodingConfig | WorldEncodingConfig
