"""The game loop: events -> step -> draw -> flip -> tick, one generated frame per iteration.

    1. events   pygame events become system commands (profile bindings) or go to the input source, which
                returns this frame's ControllerState
    2. step     scheme.encode(state) -> session.step(condition) -> the next world frame (skipped while paused)
    3. draw     the frame scaled into the window; the player's HUD (or the developer's) and the keys overlay
                over it
    4. flip     the player sees it: input-to-photon latency ends here
    5. tick     record the frame, then wait for the target frame rate (none when headless and unthrottled)

Interactive play, headless recording and tests run this same loop; headless is the SDL dummy video driver.
Tests drive it one iteration at a time with `frame()` after posting synthetic events.

Reliability lives beside the stages, not inside them: every step is checked by a `FaultGuard` (a NaN/inf frame is
never shown; the world rewinds to its last good snapshot), a `FramePacer` lowers the aim when the generator falls
behind, display changes re-create the window's surfaces, and a kiosk (`kiosk=`) adds attract mode, session
limits, the quit combination, a clean quit on SIGTERM and a heartbeat for its supervisor.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np
import pygame

from worldsim.errors import WorldsimError
from worldsim.input.events import CONTROLLER_BUTTONS, KEY_CODES
from worldsim.input.program import ScriptedInput, load_program
from worldsim.input.replay import ActionLogHeader
from worldsim.input.sources import Command, InputSource
from worldsim.input.state import ControllerState
from worldsim.runtime.degeneration_watch import DegenerationWatch
from worldsim.runtime.display import (
    HUD_MARGIN,
    HudAssets,
    HudView,
    Window,
    draw_help,
    draw_hud,
    draw_notice,
    draw_overlay,
    draw_status,
    draw_world,
)
from worldsim.runtime.heartbeat import Heartbeat
from worldsim.runtime.help import controls_help, key_label, system_help
from worldsim.runtime.kiosk import Kiosk, KioskConfig, StopSignal, Transition
from worldsim.runtime.minimap import Minimap
from worldsim.runtime.pacing import FramePacer
from worldsim.runtime.profile import Profile, command_table
from worldsim.runtime.recorder import Recording, RunHistory, frame_hash, free_recording_path
from worldsim.runtime.recovery import FaultGuard, Verdict
from worldsim.runtime.session import WorldSession
from worldsim.runtime.timing import DEFAULT_CAPACITY, FrameTimes

log = logging.getLogger(__name__)

PAUSED_FPS = 30.0  # redraw rate while paused (or headless and paused): enough for the HUD, idle otherwise
HUD_WINDOW_FRAMES = 60  # frames the HUD's numbers are averaged over
HUD_SLOWDOWN = 4  # while the pacer is behind, HUD text is rebuilt this many times less often
MAX_TIMES_CAPACITY = 10 * DEFAULT_CAPACITY  # frame-time rows kept at most (about 20 MB)
NOTICES_KEPT = 200  # notices remembered for the report; a kiosk running for weeks must not grow a list
DISPLAY_RETRY_S = 1.0  # while no display works, try to re-create it this often (the world keeps running)
LAYOUT_EVENTS = frozenset({pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED})
# The display itself changed (another monitor, another resolution, a GPU reset): surfaces must be re-created.
DISPLAY_EVENTS = frozenset({pygame.WINDOWDISPLAYCHANGED, pygame.RENDER_DEVICE_RESET, pygame.RENDER_TARGETS_RESET})
# Anything going down wakes a kiosk, even a tap released within the same frame (it leaves nothing held).
PRESS_EVENTS = frozenset({pygame.KEYDOWN, pygame.MOUSEBUTTONDOWN, pygame.CONTROLLERBUTTONDOWN,
                          pygame.JOYBUTTONDOWN})
STICK_SHOWN = 0.3  # a stick deflected past this shows in the player's HUD as pressed
AXIS_NAMES = {"left_x": "left stick", "left_y": "left stick", "right_x": "right stick", "right_y": "right stick",
              "trigger_left": "left trigger", "trigger_right": "right trigger"}


@dataclasses.dataclass
class ReplayCheck:
    """How a replay's frames compared with the hashes its log recorded."""

    checked: int = 0
    mismatches: int = 0
    first_mismatch: int | None = None  # index of the first generated frame (1-based) that differed

    @property
    def exact(self) -> bool:
        return self.checked > 0 and self.mismatches == 0

    def summary(self) -> dict:
        return {"frames_checked": self.checked, "mismatches": self.mismatches,
                "first_mismatch": self.first_mismatch, "bit_exact": self.exact}


