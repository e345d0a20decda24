"""What the player is told about the keys: the help overlay, the epilog of `worldsim play --help` and the README
read the same tables, built from the profile's bindings and the scheme's controls (controls are data).

    controls_help(scheme)   the keys and mouse buttons that drive the world: ("W / Up", "forward"), ...
    system_help(profile)    the game's own keys and pad buttons: ("Esc", "quit"), ("P / pad Start", "pause"), ...
"""

from __future__ import annotations

from dataclasses import fields

from worldsim.conditioning.scheme import Scheme
from worldsim.runtime.profile import Profile

# What each system command does, in the words of the overlay (keys: the profile's field names).
COMMAND_TEXT = {
    "quit": "quit",
    "pause": "pause / resume",
    "step": "one frame while paused",
    "reset": "start again from the start point",
    "next_start": "next start point (another room)",
    "record": "record MP4 + action log / stop",
    "help": "show these keys",
    "hud": "HUD: fps and what you press",
    "minimap": "minimap: where you are and have been",
    "dev_hud": "developer HUD: stage times, latency",
    "fullscreen": "full screen",
}
# Bipolar controls (range -1..1) read better as two directions than as a signed name: (negative, positive, either).
DIRECTIONS = {
    "forward": ("back", "forward", "move"),
    "strafe": ("strafe left", "strafe right", "strafe"),
    "yaw": ("turn left", "turn right", "turn"),
}
KEY_LABELS = {"escape": "Esc", "page down": "PgDn", "page up": "PgUp", "backspace": "Backspace",
              "return": "Enter", "space": "Space", "tab": "Tab"}
PAD_LABELS = {"start": "Start", "back": "Back", "guide": "Guide"}


def key_label(name: str) -> str:
    """A pygame key name as printed on the key: "w" -> "W", "escape" -> "Esc", "f1" -> "F1"."""
    if name in KEY_LABELS:
        return KEY_LABELS[name]
    if len(name) == 1 or (name[0] == "f" and name[1:].isdigit()):
        return name.upper()
    return name.title()


def _direction(scheme: Scheme, control: str, value: float) -> str:
    index = scheme.control_names.index(control)
    negative, positive, _ = DIRECTIONS.get(control, (f"{control} -", f"{control} +", control))
    if scheme.controls.low[index] < 0:
        return positive if value > 0 else negative
    return control.replace("_", " ")


def controls_help(scheme: Scheme) -> list[tuple[str, str]]:
    """(keys, what they do) for the scheme's keyboard keys, mouse buttons and mouse axes, grouped by effect."""
    config = scheme.controls.config
    groups: dict[str, list[str]] = {}
    for names, label in ((config.keys, key_label), (config.mouse_buttons, lambda b: f"{b} mouse")):
        for name, targets in names.items():
            effect = ", ".join(_direction(scheme, control, value) for control, value in targets.items() if value)
            groups.setdefault(effect, []).append(label(name))
    lines = [(" / ".join(keys), effect) for effect, keys in groups.items() if effect]
    for axis, binding in config.mouse.items():
        word = DIRECTIONS.get(binding.control, (None, None, binding.control.replace("_", " ")))[2]
        lines.append((f"mouse {'left/right' if axis == 'x' else 'up/down'}", word))
    return lines


def system_help(profile: Profile) -> list[tuple[str, str]]:
    """(keys and pad buttons, what they do) for every system command the profile binds, in its order."""
    lines = []
    for f in fields(profile.keys):
        keys = [key_label(name) for name in getattr(profile.keys, f.name)]
        buttons = [f"pad {PAD_LABELS.get(name, name.upper())}" for name in getattr(profile.buttons, f.name)]
        if keys or buttons:
            lines.append((" / ".join(keys + buttons), COMMAND_TEXT[f.name]))
    return lines


def help_text(profile: Profile, scheme: Scheme, width: int = 30) -> str:
    """Both tables as plain text (the epilog of `worldsim play --help`)."""
    def table(lines: list[tuple[str, str]]) -> str:
        return "\n".join(f"  {keys:<{width}} {effect}" for keys, effect in lines)

    return (f"world controls (scheme '{scheme.name}'; a gamepad's sticks and buttons work too):\n"
            f"{table(controls_help(scheme))}\n\ngame keys (profile '{profile.name}'):\n{table(system_help(profile))}")
