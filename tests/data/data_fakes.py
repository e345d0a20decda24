"""Fakes for the data tests: a pure-Python engine (no ViZDoom needed), a scripted policy, a dead writer's pid."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np

from worldsim.conditioning import Scheme
from worldsim.data.env import StepInfo


class FakeEnv:
    """A tiny deterministic engine for the camera scheme. The pose integrates the actions exactly (forward
    along the heading, yaw + turns right = angle down) and every frame paints the step number and the angle
    into its pixels, so tests can tell which frame came from which action."""

    def __init__(self, scheme: Scheme, resolution: tuple[int, int] = (16, 12), done_after: int | None = None):
        self.scheme = scheme
        self._resolution = resolution
        self.done_after = done_after
        self.closed = False

    resolution = property(lambda self: self._resolution)
    frame_skip = property(lambda self: 2)
    fps = property(lambda self: 17.5)

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        self.t = 0
        rng = np.random.default_rng(seed)
        self.pose = np.array([rng.integers(-100, 100), rng.integers(-100, 100), 90.0], dtype=np.float32)
        return self._frame(), self.pose.copy()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, StepInfo]:
        c = self.scheme.encoding_config
        forward, strafe, yaw, use = np.clip(np.asarray(action, dtype=np.float32), [-1, -1, -1, 0], 1)
        applied = np.array([forward, strafe, yaw, float(use > 0.5)], dtype=np.float32)
        self.t += 1
        if self.done_after is not None and self.t > self.done_after:
            return self._frame(), self.pose.copy(), StepInfo(True, applied)
        heading = np.radians(self.pose[2])
        ahead, right = forward * c.forward_speed, strafe * c.strafe_speed
        self.pose[0] += ahead * np.cos(heading) + right * np.sin(heading)
        self.pose[1] += ahead * np.sin(heading) - right * np.cos(heading)
        self.pose[2] = (self.pose[2] - yaw * c.yaw_speed) % 360
        return self._frame(), self.pose.copy(), StepInfo(False, applied)

    def _frame(self) -> np.ndarray:
        width, height = self._resolution
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[..., 0] = self.t % 256
        frame[..., 1] = int(self.pose[2]) % 256
        frame[..., 2] = np.arange(width, dtype=np.uint8)[None, :] * 7
        return frame

    def metadata(self) -> dict[str, Any]:
        return {"engine": "fake", "engine_version": "0", "map": "none", "resolution": list(self._resolution),
                "frame_skip": 2}

    def close(self) -> None:
        self.closed = True


class ScriptedPolicy:
    """Plays a fixed list of actions (then no-ops)."""

    name = "scripted"

    def __init__(self, actions: list[list[float]]):
        self.actions = [np.asarray(a, dtype=np.float32) for a in actions]

    def reset(self, seed: int) -> None:
        self.t = 0

    def act(self, frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
        action = self.actions[self.t] if self.t < len(self.actions) else np.zeros_like(self.actions[0])
        self.t += 1
        return action

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name}


def dead_pid() -> int:
    """The pid of a process that has exited (a killed writer's, for leftover files)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(child.stdout)