def pressed_names(state: ControllerState) -> str:
    """What the player is pressing, as the player's HUD shows it: "W D Left", "pad A left stick", "mouse"."""
    names = [key_label(key) for key in sorted(state.keys)]
    names += [f"{button} mouse" for button in sorted(state.mouse_buttons)]
    names += [f"pad {button.upper() if len(button) == 1 else button}" for button in sorted(state.buttons)]
    sticks = [AXIS_NAMES.get(axis, axis) for axis, value in sorted(state.axes.items()) if abs(value) > STICK_SHOWN]
    names += dict.fromkeys(sticks)  # a stick pushed diagonally is named once
    if state.mouse_dx or state.mouse_dy:
        names.append("mouse")
    return " ".join(names)


class GameLoop:
    def __init__(self, session: WorldSession, source: InputSource, profile: Profile,
                 log_header: ActionLogHeader, *, fps: float | None, max_frames: int | None = None,
                 record_path: Path | None = None, overwrite: bool = False, video_fps: float = 24.0,
                 title: str = "worldsim", kiosk: KioskConfig | None = None, heartbeat: Heartbeat | None = None):
        self.session = session
        self.scheme = session.scheme
        self.grid = session.grid
        self.source = source
        self.profile = profile
        self.log_header = log_header
        self.fps = fps or 0.0  # 0: as fast as possible
        self.max_frames = max_frames
        self.next_record_path = record_path
        self.overwrite = overwrite
        self.video_fps = video_fps
        # Per-event lookups by pygame code: a key or pad button is a system command or drives the world.
        keys, buttons = command_table(profile)
        key_code = {name: code for code, name in KEY_CODES.items()}
        button_code = {name: code for code, name in CONTROLLER_BUTTONS.items()}
        self.key_commands = {key_code[name]: command for name, command in keys.items()}
        self.button_commands = {button_code[name]: command for name, command in buttons.items()}

        # Kiosk: read the attract program before the window opens, so a bad one is an error, not a black screen.
        self.kiosk = Kiosk(kiosk, time.perf_counter()) if kiosk is not None else None
        if kiosk is not None:
            # it must never end (and so never quit the kiosk): it loops whatever its file says
            self.attract_program = dataclasses.replace(load_program(kiosk.attract_program), loop=True)
            self.attract_source = ScriptedInput(self.attract_program)
        self.heartbeat = heartbeat
        self.guard = FaultGuard(session, profile.recovery)
        self.pacer = FramePacer(self.fps, profile.pacing)

        self.stop_signal = StopSignal()
        if kiosk is not None:
            self.stop_signal.install()  # before SDL starts: it would make SIGTERM a close request the kiosk ignores
        try:
            self.window = Window(session.image_size, profile.window_scale, profile.fullscreen, title,
                                 profile.capture_mouse, profile.hide_cursor)
        except BaseException:
            self.stop_signal.uninstall()
            raise
        self.hud_assets = HudAssets(profile.hud_font_size)
        self.overlay_assets = HudAssets(kiosk.overlay_font_size) if kiosk is not None else None
        controls = self.scheme.controls
        self.hud = HudView(controls=self.scheme.control_names, low=controls.low, high=controls.high,
                           values=np.zeros(len(controls.names), np.float32))
        self.show_hud = profile.hud  # the player's HUD
        self.show_dev_hud = False
        # the minimap, in a world that tracks the player's pose (top right, under the badges)
        self.minimap = (Minimap(session.movement.walkable, top=self.hud_assets.line_height + HUD_MARGIN)
                        if session.movement is not None else None)
        self.show_minimap = profile.minimap
        # The keys overlay: at start (a kiosk starts in attract mode instead) until this time or any key; 0: hidden
        self.help_lines = controls_help(self.scheme) + system_help(profile)
        help_keys = " / ".join(key_label(name) for name in profile.keys.help)
        self.help_title = "Keys" + (f" ({help_keys} shows them again)" if help_keys else "")
        self.help_until_s = (time.perf_counter() + profile.help_s
                             if profile.help_on_start and kiosk is None else 0.0)
        # Start points: the checkpoint's start frames; the next-start key (and a kiosk's automatic resets) cycle them
        self.start_index = 0
        starts = session.checkpoint.start_frames
        self.start_count = max(1, len(starts) if starts is not None else 0)
        self.clock = pygame.time.Clock()
        # Statistics keep every frame of a bounded run, up to a cap: `--frames 10**9` must not allocate 56 GB.
        self.times = FrameTimes(min(max_frames, MAX_TIMES_CAPACITY) if max_frames else DEFAULT_CAPACITY)
        self.history = RunHistory()
        self.recording: Recording | None = None
        self.replay = ReplayCheck()
        self.saved: list[Path] = []  # recordings finished during the run
        self.notices: deque[str] = deque(maxlen=NOTICES_KEPT)  # the latest notices shown, for the report
        self.kiosk_counts = {"attract": 0, "player": 0, "session_limit": 0, "degenerated": 0}
        # the checkpoint's degeneration detector, if it ships one: a collapsed world is said, or reset in a kiosk
        self.watch = DegenerationWatch.for_checkpoint(session.checkpoint.path)
        self.display_ok = True
        self._display_retry_s = 0.0
        self._no_commands: list[Command] = []  # the attract program's commands go nowhere

        self.running = True
        self.paused = False
        self.step_requested = False
        self.frames = 0  # generated frames
        self.frame_image: np.ndarray = np.zeros((*session.image_size, 3), np.uint8)
        self.state = ControllerState()  # this frame's controls, for the player's HUD
        self._commands: list[Command] = []
        self._control_events: list[pygame.event.Event] = []
        self._hud_refresh_s = 0.0
        self._notice_until_s = 0.0
        try:
            self.reset()
            if record_path is not None:
                self.start_recording(required=True)
        except BaseException:
            self.window.close()
            self.stop_signal.uninstall()
            raise

    # ---- one iteration ------------------------------------------------------------------------------------

    def frame(self) -> None:
        """events -> step -> draw -> flip -> tick."""
        session, times = self.session, self.times
        # 1. events: system commands, window changes, and the rest to the input source for this frame's controls
        poll_s = time.perf_counter()
        commands, control_events = self._commands, self._control_events
        commands.clear()
        control_events.clear()
        for event in pygame.event.get():
            kind = event.type
            if kind == pygame.KEYDOWN or kind == pygame.KEYUP:
                command = self.key_commands.get(event.key)
                if command is not None:
                    if kind == pygame.KEYDOWN:
                        commands.append(command)
                    continue
            elif kind == pygame.CONTROLLERBUTTONDOWN or kind == pygame.CONTROLLERBUTTONUP:
                command = self.button_commands.get(event.button)
                if command is not None:
                    if kind == pygame.CONTROLLERBUTTONDOWN:
                        commands.append(command)
                    continue
            elif kind == pygame.QUIT:
                if self.kiosk is None:
                    commands.append(Command.QUIT)
                else:  # a visitor's alt+F4: only the quit combination ends a kiosk
                    log.info("window close request ignored (kiosk: hold %s to quit)",
                             "+".join(self.kiosk.config.quit_keys))
                continue
            elif kind in LAYOUT_EVENTS:
                self.window.layout()
                continue
            elif kind in DISPLAY_EVENTS:
                self._recover_display(poll_s)
                continue
            elif kind == pygame.WINDOWFOCUSGAINED:
                self._refocus(poll_s)
                continue
            control_events.append(event)  # (focus loss included: the source releases what was held)
        state = self.source.poll(control_events, commands)
        if self.kiosk is not None:
            pressed = bool(commands) or any(event.type in PRESS_EVENTS for event in control_events)
            state = self._kiosk(state, commands, pressed, poll_s)
        if self.help_until_s and (any(command is not Command.HELP for command in commands)
                                  or any(event.type in PRESS_EVENTS for event in control_events)):
            self.help_until_s = 0.0  # any key closes the keys overlay, and still does what it does
        self.state = state
        input_s = time.perf_counter()
        for command in commands:
            self.apply(command)
        if self.source.notices:
            self.notify(self.source.notices.pop(0))
        if not self.running:
            return
        # 2. step the world, unless paused; a non-finite step is never shown (the last good frame stays up)
        stepping = not self.paused or self.step_requested
        if stepping:
            self.step_requested = False
            encode_s = time.perf_counter()
            condition = self.scheme.encode(state, self.grid)
            encode_ms = (time.perf_counter() - encode_s) * 1e3
            # hashing and blitting need contiguous bytes
            image = np.ascontiguousarray(session.step(condition))
            verdict = self.guard.check()
            if verdict is Verdict.GOOD:
                self.frame_image = image
                self.hud.values = condition.action
                self.frames += 1
                if self.minimap is not None:
                    self.minimap.add(session.player)
                if self.watch is not None and self.watch.check(image):
                    self._degenerated()
            else:
                self._recovered(verdict)
                stepping = False
        # 3. draw, 4. flip
        draw_s = time.perf_counter()
        self._draw(poll_s)
        flip_s = time.perf_counter()
        # 5. record, account, tick
        if stepping:
            digest = frame_hash(image)
            pose = None if session.player is None else tuple(session.player.pose.tolist())
            self.history.add(session.frame_index, state, digest, pose)
            expected = self.source.expected_hash
            if expected is not None:
                self._check_replay(expected, digest, self.source.expected_pose, pose)
            if self.recording is not None:
                self.recording.add(session.frame_index, state, image, digest, pose)
            s = session.timings_ms
            times.add(((input_s - poll_s) * 1e3, encode_ms + s["condition"], s["generate"], s["decode"],
                       (flip_s - draw_s) * 1e3, (time.perf_counter() - flip_s) * 1e3), poll_s, flip_s)
            if self.frames == self.max_frames:
                self.running = False
        if self.heartbeat is not None:
            self.heartbeat.beat(flip_s)
        if self.paused:
            self.clock.tick(PAUSED_FPS)
        else:
            # the pacer sees the whole frame's work (not the sleep) and may aim lower when it does not fit
            self.clock.tick(self.pacer.add(time.perf_counter() - poll_s))

    def run(self) -> dict:
        """Iterate until quit, the frame limit or the end of the input; returns the run's statistics."""
        try:
            while self.running:
                self.frame()
        finally:
            self.close()
        return self.stats()

    # ---- commands -----------------------------------------------------------------------------------------

    def apply(self, command: Command) -> None:
        if command is Command.QUIT:
            self.running = False
        elif command is Command.PAUSE:
            self.paused = not self.paused
        elif command is Command.STEP:
            self.step_requested = self.paused  # a single step only makes sense while paused
        elif command is Command.RESET:
            self.reset()
        elif command is Command.NEXT_START:
            self.next_start()
        elif command is Command.RECORD:
            if self.recording is not None:
                self.stop_recording()
            else:
                self.start_recording()
        elif command is Command.HELP:
            self.help_until_s = 0.0 if self.help_until_s else float("inf")  # opened by key: until a key
        elif command is Command.HUD:
            self.show_hud = not self.show_hud
        elif command is Command.MINIMAP:
            if self.minimap is None:
                self.notify("no minimap: this world does not track where the player is")
            else:
                self.show_minimap = not self.show_minimap
        elif command is Command.DEV_HUD:
            self.show_dev_hud = not self.show_dev_hud
        elif command is Command.FULLSCREEN:
            self.window.toggle_fullscreen()

    def reset(self) -> None:
        """Back to the start point: a fresh rollout with the same seed from the current start frame (a replay's
        from the one its log names, so the replayed frames are the recorded ones)."""
        if self.source.start is not None:
            self.start_index = self.source.start % self.start_count
        first = self.session.start_frame(self.start_index)
        pose = self.session.start_pose(self.start_index)
        self.frame_image = np.ascontiguousarray(self.session.reset(first, pose))
        self.guard.after_reset()
        if self.watch is not None:
            self.watch.reset()
        if self.minimap is not None:
            self.minimap.reset()
            self.minimap.add(self.session.player)  # the start point begins the trail
        self.hud.values = np.zeros_like(self.hud.values)
        self.history.reset(self.start_index)
        if self.recording is not None:
            self.recording.reset(self.start_index)

    def next_start(self) -> None:
        """The checkpoint's next start frame (another room), from its first frame."""
        self.start_index = (self.start_index + 1) % self.start_count
        self.reset()
        self.notify(f"start point {self.start_index + 1} of {self.start_count}")

    # ---- reliability: faults, the display, the kiosk -----------------------------------------------------

    def _degenerated(self) -> None:
        """The detector fired: the picture no longer looks like the world (streaks, fog). It will not come back."""
        frame = self.session.frame_index
        if self.kiosk is not None:
            self.kiosk_counts["degenerated"] += 1
            log.info("the world degenerated at frame %d: fresh start", frame)
            self.reset()
            return
        reset_keys = " / ".join(key_label(name) for name in self.profile.keys.reset) or "reset"
        self.notify(f"the world has degenerated (frame {frame}): press {reset_keys} to start again")

    def _recovered(self, verdict: Verdict) -> None:
        """A step came out non-finite; the guard rewound the session (RESTORED) or asks for a reset."""
        if verdict is Verdict.RESET:
            self.reset()
            self.notify("the world went unstable and was reset")
        else:
            self.history.rewind(self.session.frame_index)
            log.warning("non-finite frame; rewound to frame %d", self.session.frame_index)

    def _draw(self, now_s: float) -> None:
        """Draw and flip; a lost display is re-created (retried every DISPLAY_RETRY_S), the world keeps going."""
        if not self.display_ok:
            if now_s < self._display_retry_s:
                return
            self._recover_display(now_s)
            if not self.display_ok:
                return
        if self.hud.notice and now_s > self._notice_until_s:
            self.hud.notice = ""
        try:
            surface = self.window.surface
            draw_world(self.window, self.frame_image, self.profile.smooth_scaling)
            if self.show_minimap and self.minimap is not None:
                self.minimap.draw(surface, self.session.player)
            if self.show_dev_hud:
                self._refresh_hud(now_s)
                draw_hud(surface, self.hud, self.hud_assets)
            elif self.show_hud:
                self._refresh_hud(now_s)
                draw_status(surface, self.hud, self.hud_assets)
            else:
                draw_notice(surface, self.hud.notice, self.hud_assets)  # a pad unplugged matters without a HUD
            if self.help_until_s:
                if now_s < self.help_until_s:
                    draw_help(surface, self.help_title, self.help_lines, self.hud_assets)
                else:
                    self.help_until_s = 0.0
            if self.kiosk is not None and self.kiosk.attracting:
                draw_overlay(surface, self.kiosk.config.attract_text, self.overlay_assets)
            pygame.display.flip()
        except pygame.error as err:
            log.warning("drawing failed (%s); re-creating the display", err)
            self._recover_display(now_s)

    def _recover_display(self, now_s: float) -> None:
        try:
            self.window.recover()
        except pygame.error as err:
            if self.display_ok:
                log.error("no display (%s); retrying every %.0f s", err, DISPLAY_RETRY_S)
            self.display_ok = False
            self._display_retry_s = now_s + DISPLAY_RETRY_S
            return
        if not self.display_ok:
            log.info("display back")
        self.display_ok = True

    def _refocus(self, now_s: float) -> None:
        try:
            self.window.refocus()
        except pygame.error:
            self._recover_display(now_s)

    def _kiosk(self, state: ControllerState, commands: list[Command], pressed: bool,
               now_s: float) -> ControllerState:
        """Attract mode, fresh starts, session limit, quit combination; returns the controls that drive the
        world this frame (the attract program's while idle, else the player's)."""
        kiosk = self.kiosk
        transition = kiosk.update(now_s, state, pressed, self.session.frame_index)
        self.start_index = kiosk.start_after(transition, self.start_index, self.start_count)
        if self.stop_signal.received:
            log.info("SIGTERM: quitting")
            commands.append(Command.QUIT)
        elif transition is Transition.QUIT:
            log.info("quit combination held: quitting")
            commands.append(Command.QUIT)
        elif transition is Transition.PLAYER:
            commands.clear()  # the press that woke the kiosk is not also a reset or a pause
            self.reset()
            self.kiosk_counts["player"] += 1
            log.info("player arrived: fresh start")
        elif transition is Transition.ATTRACT:
            self.reset()
            self.attract_source = ScriptedInput(self.attract_program)
            self.kiosk_counts["attract"] += 1
            log.info("idle for %.0f s: attract mode", kiosk.config.idle_timeout_s)
        elif transition is Transition.SESSION_LIMIT:
            self.reset()
            self.kiosk_counts["session_limit"] += 1
            log.info("session limit (%d frames): fresh start", kiosk.config.max_session_frames)
        if kiosk.attracting:
            self._no_commands.clear()
            return self.attract_source.poll([], self._no_commands)
        return state

    def start_recording(self, required: bool = False) -> None:
        """Start an MP4 + action log; `required` (asked for on the command line) makes a failure an error."""
        path = self.next_record_path
        self.next_record_path = None  # a later record key press must not replace this recording
        if path is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            path = free_recording_path(Path(self.profile.record_dir), f"worldsim-{stamp}")
        header = dataclasses.replace(self.log_header, created=datetime.now().isoformat(timespec="seconds"))
        try:
            self.recording = Recording(path, header, self.session.image_size, self.video_fps, self.history,
                                       self.profile.record_scale, self.profile.record_crf, self.overwrite)
        except WorldsimError as err:
            if required:
                raise
            self.notify(f"cannot record: {err}")
            return
        self.notify(f"recording to {path}")

    def stop_recording(self) -> None:
        recording, self.recording = self.recording, None
        if recording is None:
            return
        if not recording.close():
            self.notify("recording discarded: no frames were generated while it ran")
            return
        self.saved.append(recording.path)
        self.notify(f"saved {recording.path} ({recording.video.frames} frames) and {recording.log_path.name}")

    # ---- HUD and reports ----------------------------------------------------------------------------------

    def notify(self, text: str) -> None:
        log.info("notice: %s", text)
        self.notices.append(text)
        self.hud.notice = text
        self._notice_until_s = time.perf_counter() + self.profile.notice_s

    def _refresh_hud(self, now_s: float) -> None:
        """Rebuild the HUDs' text a few times a second (numbers that change every frame cannot be read)."""
        if now_s < self._hud_refresh_s:
            return
        # Behind the target frame rate: rebuilding HUD text is the extra to cut first.
        slowdown = HUD_SLOWDOWN if self.pacer.behind else 1
        self._hud_refresh_s = now_s + self.profile.hud_refresh_s * slowdown
        recent = self.times.recent(HUD_WINDOW_FRAMES)
        fps = self.times.recent_fps(HUD_WINDOW_FRAMES)
        # paused, the frame rate of the frames before the pause says nothing
        rate = "paused" if self.paused else f"{fps:.0f} fps" if len(recent) else "starting..."
        pressed = pressed_names(self.state)
        self.hud.status = f"{rate}   {pressed}" if pressed else rate
        if len(recent):
            stage = recent.mean(0)
            latency = recent[:, -1]
            rate = "paused" if self.paused else f"{fps:5.1f} fps"
            self.hud.lines = [
                f"{rate}   latency {np.median(latency):.0f} ms (p95 {np.percentile(latency, 95):.0f})",
                f"input {stage[0]:.1f}  cond {stage[1]:.1f}  gen {stage[2]:.1f}  dec {stage[3]:.1f}  "
                f"disp {stage[4]:.1f} ms",
            ]
        else:
            self.hud.lines = ["starting..."]
        self.hud.lines.append(f"{self.source.label}   frame {self.session.frame_index}   "
                              f"start {self.start_index + 1}/{self.start_count}")
        recording = self.recording is not None
        self.hud.badges = (["PAUSED"] if self.paused else []) + (["REC"] if recording else [])

    def _check_replay(self, expected: str, digest: str, expected_pose: tuple[float, ...] | None,
                      pose: tuple[float, ...] | None) -> None:
        check = self.replay
        check.checked += 1
        if digest != expected or (expected_pose is not None and expected_pose != pose):
            check.mismatches += 1
            if check.first_mismatch is None:
                check.first_mismatch = check.checked

    def stats(self) -> dict:
        stats = self.times.summary()
        stats.update(paused_at_end=self.paused, recordings=[str(p) for p in self.saved],
                     input=self.source.label, notices=list(self.notices), faults=self.guard.summary(),
                     pacing={"target_fps": self.pacer.target_fps, "fps": round(self.pacer.fps, 3),
                             "changes": self.pacer.changes},
                     display_recoveries=self.window.recoveries)
        if self.kiosk is not None:
            stats["kiosk"] = dict(self.kiosk_counts)
        if self.replay.checked:
            stats["replay"] = self.replay.summary()
        return stats

    def close(self) -> None:
        try:
            self.stop_recording()
        finally:
            self.source.close()
            self.window.close()
            self.stop_signal.uninstall()
