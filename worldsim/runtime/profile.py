"""Runtime profiles: how the game presents itself (window, frame rate, HUD, system keys), from YAML.

A profile (assets/profiles/desktop.yaml, kiosk.yaml, ...) never touches the world's controls: those belong to
the scheme. The system keys it binds (pause, reset, quit...) must therefore stay off the scheme's keys and pad
buttons, and `check_bindings` refuses a profile that would steal one, saying which key and what each side uses
it for.

Sections owned by other modules fill their own frozen dataclasses: `kiosk` (runtime/kiosk.py: attract mode,
session limit, quit combination, logs), `supervisor` (runtime/supervisor.py: heartbeat timeouts, back-off),
`recovery` (runtime/recovery.py: snapshots for NaN recovery) and `pacing` (runtime/pacing.py: adaptive fps).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from worldsim.conditioning.scheme import Scheme
from worldsim.config import ASSETS_DIR, ConfigError, from_dict, load, rng
from worldsim.input.sources import Command
from worldsim.input.state import GAMEPAD_BUTTONS, KEY_NAMES
from worldsim.runtime.kiosk import KioskConfig
from worldsim.runtime.pacing import PacingConfig
from worldsim.runtime.recovery import RecoveryConfig
from worldsim.runtime.supervisor import SupervisorConfig

PROFILES_DIR = ASSETS_DIR / "profiles"
DEFAULT_PROFILE = "desktop"


@dataclass(frozen=True)
class KeyBindings:
    """System commands -> keyboard key names (as `pygame.key.name` gives them)."""

    quit: tuple[str, ...] = ("escape",)
    pause: tuple[str, ...] = ("p",)
    step: tuple[str, ...] = ("n",)  # one frame while paused
    reset: tuple[str, ...] = ("r", "backspace")
    next_start: tuple[str, ...] = ("tab", "page down")  # another of the checkpoint's start frames
    record: tuple[str, ...] = ("f5",)
    help: tuple[str, ...] = ("f1",)
    hud: tuple[str, ...] = ("h",)
    minimap: tuple[str, ...] = ("m",)
    dev_hud: tuple[str, ...] = ("f3",)
    fullscreen: tuple[str, ...] = ("f11",)


@dataclass(frozen=True)
class ButtonBindings:
    """System commands -> gamepad buttons, so a pad-only player can pause and reset too."""

    quit: tuple[str, ...] = ()
    pause: tuple[str, ...] = ("start",)
    step: tuple[str, ...] = ()
    reset: tuple[str, ...] = ("back",)
    next_start: tuple[str, ...] = ()
    record: tuple[str, ...] = ()
    help: tuple[str, ...] = ()
    hud: tuple[str, ...] = ()
    minimap: tuple[str, ...] = ()
    dev_hud: tuple[str, ...] = ()
    fullscreen: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str = "desktop"
    # window size = world frame size x this; None: the largest whole multiple that fits most of the screen
    window_scale: int | None = field(default=None, metadata=rng(1, 64))
    fullscreen: bool = False
    smooth_scaling: bool = True  # bilinear upscaling; false = nearest neighbour (crisp pixels)
    target_fps: float | None = field(default=None, metadata=rng(1.0, 1000.0))  # None: the checkpoint's rate
    hud: bool = True  # the player's HUD (fps, what is pressed) shown at start; toggled with the hud keys
    minimap: bool = True  # the minimap shown at start (worlds with a learned movement); toggled with its keys
    help_on_start: bool = True  # the keys overlay at start, until any key is pressed or help_s have passed
    help_s: float = field(default=8.0, metadata=rng(0.5, 600.0))
    hud_font_size: int = field(default=16, metadata=rng(6, 96))
    hud_refresh_s: float = field(default=0.25, metadata=rng(0.02, 10.0))  # slow enough to read the numbers
    notice_s: float = field(default=3.0, metadata=rng(0.1, 60.0))  # how long "gamepad connected" stays up
    capture_mouse: bool = False  # grab and hide the pointer (mouse-look); escape still quits
    hide_cursor: bool = False  # hide the pointer over the window without grabbing it (kiosks)
    record_dir: str = "recordings"  # where the record key writes when no --record path was given
    record_scale: int = field(default=1, metadata=rng(1, 16))  # MP4 = world frames x this (nearest neighbour)
    record_crf: int = field(default=18, metadata=rng(0, 51))  # x264 quality: lower is better and larger
    keys: KeyBindings = field(default_factory=KeyBindings)
    buttons: ButtonBindings = field(default_factory=ButtonBindings)
    kiosk: KioskConfig = field(default_factory=KioskConfig)  # used by --kiosk and `worldsim kiosk`
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    pacing: PacingConfig = field(default_factory=PacingConfig)


def shipped_profiles() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROFILES_DIR.glob("*.yaml"))}


def profile_path(name_or_path: str | Path = DEFAULT_PROFILE) -> Path:
    """The file of a shipped profile name (`desktop`, `kiosk`) or of a path to a profile YAML."""
    registry = shipped_profiles()
    path = registry.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():  # a folder, FIFO or device is refused by the loader, naming what it is
        raise ConfigError(path, "", "no such profile file or shipped profile name", str(name_or_path),
                          ", ".join(registry) + ", or a path to a .yaml file")
    return path


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> Profile:
    """A profile by name or path; key and button names are validated at load time."""
    path = profile_path(name_or_path)
    profile = load(Profile, path)
    _check_names(profile, path)
    return profile


def profile_from_data(data: Any, file: str | Path | None = None) -> Profile:
    """A profile from already-parsed YAML data, validated like a file (tests, tools)."""
    profile = from_dict(Profile, data, file=file)
    _check_names(profile, file)
    return profile


def _check_names(profile: Profile, file: object) -> None:
    for section, allowed in (("keys", KEY_NAMES), ("buttons", frozenset(GAMEPAD_BUTTONS))):
        seen: dict[str, str] = {}
        for command, names in _table(getattr(profile, section)).items():
            for name in names:
                if name not in allowed:
                    raise ConfigError(file, f"{section}.{command}", "unknown name", name,
                                      ", ".join(sorted(allowed)))
                if name in seen and seen[name] != command:
                    raise ConfigError(file, f"{section}.{command}",
                                      f"'{name}' is already bound to {seen[name]}",
                                      allowed="each key or button bound to one command")
                seen[name] = command
    system_keys = {name for names in _table(profile.keys).values() for name in names}
    for name in profile.kiosk.quit_keys:
        if name not in KEY_NAMES:
            raise ConfigError(file, "kiosk.quit_keys", "unknown name", name, ", ".join(sorted(KEY_NAMES)))
        if name in system_keys:
            # a system key never reaches the controller state the combination is read from
            raise ConfigError(file, "kiosk.quit_keys", f"'{name}' is also a system key of this profile", name,
                              "keys not bound under 'keys'")


def _table(bindings: KeyBindings | ButtonBindings) -> dict[str, tuple[str, ...]]:
    return {f.name: getattr(bindings, f.name) for f in fields(bindings)}


def check_bindings(profile: Profile, scheme: Scheme, file: object = None) -> None:
    """Refuse a profile whose system keys or buttons the scheme also uses for controlling the world."""
    controls = scheme.controls.config
    for section, used in (("keys", controls.keys), ("buttons", controls.buttons)):
        for command, names in _table(getattr(profile, section)).items():
            for name in names:
                if name in used:
                    targets = ", ".join(used[name])
                    raise ConfigError(file or f"profile '{profile.name}'", f"{section}.{command}",
                                      f"'{name}' is a system key here ({command}) but scheme '{scheme.name}' "
                                      f"uses it for {targets}; bind {command} to another {section[:-1]} "
                                      "or remap the scheme")


def command_table(profile: Profile) -> tuple[dict[str, Command], dict[str, Command]]:
    """(key name -> command, pad button name -> command): the loop's per-event lookups."""
    keys = {name: Command(command) for command, names in _table(profile.keys).items() for name in names}
    buttons = {name: Command(command) for command, names in _table(profile.buttons).items() for name in names}
    return keys, buttons
