"""Action logs: what the player did, frame by frame, so a run can be replayed to the identical frames.

A log is JSON lines (`run.actions.jsonl`, written next to `run.mp4` by the recorder):

    {"format": "worldsim-actions", "version": 1, "scheme": "camera", "seed": 0, "checkpoint": "3f9c...", ...}
    {"reset": true}
    {"frame": 1, "state": {"keys": ["w"], "mouse": [0.0, 0.0], ...}, "sha256": "9a0e...", "pose": [..]}
    {"frame": 2, "state": {...}, "sha256": "..."}
    {"reset": true, "start": 2}

Line 1 is the header: the scheme, encoding, seed, sampler steps and a fingerprint of the checkpoint the run
was played with. Every following line is either a world reset (to the checkpoint's start frame `start`, 0 when
absent) or one generated frame: the `ControllerState` that drove it (`ControllerState.to_json`) and the sha256
of the frame's RGB bytes, so a replay can check it is bit-exact. Worlds that track the player's pose (a learned
movement, worldsim/world) also log it after each frame, (x, y, heading) exactly, so a replay checks it too and
tools can read where the player went. A log always starts at a reset, because a frame depends on everything since
the last reset.
A log is checked line by line when it is opened and streamed during a replay, so its length costs no memory.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pygame

from worldsim import files
from worldsim.config import MAX_NUMBER, MAX_SAMPLING_STEPS, ConfigError, from_dict, rng, to_dict
from worldsim.errors import WorldsimError
from worldsim.input.sources import Command
from worldsim.input.state import ControllerState

LOG_FORMAT = "worldsim-actions"
LOG_VERSION = 1
LOG_SUFFIX = ".actions.jsonl"
ENTRY_KEYS = {"reset": "a world reset", "start": "the start frame a reset went back to",
              "frame": "frame index since the reset", "state": "the ControllerState",
              "sha256": "hash of the frame's RGB bytes",
              "pose": "the player's pose [x, y, heading] after the frame (worlds that track it)"}
# A frame line is about 200 bytes, so the cap is some 15 hours of play at 24 fps. Logs are read line by line (memory
# stays flat however long the log); the cap bounds the time the check before playing takes.
MAX_LOG_BYTES = 256 << 20
MAX_LINE_BYTES = 64 << 10
MAX_THREADS = 1024
MAX_FPS = 1000.0


class ActionLogError(WorldsimError):
    pass


@dataclass(frozen=True)
class ActionLogHeader:
    scheme: str  # the scheme's name (or file) the states were resolved with
    encoding: dict  # that scheme's encoding (the model's condition space)
    seed: int
    steps: int = field(metadata=rng(1, MAX_SAMPLING_STEPS))  # sampler steps per frame
    checkpoint: str  # fingerprint of the checkpoint's files: another checkpoint cannot replay exactly
    format: str = LOG_FORMAT
    version: int = LOG_VERSION
    checkpoint_path: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    # torch CPU threads: float reductions, hence frames, may differ with another count
    threads: int = field(default=0, metadata=rng(0, MAX_THREADS))
    fps: float = field(default=0.0, metadata=rng(0.0, MAX_FPS))
    video: str = ""  # the MP4 recorded alongside, if any
    # logged frames before the video's first: the history since the last reset (at most the log's frames)
    video_first_frame: int = field(default=0, metadata=rng(0, MAX_NUMBER))
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
MAX_START = 1_000_000  # start frames a checkpoint could hold; an index past it is a damaged log
HEX_DIGITS = frozenset(string.hexdigits.lower())


def reset_line(start: int = 0) -> str:
    """A world reset to the checkpoint's start frame `start` (the first, 0, is written as logs always were)."""
    return RESET_LINE if start == 0 else f'{{"reset": true, "start": {start}}}\n'


