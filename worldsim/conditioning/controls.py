"""Controls: how physical inputs become named control values. Pure tables, filled from the scheme's YAML.

Every binding adds a value to a named control of the scheme's encoding; the sum is clamped to the control's range.
Keys and buttons add a fixed amount while held. Mouse motion and gamepad axes pass through a scale, a dead-zone and a
response curve. An axis name may carry a `+` or `-` suffix to bind only that half of the stick (as a magnitude in
[0, 1]), which is how a stick drives discrete intents such as `forward` / `back`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from worldsim.config import ConfigError, rng
from worldsim.input.state import GAMEPAD_AXES, GAMEPAD_BUTTONS, KEY_NAMES, MOUSE_AXES, MOUSE_BUTTONS, ControllerState

Curve = Literal["linear", "quadratic", "cubic"]
_CURVE_POWER = {"linear": 1.0, "quadratic": 2.0, "cubic": 3.0}


@dataclass(frozen=True)
class AnalogBinding:
    control: str
    scale: float = field(default=1.0, metadata=rng(-1000.0, 1000.0))  # negative inverts (stick up is -1 in SDL)
    dead_zone: float = field(default=0.0, metadata=rng(0.0, 0.95))
    curve: Curve = "linear"


@dataclass(frozen=True)
class ControlsConfig:
    keys: dict[str, dict[str, float]] = field(default_factory=dict)  # key name -> {control: value while held}
    mouse_buttons: dict[str, dict[str, float]] = field(default_factory=dict)
    buttons: dict[str, dict[str, float]] = field(default_factory=dict)  # gamepad buttons
    mouse: dict[str, AnalogBinding] = field(default_factory=dict)  # "x" / "y" -> binding (scale per pixel)
    axes: dict[str, AnalogBinding] = field(default_factory=dict)  # gamepad axis ("left_y", "left_y-") -> binding
    forbidden: list[list[str]] = field(default_factory=list)  # controls that cancel out when all are active


def _shape(value: float, dead_zone: float, power: float) -> float:
    """Dead-zone then response curve, sign-preserving; output in [-1, 1] for input in [-1, 1]."""
    magnitude = abs(value)
    if magnitude <= dead_zone:
        return 0.0
    magnitude = min(1.0, (magnitude - dead_zone) / (1.0 - dead_zone))
    return float(np.copysign(magnitude**power, value))


class Controls:
    """Resolves a ControllerState into one value per named control of the encoding."""

    def __init__(self, config: ControlsConfig, control_names: tuple[str, ...], ranges: dict[str, tuple[float, float]],
                 file: object = None, path: str = "controls"):
        self.config = config
        self.names = control_names
        self.index = {name: i for i, name in enumerate(control_names)}
        self.low = np.array([ranges[n][0] for n in control_names], dtype=np.float32)
        self.high = np.array([ranges[n][1] for n in control_names], dtype=np.float32)
        self._validate(file, path)
        # Tables resolved once so `resolve` is a few dictionary lookups per frame.
        self._digital = {
            src: [(name, [(self.index[c], v) for c, v in table.items()])
                  for name, table in getattr(config, src).items()]
            for src in ("keys", "mouse_buttons", "buttons")
        }
        self._mouse = [(axis, self.index[b.control], b.scale, b.dead_zone, _CURVE_POWER[b.curve])
                       for axis, b in config.mouse.items()]
        self._axes = [(axis.rstrip("+-"), axis[-1] if axis[-1] in "+-" else "", self.index[b.control], b.scale,
                       b.dead_zone, _CURVE_POWER[b.curve]) for axis, b in config.axes.items()]
        self._forbidden = [[self.index[c] for c in group] for group in config.forbidden]

    def _validate(self, file: object, path: str) -> None:
        allowed_controls = ", ".join(self.names)
        tables = {"keys": KEY_NAMES, "mouse_buttons": MOUSE_BUTTONS, "buttons": frozenset(GAMEPAD_BUTTONS)}
        for src, names in tables.items():
            for name, table in getattr(self.config, src).items():
                if name not in names:
                    raise ConfigError(file, f"{path}.{src}.{name}", "unknown input name", name,
                                      _allowed(names))
                for control in table:
                    if control not in self.index:
                        raise ConfigError(file, f"{path}.{src}.{name}.{control}", "unknown control", control,
                                          allowed_controls)
        axis_names = {a + s for a in GAMEPAD_AXES for s in ("", "+", "-")}
        for src, names in (("mouse", MOUSE_AXES), ("axes", axis_names)):
            for name, binding in getattr(self.config, src).items():
                if name not in names:
                    raise ConfigError(file, f"{path}.{src}.{name}", "unknown axis", name, _allowed(names))
                if binding.control not in self.index:
                    raise ConfigError(file, f"{path}.{src}.{name}.control", "unknown control", binding.control,
                                      allowed_controls)
        for i, group in enumerate(self.config.forbidden):
            for control in group:
                if control not in self.index:
                    raise ConfigError(file, f"{path}.forbidden[{i}]", "unknown control", control, allowed_controls)

    def resolve(self, state: ControllerState) -> np.ndarray:
        """Named control values for this frame, shape (len(names),), clamped to each control's range."""
        values = np.zeros(len(self.names), dtype=np.float32)
        for src, held in (("keys", state.keys), ("mouse_buttons", state.mouse_buttons), ("buttons", state.buttons)):
            for name, targets in self._digital[src]:
                if name in held:
                    for i, v in targets:
                        values[i] += v
        mouse = {"x": state.mouse_dx, "y": state.mouse_dy}
        for axis, i, scale, dead_zone, power in self._mouse:
            values[i] += _shape(max(-1.0, min(1.0, mouse[axis] * scale)), dead_zone, power)
        if state.gamepad_connected:
            for axis, half, i, scale, dead_zone, power in self._axes:
                raw = state.axes.get(axis, 0.0)
                if half == "+":
                    raw = max(raw, 0.0)
                elif half == "-":
                    raw = max(-raw, 0.0)
                values[i] += scale * _shape(raw, dead_zone, power)
        for group in self._forbidden:
            if all(values[i] != 0.0 for i in group):
                values[group] = 0.0
        return np.clip(values, self.low, self.high)


def _allowed(names: frozenset[str] | set[str]) -> str:
    names = sorted(names)
    return ", ".join(names) if len(names) <= 40 else ", ".join(names[:40]) + f", ... ({len(names)} names)"
