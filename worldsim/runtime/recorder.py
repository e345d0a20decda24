"""Recording: the world frames as an MP4 plus the action log that replays them, written atomically.

Both files are written under temporary names in the target directory and renamed into place when the recording
stops, so an interrupted run never leaves a half-written file under the final name, and an existing recording
is never replaced unless the caller says so. The temporary names carry the writer's PID: the next recording into
the folder removes those of players that were killed.

A frame depends on every frame since the last world reset, so a recording started mid-game (the record key)
writes that history into its action log first; `RunHistory` keeps it, bounded, and the video starts at the
current frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import deque
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from worldsim.errors import WorldsimError
from worldsim.input.replay import ActionLogHeader, frame_line, header_line, log_path_for, reset_line
from worldsim.input.state import ControllerState
from worldsim.leftovers import remove_stale_files

HISTORY_FRAMES = 36_000  # frames since the last reset kept for mid-game recordings (25 minutes at 24 fps)
HASH_CHUNK = 1 << 22
CHECKPOINT_FILES = ("config.yaml", "generator.safetensors", "vae.safetensors", "start_frames.safetensors",
                    "movement.safetensors", "memory.safetensors")  # what frames and poses depend on


def frame_hash(frame: np.ndarray) -> str:
    """sha256 of a C-contiguous uint8 frame's bytes: equal hashes = bit-identical frames."""
    return hashlib.sha256(frame).hexdigest()


def checkpoint_fingerprint(path: Path | None) -> str:
    """A short hash of the checkpoint's files: a replay can tell whether it runs against the same weights."""
    if path is None:
        return "unknown"
    digest = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        file = Path(path) / name
        if file.exists():
            digest.update(name.encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()[:16]


def partial_path(path: Path) -> Path:
    """A temporary name beside `path` with the same suffix (ffmpeg picks the container from it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


PARTIAL_FILE = re.compile(r"^\..+\.partial-(?P<pid>\d+)(\.[^.]*)?$")  # what `partial_path` names


def publish(partial: Path, path: Path) -> None:
    """Move a finished file into place (same directory: an atomic rename)."""
    os.replace(partial, path)


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Refuse to start a run that would replace existing files (unless `overwrite`), or a folder (ever)."""
    for path in paths:
        if path.is_dir():
            raise WorldsimError(f"{path} is a folder; allowed: a file name (a new one, or an existing file with "
                                "--overwrite)")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise WorldsimError(f"{existing[0]} already exists; pass --overwrite to replace it, "
                            "or choose another name")


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    publish(partial, path)


def free_recording_path(directory: Path, stem: str) -> Path:
    """`directory/stem.mp4`, or `stem-2.mp4`, ... : the first name with neither video nor log taken."""
    for n in range(1, 10_000):
        path = directory / (f"{stem}.mp4" if n == 1 else f"{stem}-{n}.mp4")
        if not path.exists() and not log_path_for(path).exists():
            return path
    raise WorldsimError(f"{directory}: too many recordings named {stem}*")


class RunHistory:
    """Frames since the last reset (state and hash each), bounded: the prefix a mid-game recording needs."""

    def __init__(self, limit: int = HISTORY_FRAMES):
        # (frame index, state, frame hash, pose or None)
        self.frames: deque[tuple[int, ControllerState, str, tuple[float, ...] | None]] = deque(maxlen=limit)
        self.since_reset = 0
        self.start = 0  # the start frame of the last reset

    def reset(self, start: int = 0) -> None:
        self.frames.clear()
        self.since_reset = 0
        self.start = start

    def add(self, index: int, state: ControllerState, digest: str, pose: tuple[float, ...] | None = None) -> None:
        self.frames.append((index, state, digest, pose))
        self.since_reset += 1

    def rewind(self, index: int) -> None:
        """The world went back to frame `index` (a fault recovery): forget the frames after it."""
        while self.frames and self.frames[-1][0] > index:
            self.frames.pop()
            self.since_reset -= 1

    @property
    def complete(self) -> bool:
        return self.since_reset == len(self.frames)


class VideoWriter:
    """uint8 (H, W, 3) frames -> H.264 MP4 through imageio-ffmpeg's ffmpeg pipe.

    ffmpeg starts with the first frame, so a recording stopped before any frame (while paused) writes nothing.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float, scale: int = 1, crf: int = 18):
        self.path, self.partial, self.scale = path, partial_path(path), scale
        self.size, self.fps, self.crf = size, fps, crf
        self.frames = 0
        self._pipe = None

    def _start(self) -> None:
        height, width = self.size
        # macro_block_size 2: x264 needs even sizes, and a larger block would silently resize small worlds.
        self._pipe = imageio_ffmpeg.write_frames(
            str(self.partial), (width * self.scale, height * self.scale), fps=self.fps, codec="libx264",
            quality=None, macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-crf", str(self.crf), "-preset", "veryfast"])
        self._pipe.send(None)

    def write(self, frame: np.ndarray) -> None:
        if self._pipe is None:
            self._start()
        if self.scale > 1:
            frame = frame.repeat(self.scale, 0).repeat(self.scale, 1)
        self._pipe.send(frame)
        self.frames += 1

    def close(self) -> bool:
        """Finish the file and move it into place; False (and no file) when no frame was written."""
        if self._pipe is None:
            return False
        self._pipe.close()
        publish(self.partial, self.path)
        return True


class Recording:
    """One MP4 and its action log, from now until `close()`."""

    def __init__(self, path: Path, header: ActionLogHeader, size: tuple[int, int], fps: float,
                 history: RunHistory, scale: int = 1, crf: int = 18, overwrite: bool = False):
        self.path = Path(path)
        self.log_path = log_path_for(self.path)
        if self.path.suffix.lower() != ".mp4":
            raise WorldsimError(f"--record {self.path}: recordings are MP4 files; use a name ending in .mp4")
        refuse_existing([self.path, self.log_path], overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_files(self.path.parent, PARTIAL_FILE)  # unfinished files of killed players: never playable
        self._last_state: ControllerState | None = None
        self._last_state_json = ""
        # 1. the video, from the next frame on
        self.video = VideoWriter(self.path, size, fps, scale, crf)
        # 2. the action log: header, then the history since the last reset (the video's first frame needs it)
        header = dataclasses.replace(header, video=self.path.name, video_first_frame=len(history.frames),
                                     replayable=history.complete)
        self._log_partial = partial_path(self.log_path)
        self._log = open(self._log_partial, "w", encoding="utf-8")  # closed in close()
        self._log.write(header_line(header))
        self._log.write(reset_line(history.start))
        for index, state, digest, pose in history.frames:
            self._log.write(frame_line(index, self._state_json(state), digest, pose))

    def _state_json(self, state: ControllerState) -> str:
        if state is not self._last_state:  # programs and idle players repeat the same state object
            self._last_state, self._last_state_json = state, json.dumps(state.to_json())
        return self._last_state_json

    def reset(self, start: int = 0) -> None:
        self._log.write(reset_line(start))

    def add(self, index: int, state: ControllerState, frame: np.ndarray, digest: str,
            pose: tuple[float, ...] | None = None) -> None:
        self._log.write(frame_line(index, self._state_json(state), digest, pose))
        self.video.write(frame)

    def close(self) -> bool:
        """Finish both files; a recording without frames leaves neither behind (returns False)."""
        kept = self.video.close()
        self._log.flush()
        if kept:
            os.fsync(self._log.fileno())
        self._log.close()
        if kept:
            publish(self._log_partial, self.log_path)
        else:
            self._log_partial.unlink(missing_ok=True)
        return kept