def frame_line(frame: int, state_json: str, frame_hash: str | None, pose: tuple[float, ...] | None = None) -> str:
    """One generated frame; `state_json` is `json.dumps(state.to_json())` (callers cache it across frames). The
    pose is written with repr's digits, so it reads back to the same floats."""
    tail = "" if frame_hash is None else f', "sha256": "{frame_hash}"'
    if pose is not None:
        tail += f', "pose": [{", ".join(repr(float(v)) for v in pose)}]'
    return f'{{"frame": {frame}, "state": {state_json}{tail}}}\n'


@dataclass(frozen=True)
class LogEntry:
    state: ControllerState | None  # None: a reset
    frame_hash: str | None = None
    frame: int = 0  # the frame's number since the last reset (0: a reset)
    start: int = 0  # a reset: the start frame it went back to
    pose: tuple[float, float, float] | None = None  # the player's pose after the frame, when the world tracks it


@dataclass(frozen=True)
class ActionLog:
    """A checked log: its header and frame count. The entries stay in the file and are read one at a time."""

    path: Path
    header: ActionLogHeader
    frames: int

    def iter_entries(self) -> Iterator[LogEntry]:
        """The entries in order, read and checked line by line (a log edited since it was read fails clearly)."""
        with _open_log(self.path) as fh:
            lines = _lines(self.path, fh)
            next(lines)  # the header, checked when the log was read
            yield from _entries(self.path, lines)

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        """All entries at once, for tools and tests; a replay streams them with `iter_entries`."""
        return tuple(self.iter_entries())


def read_action_log(path: str | Path) -> ActionLog:
    """Read and check a whole log, line by line; a problem is an ActionLogError naming file, line and what is
    allowed."""
    path = Path(path)
    with _open_log(path) as fh:
        lines = _lines(path, fh)
        first = next(lines, None)
        if first is None:
            raise ActionLogError(f"{path}: empty file; an action log starts with a header line")
        header = _header(path, first[1])
        frames = sum(entry.state is not None for entry in _entries(path, lines))
    if header.video_first_frame > frames:
        raise ActionLogError(f"{path}, line 1: 'video_first_frame' is {header.video_first_frame}, but the log "
                             f"holds {frames} frames; allowed: 0 to {frames}")
    return ActionLog(path, header, frames)


def _open_log(path: Path) -> BinaryIO:
    try:
        return files.open_regular(path, MAX_LOG_BYTES)
    except files.FileProblem as err:
        if err.problem == "file not found":
            raise ActionLogError(f"{path}: no such action log (recording NAME.mp4 writes NAME{LOG_SUFFIX} "
                                 "next to it)") from None
        raise ActionLogError(f"{path}: cannot read action log: {err.problem}") from None


