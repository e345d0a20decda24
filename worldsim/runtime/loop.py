"""The game loop: events -> step -> draw -> flip -> tick, one generated frame per iteration.

    1. events   pygame events become system commands (profile bindings) or go to the input source, which
                returns this frame's ControllerState
    2. step     scheme.encode(state) -> session.step(condition) -> the next world frame (skipped while paused)
    3. draw     the frame scaled into the window, the HUD over it
    4. flip     the player sees it: input-to-photon latency ends here
    5. tick     record the frame, then wait for the target frame rate (none when headless and unthrottled)

Interactive play, headless recording and tests run this same loop; headless is the SDL dummy video driver.
Tests drive it one iteration at a time with `frame()` after posting synthetic events.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pygame

from worldsim.errors import WorldsimError
from worldsim.input.events import CONTROLLER_BUTTONS, KEY_CODES
from worldsim.input.replay import ActionLogHeader
from worldsim.input.sources import Command, InputSource
from worldsim.runtime.display import HudAssets, HudView, Window, draw_hud, draw_world
from worldsim.runtime.profile import Profile, command_table
from worldsim.runtime.recorder import Recording, RunHistory, frame_hash, free_recording_path
from worldsim.runtime.session import WorldSession
from worldsim.runtime.timing import DEFAULT_CAPACITY, FrameTimes

PAUSED_FPS = 30.0  # redraw rate while paused (or headless and paused): enough for the HUD, idle otherwise
HUD_WINDOW_FRAMES = 60  # frames the HUD's numbers are averaged over
WINDOW_EVENTS = frozenset({pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED})


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


class GameLoop:
    def __init__(self, session: WorldSession, source: InputSource, profile: Profile,
                 log_header: ActionLogHeader, *, fps: float | None, max_frames: int | None = None,
                 record_path: Path | None = None, overwrite: bool = False, video_fps: float = 24.0,
                 title: str = "worldsim"):
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

        self.window = Window(session.image_size, profile.window_scale, profile.fullscreen, title,
                             profile.capture_mouse)
        self.hud_assets = HudAssets(profile.hud_font_size)
        controls = self.scheme.controls
        self.hud = HudView(controls=self.scheme.control_names, low=controls.low, high=controls.high,
                           values=np.zeros(len(controls.names), np.float32))
        self.show_hud = profile.hud
        self.clock = pygame.time.Clock()
        self.times = FrameTimes(max_frames or DEFAULT_CAPACITY)
        self.history = RunHistory()
        self.recording: Recording | None = None
        self.replay = ReplayCheck()
        self.saved: list[Path] = []  # recordings finished during the run
        self.notices: list[str] = []  # every notice shown, for the caller's report

        self.running = True
        self.paused = False
        self.step_requested = False
        self.frames = 0  # generated frames
        self.frame_image: np.ndarray = np.zeros((*session.image_size, 3), np.uint8)
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
            raise

    # ---- one iteration ------------------------------------------------------------------------------------

    def frame(self) -> None:
        """events -> step -> draw -> flip -> tick."""
        session, times = self.session, self.times
        # 1. events: system commands, and the rest to the input source for this frame's controls
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
                commands.append(Command.QUIT)
                continue
            elif kind in WINDOW_EVENTS:
                self.window.layout()
                continue
            control_events.append(event)
        state = self.source.poll(control_events, commands)
        input_s = time.perf_counter()
        for command in commands:
            self.apply(command)
        if self.source.notices:
            self.notify(self.source.notices.pop(0))
        if not self.running:
            return
        # 2. step the world, unless paused
        stepping = not self.paused or self.step_requested
        if stepping:
            self.step_requested = False
            encode_s = time.perf_counter()
            condition = self.scheme.encode(state, self.grid)
            encode_ms = (time.perf_counter() - encode_s) * 1e3
            # hashing and blitting need contiguous bytes
            image = np.ascontiguousarray(session.step(condition))
            self.frame_image = image
            self.hud.values = condition.action
            self.frames += 1
        # 3. draw
        draw_s = time.perf_counter()
        draw_world(self.window, self.frame_image, self.profile.smooth_scaling)
        if self.show_hud:
            self._refresh_hud(poll_s)
            draw_hud(self.window.surface, self.hud, self.hud_assets)
        # 4. flip
        pygame.display.flip()
        flip_s = time.perf_counter()
        # 5. record, account, tick
        if stepping:
            digest = frame_hash(image)
            self.history.add(session.frame_index, state, digest)
            expected = self.source.expected_hash
            if expected is not None:
                self._check_replay(expected, digest)
            if self.recording is not None:
                self.recording.add(session.frame_index, state, image, digest)
            s = session.timings_ms
            times.add(((input_s - poll_s) * 1e3, encode_ms + s["condition"], s["generate"], s["decode"],
                       (flip_s - draw_s) * 1e3, (time.perf_counter() - flip_s) * 1e3), poll_s, flip_s)
            if self.frames == self.max_frames:
                self.running = False
        self.clock.tick(PAUSED_FPS if self.paused else self.fps)

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
        elif command is Command.RECORD:
            if self.recording is not None:
                self.stop_recording()
            else:
                self.start_recording()
        elif command is Command.HUD:
            self.show_hud = not self.show_hud
        elif command is Command.FULLSCREEN:
            self.window.toggle_fullscreen()

    def reset(self) -> None:
        """Back to the checkpoint's first frame: a fresh rollout with the same seed."""
        self.frame_image = np.ascontiguousarray(self.session.reset())
        self.hud.values = np.zeros_like(self.hud.values)
        self.history.reset()
        if self.recording is not None:
            self.recording.reset()

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
        self.notices.append(text)
        self.hud.notice = text
        self._notice_until_s = time.perf_counter() + self.profile.notice_s

    def _refresh_hud(self, now_s: float) -> None:
        """Rebuild the HUD's text a few times a second (numbers that change every frame cannot be read)."""
        if now_s < self._hud_refresh_s:
            return
        self._hud_refresh_s = now_s + self.profile.hud_refresh_s
        recent = self.times.recent(HUD_WINDOW_FRAMES)
        if len(recent):
            stage = recent.mean(0)
            latency = recent[:, -1]
            self.hud.lines = [
                f"{self.times.recent_fps(HUD_WINDOW_FRAMES):5.1f} fps   latency {np.median(latency):.0f} ms "
                f"(p95 {np.percentile(latency, 95):.0f})",
                f"input {stage[0]:.1f}  cond {stage[1]:.1f}  gen {stage[2]:.1f}  dec {stage[3]:.1f}  "
                f"disp {stage[4]:.1f} ms",
            ]
        else:
            self.hud.lines = ["starting..."]
        self.hud.lines.append(f"{self.source.label}   frame {self.session.frame_index}")
        recording = self.recording is not None
        self.hud.badges = (["PAUSED"] if self.paused else []) + (["REC"] if recording else [])
        if self.hud.notice and now_s > self._notice_until_s:
            self.hud.notice = ""

    def _check_replay(self, expected: str, digest: str) -> None:
        check = self.replay
        check.checked += 1
        if digest != expected:
            check.mismatches += 1
            if check.first_mismatch is None:
                check.first_mismatch = check.checked

    def stats(self) -> dict:
        stats = self.times.summary()
        stats.update(paused_at_end=self.paused, recordings=[str(p) for p in self.saved],
                     input=self.source.label, notices=self.notices)
        if self.replay.checked:
            stats["replay"] = self.replay.summary()
        return stats

    def close(self) -> None:
        try:
            self.stop_recording()
        finally:
            self.source.close()
            self.window.close()
