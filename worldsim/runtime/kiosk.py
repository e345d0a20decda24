"""Kiosk behaviour as pure state machines: attract mode when idle, a fresh start for each player, a session
length limit, and a quit combination held for a while.

Nothing here touches pygame, a window or a model: `Kiosk.update` takes the time, the live player's
`ControllerState` and whether anything was pressed this frame, and answers with a `Transition` the game loop acts on
(reset the world, switch who drives it, quit). Tests drive it with a fake clock.

    attract  --player arrives-->  player   (reset: a fresh start for them)
    player   --idle timeout--->   attract  (reset; the attract program drives the world, an overlay invites)
    either   --max session---->   same mode, reset (before the world drifts into mush)
    attract or max session:       the reset goes to the checkpoint's next start frame (`rotate_starts`)
    either   --quit combo held->  quit
    either   --SIGTERM-------->   quit (the supervisor stopping it, systemd, `kill`): a recording is finished
"""

from __future__ import annotations

import enum
import math
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from worldsim.config import rng
from worldsim.input.state import ControllerState

DEFAULT_QUIT_KEYS = ("left ctrl", "left shift", "q")
PLAYER_LOG_NAME = "kiosk-player.log"
SUPERVISOR_LOG_NAME = "kiosk-supervisor.log"
HEARTBEAT_NAME = "kiosk.heartbeat"


@dataclass(frozen=True)
class KioskConfig:
    """The `kiosk:` section of a runtime profile (used by `worldsim play --kiosk` and `worldsim kiosk`)."""

    idle_timeout_s: float = field(default=60.0, metadata=rng(0.0, 86_400.0))  # no input this long -> attract mode
    attract_program: str = "explore"  # scripted program (name or file) that drives the world while idle
    attract_text: str = "press any button to play"
    overlay_font_size: int = field(default=48, metadata=rng(8, 256))
    # The world is reset after this many frames. Drift is evaluated over 1,440 frames (one minute at 24 fps);
    # past that a rollout is unmeasured, so a visitor gets a fresh world before it can turn to mush.
    max_session_frames: int = field(default=1440, metadata=rng(1, 10_000_000))
    # Each automatic reset (attract mode, session limit) starts from the checkpoint's next start frame, so the
    # visitors of a day see every room the world starts in, not one.
    rotate_starts: bool = True
    wake_dead_zone: float = field(default=0.3, metadata=rng(0.0, 1.0))  # stick deflection that counts as a player
    wake_mouse_px: float = field(default=8.0, metadata=rng(0.0, 10_000.0))  # mouse motion per frame (0: ignore)
    quit_keys: tuple[str, ...] = DEFAULT_QUIT_KEYS  # held together for quit_hold_s: the only way out
    quit_hold_s: float = field(default=2.0, metadata=rng(0.0, 60.0))
    heartbeat_s: float = field(default=1.0, metadata=rng(0.05, 60.0))  # how often the loop tells the supervisor
    log_dir: str = "logs"  # player and supervisor logs and the heartbeat file
    log_max_bytes: int = field(default=1_000_000, metadata=rng(10_000, 1_000_000_000))  # per log file
    log_backups: int = field(default=3, metadata=rng(1, 100))  # rotated files kept: disk use is bounded

    def __post_init__(self) -> None:
        if not self.quit_keys:
            raise ValueError("'quit_keys' is empty: a kiosk needs a key combination to quit")


class Transition(enum.Enum):
    """What the game loop must do this frame."""

    NONE = "none"
    ATTRACT = "attract"  # nobody played for idle_timeout_s: reset, the attract program takes over
    PLAYER = "player"  # someone arrived: reset to a fresh start for them
    SESSION_LIMIT = "session limit"  # the rollout is max_session_frames long: reset before drift shows
    QUIT = "quit"  # the quit combination was held long enough


