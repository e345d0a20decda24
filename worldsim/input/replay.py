"""Action logs: what the player did, frame by frame, so a run can be replayed to the identical frames.

A log is JSON lines (`run.actions.jsonl`, written next to `run.mp4` by the recorder):

    {"format": "worldsim-actions", "version": 1, "scheme": "camera", "seed": 0, "checkpoint": "3f9c...", ...}
    {"reset": true}
    {"frame": 1, "state": {"keys": ["w"], "mouse": [0.0, 0.0], ...}, "sha256": "9a0e..."}
    {"frame": 2, "state": {...}, "sha256": "..."}

Line 1 is the header: the scheme, encoding, seed, sampler steps and a fingerprint of the checkpoint the run
was played with. Every following line is either a world reset or one generated frame: the `ControllerState`
that drove it (`ControllerState.to_json`) and the sha256 of the frame's RGB bytes, so a replay can check it is
bit-exact. A log always starts at a reset, because a frame depends on everything since the last reset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygame

from worldsim.config import ConfigError, from_dict, to_dict
from worldsim.errors import WorldsimError
from worldsim.input.sources import Command
from worldsim.input.state import ControllerState

LOG_FORMAT = "worldsim-actions"
LOG_VERSION = 1
LOG_SUFFIX = ".actions.jsonl"
ENTRY_KEYS = {"reset": "a world reset", "frame": "frame index since the reset",
              "state": "the ControllerState", "sha256": "hash of the frame's RGB bytes"}


class ActionLogError(WorldsimError):
    pass


@dataclass(frozen=True)
class ActionLogHeader:
    scheme: str  # the scheme's name (or file) the states were resolved with
    encoding: dict  # that scheme's encoding (the model's condition space)
    seed: int
    steps: int  # sampler steps per frame
    checkpoint: str  # fingerprint of the checkpoint's files: another checkpoint cannot replay exactly
    format: str = LOG_FORMAT
    version: int = LOG_VERSION
    checkpoint_path: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0  # torch CPU threads: float reductions, hence frames, may differ with another count
    fps: float = 0.0
    video: str = ""  # the MP4 recorded alongside, if any
    video_first_frame: int = 0  # logged frames before the video's first: the history since the last reset
    replayable: bool = True  # false: recording started too long after the last reset to keep that history
    created: str = ""
    worldsim: str = ""
    torch: str = ""
    extra: dict = field(default_factory=dict)  # free-form notes from the recording tool


def log_path_for(video: str | Path) -> Path:
    """`run.mp4` -> `run.actions.jsonl` (next to it)."""
    video = Path(video)
    return video.with_name(video.stem + LOG_SUFFIX)


def header_line(header: ActionLogHeader) -> str:
    data = to_dict(header)
    first = {"format": data.pop("format"), "version": data.pop("version")}  # what a reader checks first
    return json.dumps({**first, **data}) + "\n"


RESET_LINE = '{"reset": true}\n'


def frame_line(frame: int, state_json: str, frame_hash: str | None) -> str:
    """One generated frame; `state_json` is `json.dumps(state.to_json())` (callers cache it across frames)."""
    tail = "" if frame_hash is None else f', "sha256": "{frame_hash}"'
    return f'{{"frame": {frame}, "state": {state_json}{tail}}}\n'


@dataclass(frozen=True)
class LogEntry:
    state: ControllerState | None  # None: a reset
    frame_hash: str | None = None


@dataclass(frozen=True)
class ActionLog:
    path: Path
    header: ActionLogHeader
    entries: tuple[LogEntry, ...]

    @property
    def frames(self) -> int:
        return sum(e.state is not None for e in self.entries)


def read_action_log(path: str | Path) -> ActionLog:
    """Read and validate a whole log; a problem is an ActionLogError naming file, line and what is allowed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ActionLogError(f"{path}: no such action log (recording NAME.mp4 writes NAME{LOG_SUFFIX} "
                             "next to it)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ActionLogError(f"{path}: cannot read action log: {err}") from None
    if not lines:
        raise ActionLogError(f"{path}: empty file; an action log starts with a header line")
    data = _parse_line(path, 1, lines[0])
    if not isinstance(data, dict) or data.get("format") != LOG_FORMAT:
        raise ActionLogError(f"{path}, line 1: not a worldsim action log header (expected \"format\": "
                             f"\"{LOG_FORMAT}\")")
    version = data.get("version")
    if isinstance(version, int) and version > LOG_VERSION:  # checked first: a newer header may have new keys
        raise ActionLogError(f"{path}, line 1: log version {version} is newer than this worldsim "
                             f"(reads <= {LOG_VERSION})")
    try:
        header = from_dict(ActionLogHeader, data, file=f"{path}, line 1")
    except ConfigError as err:
        raise ActionLogError(str(err)) from None
    if not header.replayable:
        raise ActionLogError(f"{path}: this recording started too long after the world's last reset to keep "
                             "the history it depends on, so it cannot be replayed exactly")
    entries = [_entry(path, n, _parse_line(path, n, line))
               for n, line in enumerate(lines[1:], 2) if line.strip()]
    if not entries or entries[0].state is not None:
        raise ActionLogError(f"{path}, line 2: an action log must start with a reset line "
                             f"({RESET_LINE.strip()})")
    return ActionLog(path, header, tuple(entries))


def _parse_line(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        where = f"{path}, line {number}"
        raise ActionLogError(f"{where}: invalid JSON at column {err.colno}: {err.msg}") from None


def _entry(path: Path, number: int, data: Any) -> LogEntry:
    where = f"{path}, line {number}"
    if not isinstance(data, dict):
        raise ActionLogError(f"{where}: expected a JSON object with 'reset' or 'state'")
    unknown = set(data) - set(ENTRY_KEYS)
    if unknown:
        raise ActionLogError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: "
                             + ", ".join(f"{k} ({v})" for k, v in ENTRY_KEYS.items()))
    if data.get("reset") is True:
        return LogEntry(None)
    if "state" not in data:
        raise ActionLogError(f"{where}: expected a 'state' (a frame) or \"reset\": true")
    try:
        state = ControllerState.from_json(data["state"])
    except ValueError as err:
        raise ActionLogError(f"{where}: 'state': {err}") from None
    frame_hash = data.get("sha256")
    if frame_hash is not None and not (isinstance(frame_hash, str) and len(frame_hash) == 64):
        raise ActionLogError(f"{where}: 'sha256' must be 64 hex digits, got {frame_hash!r}")
    return LogEntry(state, frame_hash)


class ReplayInput:
    """Plays a log back: its states in order, a RESET command where the recording reset, QUIT at the end.

    `expected_hash` is the recorded hash of the frame the last returned state produced, for bit-exact checks.
    """

    def __init__(self, log: ActionLog):
        self.log = log
        self.header = log.header
        self.label = f"replay: {log.path.name}"
        self.length = log.frames
        self.notices: list[str] = []
        self.expected_hash: str | None = None
        self._entries = log.entries
        self._next = 1  # the loop starts from a reset: the log's first line is that one

    def poll(self, events: list[pygame.event.Event], commands: list[Command]) -> ControllerState:
        entries = self._entries
        while self._next < len(entries):
            entry = entries[self._next]
            self._next += 1
            if entry.state is None:
                commands.append(Command.RESET)
                continue
            self.expected_hash = entry.frame_hash
            return entry.state
        commands.append(Command.QUIT)
        self.expected_hash = None
        return ControllerState()

    def close(self) -> None:
        pass