def _lines(path: Path, fh: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines, each at most MAX_LINE_BYTES."""
    number = 0
    while True:
        try:
            raw = fh.readline(MAX_LINE_BYTES + 1)
        except OSError as err:
            raise ActionLogError(f"{path}: cannot read action log: {err.strerror}") from None
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ActionLogError(f"{path}, line {number}: line too long; allowed: at most {MAX_LINE_BYTES} bytes "
                                 "(a frame line is about 200)")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ActionLogError(f"{path}, line {number}: cannot read action log: {err}") from None
        if line.strip():
            yield number, line


def _header(path: Path, line: str) -> ActionLogHeader:
    data = _parse_line(path, 1, line)
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
    return header


def _entries(path: Path, lines: Iterator[tuple[int, str]]) -> Iterator[LogEntry]:
    """The entries after the header, checked: a reset first, then frames numbered from 1 since each reset.

    A frame's number is at most the count of frame lines since the reset, not always equal to it: when the world
    is rewound to a snapshot after a non-finite frame, a running recording goes on from the snapshot's number."""
    since_reset = None  # frame lines since the last reset; None before the first reset
    for number, line in lines:
        entry = _entry(path, number, _parse_line(path, number, line))
        if entry.state is None:
            since_reset = 0
        elif since_reset is None:
            raise ActionLogError(f"{path}, line {number}: an action log must start with a reset line "
                                 f"({RESET_LINE.strip()})")
        else:
            since_reset += 1
            if not 1 <= entry.frame <= since_reset:
                raise ActionLogError(f"{path}, line {number}: 'frame' is {entry.frame}, but this is frame line "
                                     f"{since_reset} since the last reset; allowed: 1 to {since_reset}")
        yield entry
    if since_reset is None:
        raise ActionLogError(f"{path}, line 2: an action log must start with a reset line "
                             f"({RESET_LINE.strip()})")


def _parse_line(path: Path, number: int, line: str) -> Any:
    try:
        return files.parse_json(line)
    except ValueError as err:
        raise ActionLogError(f"{path}, line {number}: {err}") from None


def _entry(path: Path, number: int, data: Any) -> LogEntry:
    where = f"{path}, line {number}"
    if not isinstance(data, dict):
        raise ActionLogError(f"{where}: expected a JSON object with 'reset' or 'state'")
    unknown = set(data) - set(ENTRY_KEYS)
    if unknown:
        raise ActionLogError(f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: "
                             + ", ".join(f"{k} ({v})" for k, v in ENTRY_KEYS.items()))
    if data.get("reset") is True:
        start = data.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= MAX_START:
            raise ActionLogError(f"{where}: 'start' must be the index of a start frame (0, 1, ...), got {start!r}")
        return LogEntry(None, start=start)
    if "start" in data:
        raise ActionLogError(f"{where}: 'start' belongs on a reset line (\"reset\": true)")
    if "state" not in data:
        raise ActionLogError(f"{where}: expected a 'state' (a frame) or \"reset\": true")
    try:
        state = ControllerState.from_json(data["state"])
    except ValueError as err:
        raise ActionLogError(f"{where}: 'state': {err}") from None
    frame_hash = data.get("sha256")
    if frame_hash is not None and not (isinstance(frame_hash, str) and len(frame_hash) == 64
                                       and set(frame_hash) <= HEX_DIGITS):
        raise ActionLogError(f"{where}: 'sha256' must be 64 hex digits (lowercase), got {frame_hash!r}")
    frame = data.get("frame")
    if isinstance(frame, bool) or not isinstance(frame, int):
        raise ActionLogError(f"{where}: 'frame' must be the frame's number since the last reset (1, 2, ...), "
                             f"got {frame!r}")
    pose = data.get("pose")
    if pose is not None:
        if not (isinstance(pose, list) and len(pose) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pose)):
            raise ActionLogError(f"{where}: 'pose' must be [x, y, heading], three finite numbers, got {pose!r}")
        pose = tuple(float(v) for v in pose)
    return LogEntry(state, frame_hash, frame, pose=pose)


class ReplayInput:
    """Plays a log back: its states in order, a RESET command where the recording reset, QUIT at the end.

    The entries are streamed from the file, one per frame, so a long log costs no memory. `expected_hash` is the
    recorded hash of the frame the last returned state produced, for bit-exact checks.
    """

    def __init__(self, log: ActionLog):
        self.log = log
        self.header = log.header
        self.label = f"replay: {log.path.name}"
        self.length = log.frames
        self.notices: list[str] = []
        self.expected_hash: str | None = None
        self.expected_pose: tuple[float, float, float] | None = None
        self._entries = log.iter_entries()
        self.start = next(self._entries).start  # the loop starts from a reset: the log's first entry is that one

    def poll(self, events: list[pygame.event.Event], commands: list[Command]) -> ControllerState:
        for entry in self._entries:
            if entry.state is None:
                self.start = entry.start
                commands.append(Command.RESET)
                continue
            self.expected_hash, self.expected_pose = entry.frame_hash, entry.pose
            return entry.state
        commands.append(Command.QUIT)
        self.expected_hash, self.expected_pose = None, None
        return ControllerState()

    def close(self) -> None:
        self._entries.close()  # closes the file
