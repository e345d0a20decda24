"""ControllerState: what the physical controls are doing this frame, as pure data (no pygame objects).

Every input source (keyboard/mouse/gamepad events, a scripted program, a replayed log) produces this same
value, and the conditioning scheme turns it into the model's condition. Names are pygame-ce's: key names as
`pygame.key.name` gives them, gamepad axes and buttons as in SDL's game-controller API.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KEY_NAMES: frozenset[str] = frozenset(
    list(string.ascii_lowercase)
    + list(string.digits)
    + [f"f{i}" for i in range(1, 13)]
    + ["up", "down", "left", "right", "space", "return", "escape", "tab", "backspace", "left shift",
       "right shift", "left ctrl", "right ctrl", "left alt", "right alt", "page up", "page down", "home",
       "end", "insert", "delete", "-", "=", "[", "]", ";", "'", ",", ".", "/", "\\", "`"]
)
MOUSE_AXES: frozenset[str] = frozenset({"x", "y"})
MOUSE_BUTTONS: frozenset[str] = frozenset({"left", "middle", "right"})
GAMEPAD_AXES: tuple[str, ...] = ("left_x", "left_y", "right_x", "right_y", "trigger_left", "trigger_right")
GAMEPAD_BUTTONS: tuple[str, ...] = (
    "a", "b", "x", "y", "back", "guide", "start", "left_stick", "right_stick", "left_shoulder",
    "right_shoulder", "dpad_up", "dpad_down", "dpad_left", "dpad_right",
)

_EMPTY_AXES: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class ControllerState:
    keys: frozenset[str] = frozenset()  # keyboard keys held down, by pygame key name
    mouse_dx: float = 0.0  # pixels the mouse moved since the previous frame
    mouse_dy: float = 0.0
    mouse_buttons: frozenset[str] = frozenset()
    # gamepad axes in [-1, 1] (triggers in [0, 1])
    axes: Mapping[str, float] = field(default_factory=lambda: _EMPTY_AXES)
    buttons: frozenset[str] = frozenset()  # gamepad buttons held down
    gamepad_connected: bool = False

    def to_json(self) -> dict:
        return {
            "keys": sorted(self.keys),
            "mouse": [self.mouse_dx, self.mouse_dy],
            "mouse_buttons": sorted(self.mouse_buttons),
            "axes": dict(sorted(self.axes.items())),
            "buttons": sorted(self.buttons),
            "gamepad": self.gamepad_connected,
        }

    @staticmethod
    def from_json(data: dict) -> ControllerState:
        """Inverse of `to_json`; raises ValueError on anything malformed (callers add file and line)."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        allowed = {"keys", "mouse", "mouse_buttons", "axes", "buttons", "gamepad"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}")
        mouse = data.get("mouse", [0.0, 0.0])
        if not (isinstance(mouse, list) and len(mouse) == 2 and all(_is_number(v) for v in mouse)):
            raise ValueError(f"'mouse' must be [dx, dy] numbers, got {mouse!r}")
        axes = data.get("axes", {})
        if not isinstance(axes, dict) or not all(k in GAMEPAD_AXES and _is_number(v)
                                                 for k, v in axes.items()):
            raise ValueError(f"'axes' must map {', '.join(GAMEPAD_AXES)} to numbers, got {axes!r}")
        return ControllerState(
            keys=_names(data.get("keys", []), KEY_NAMES, "keys"),
            mouse_dx=float(mouse[0]),
            mouse_dy=float(mouse[1]),
            mouse_buttons=_names(data.get("mouse_buttons", []), MOUSE_BUTTONS, "mouse_buttons"),
            axes=MappingProxyType({k: max(-1.0, min(1.0, float(v))) for k, v in axes.items()}),
            buttons=_names(data.get("buttons", []), frozenset(GAMEPAD_BUTTONS), "buttons"),
            gamepad_connected=bool(data.get("gamepad", False)),
        )


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e9


def _names(values: object, allowed: frozenset[str], what: str) -> frozenset[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v in allowed for v in values):
        raise ValueError(f"'{what}' must be a list of known names, got {values!r}")
    return frozenset(values)