def player_is_active(state: ControllerState, dead_zone: float, mouse_px: float) -> bool:
    """Whether the live controls show a person: any key, mouse or pad button, a stick past the dead zone, or
    mouse motion past `mouse_px` (0 disables it: a mouse bumped by the wind should not wake the kiosk)."""
    if state.keys or state.buttons or state.mouse_buttons:
        return True
    if any(abs(value) > dead_zone for value in state.axes.values()):
        return True
    return mouse_px > 0 and math.hypot(state.mouse_dx, state.mouse_dy) > mouse_px


class IdleWatch:
    """Attract mode vs a player: starts in attract mode (a kiosk starts with nobody in front of it)."""

    def __init__(self, idle_timeout_s: float, now_s: float):
        self.idle_timeout_s = idle_timeout_s
        self.attracting = True
        self.last_activity_s = now_s

    def update(self, now_s: float, active: bool) -> Transition:
        if active:
            self.last_activity_s = now_s
            if self.attracting:
                self.attracting = False
                return Transition.PLAYER
            return Transition.NONE
        if not self.attracting and now_s - self.last_activity_s >= self.idle_timeout_s:
            self.attracting = True
            return Transition.ATTRACT
        return Transition.NONE


class QuitCombo:
    """True once every key of the combination has been held down together for `hold_s` seconds."""

    def __init__(self, keys: tuple[str, ...], hold_s: float):
        self.keys = frozenset(keys)
        self.hold_s = hold_s
        self.held_since_s: float | None = None

    def update(self, now_s: float, held: frozenset[str]) -> bool:
        if not self.keys <= held:
            self.held_since_s = None
            return False
        if self.held_since_s is None:
            self.held_since_s = now_s
        return now_s - self.held_since_s >= self.hold_s

    @property
    def holding(self) -> bool:
        return self.held_since_s is not None


class StopSignal:
    """SIGTERM as a request to quit cleanly. Without it SDL turns SIGTERM into a window-close request, which a
    kiosk ignores (a visitor's alt+F4): every stop ended in SIGKILL and lost the recording in progress.
    Python runs the handler in the main thread between two bytecodes; the loop polls `received` once a frame."""

    def __init__(self) -> None:
        self.received = False
        self._installed = False
        self._previous: Any = None

    def install(self) -> None:
        """Before the window opens (SDL then keeps the handler it finds); from the main thread, where Python
        delivers signals (elsewhere, e.g. a test's worker thread, this does nothing)."""
        if threading.current_thread() is threading.main_thread() and not self._installed:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True

    def uninstall(self) -> None:
        if self._installed:
            # None: the previous handler was not Python's (SDL's); the default is what SDL would restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
            self._installed = False


class Kiosk:
    """Idle watch + session limit + quit combination, combined into one decision per frame."""

    def __init__(self, config: KioskConfig, now_s: float):
        self.config = config
        self.idle = IdleWatch(config.idle_timeout_s, now_s)
        self.quit = QuitCombo(config.quit_keys, config.quit_hold_s)

    @property
    def attracting(self) -> bool:
        return self.idle.attracting

    def start_after(self, transition: Transition, start: int, count: int) -> int:
        """The start frame (of `count`) the reset a transition asks for goes to: the next one at attract mode and
        the session limit when the kiosk rotates them, the same one for an arriving player (who starts where the
        invitation showed) and when nothing happens."""
        if self.config.rotate_starts and transition in (Transition.ATTRACT, Transition.SESSION_LIMIT):
            return (start + 1) % count
        return start

    def update(self, now_s: float, player: ControllerState, pressed: bool, frames_since_reset: int) -> Transition:
        """`player` is the live input (never the attract program's); `pressed` whether a key, a button or a
        system key went down this frame (a tap shorter than a frame leaves nothing held in `player`);
        `frames_since_reset` the world's frames since its last reset."""
        config = self.config
        if self.quit.update(now_s, player.keys):
            return Transition.QUIT
        active = pressed or player_is_active(player, config.wake_dead_zone, config.wake_mouse_px)
        transition = self.idle.update(now_s, active)
        if transition is not Transition.NONE:
            return transition
        if frames_since_reset >= config.max_session_frames:
            return Transition.SESSION_LIMIT
        return Transition.NONE
