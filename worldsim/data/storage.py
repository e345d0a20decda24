"""Episode storage: chunked, compressed episodes written atomically, and one `index.json` per dataset folder.

Alignment (everything downstream relies on it; tests/data/test_episode_storage.py and test_doom_env.py
check it):
    frames[0]      the frame right after reset
    actions[t]     for t >= 1, the action applied to go from frames[t-1] to frames[t]; actions[0] is the no-op
                   (all zeros), since nothing led to the first frame
    conditions[t]  the scheme's frame vector of actions[t] (so conditions[0] encodes the no-op)
    poses[t]       the camera pose [x, y, angle_degrees] at frames[t]
So the model predicting frame t is conditioned on actions[t], and a yaw command at t shows up as a pose change
between t-1 and t, never between t and t+1.

A dataset directory:
    index.json             dataset info (engine, resolution, frame skip, scheme encoding) and, per episode,
                           its frames, split (train/val), seed, metadata and chunk files: what exists.
    ep000000-c000.npz ...  episode 0, chunk 0: a standard .npz (a zip that `np.load` reads, no pickle) of
                           frames uint8 (T, H, W, 3), actions float32 (T, A), conditions float32 (T, F),
                           poses float32 (T, 3) and meta (UTF-8 JSON bytes: the episode's metadata and the
                           chunk's place in it). Deflate level 1: fast enough to record at engine speed, and
                           the zip's CRC-32 catches corruption on read.
    latents/               latent caches (worldsim/data/dataset.py)

Every file is written atomically (temporary file in the same folder, fsync, `os.replace`): a crash or kill
leaves either the old file or the new one, never half of one, and temporary files (`.*.tmp`) are never read.
Chunks are written before the index that lists them. Reading skips corrupt, truncated or missing chunks with a
`CorruptDataWarning` naming the file, so one bad file never stops a training run.

The index also holds the recording that is filling the dataset (`recording`: what was asked for, from which
episode id on, and `complete`, set by the save after its last episode). A killed recording leaves it incomplete;
rerunning the same command continues it, and training refuses to start on it. A recorder holds `.recording.lock`
(an flock, released by the kernel when the recorder dies) and clears what a killed one left behind: temporary
files of dead writers and chunks the index never listed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import warnings
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from worldsim.errors import WorldsimError
from worldsim.leftovers import remove_stale_files

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

FORMAT = "worldsim-episodes"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SPLITS = ("train", "val")
ARRAYS = ("frames", "actions", "conditions", "poses")
POSE_DIM = 3
DEFAULT_CHUNK_FRAMES = 512  # 512 frames at 160x120 = 29 MB raw, a few MB on disk
COMPRESS_LEVEL = 1  # deflate: ~2.8k frames/s per core at 160x120; level 6 is 1.3x smaller but 4x slower
WRITE_THREADS = 2  # deflate runs without the GIL: two chunks compress at once while the engine renders
MAX_PENDING_CHUNKS = 4  # chunks in flight before the recorder waits (bounds memory: ~30 MB each at 160x120)
LOAD_THREADS = 2  # zlib releases the GIL, so decompression of several chunks runs in parallel
LOCK_FILE = ".recording.lock"
TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.\d+\.tmp$")  # atomic_write's temporary names
CHUNK_FILE = re.compile(r"^ep\d{6}-c\d{3}\.npz$")


class CorruptDataError(WorldsimError):
    """A data file is unreadable, truncated or inconsistent; the message names it."""


class CorruptDataWarning(UserWarning):
    """A data file was skipped because it is corrupt; training goes on without it."""


# -- atomic files --------------------------------------------------------------------------------------------


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` via `write(file)`: readers see the old file or the complete new one, nothing between."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not possible on every platform, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, data: Any) -> None:
    text = json.dumps(data, indent=1, sort_keys=False).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))


# -- chunks --------------------------------------------------------------------------------------------------


def write_chunk(path: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
    """Write one chunk file atomically; returns its size in bytes."""

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
            for name, array in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
            zf.writestr("meta.npy", _npy_bytes(meta_bytes))

    atomic_write(path, write)
    return Path(path).stat().st_size


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_chunk(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of one chunk; any damage is a CorruptDataError naming the file and what is wrong."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (*ARRAYS, "meta") if k not in npz.files]
            if missing:
                raise CorruptDataError(f"{path}: missing array '{missing[0]}'")
            arrays = {k: npz[k] for k in ARRAYS}  # reading each member checks its CRC-32
            meta = json.loads(npz["meta"].tobytes().decode("utf-8"))
    except CorruptDataError:
        raise
    except FileNotFoundError:
        raise CorruptDataError(f"{path}: file missing") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
            UnicodeDecodeError) as err:
        raise CorruptDataError(f"{path}: unreadable or truncated ({type(err).__name__}: {err})") from None
    _check_arrays(path, arrays)
    if not isinstance(meta, dict):
        raise CorruptDataError(f"{path}: meta is not a JSON object")
    return arrays, meta


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    frames, actions, conditions, poses = (arrays[k] for k in ARRAYS)
    length = len(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise CorruptDataError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} "
                               f"{frames.shape}")
    for name, array in (("actions", actions), ("conditions", conditions), ("poses", poses)):
        if array.dtype != np.float32 or array.ndim != 2 or len(array) != length:
            raise CorruptDataError(f"{path}: {name} must be float32 ({length}, n), got {array.dtype} "
                                   f"{array.shape}")
    if poses.shape[1] != POSE_DIM:
        raise CorruptDataError(f"{path}: poses must have {POSE_DIM} columns, got {poses.shape[1]}")


class ChunkWriter:
    """Compresses and writes chunks on background threads, so the engine keeps running meanwhile.

    At most `MAX_PENDING_CHUNKS` are in flight; `submit` blocks beyond that, which bounds memory. An error in
    a thread comes back from the next `submit` / `wait` call (or from the chunk's future).
    """

    def __init__(self, background: bool = True):
        self._pool = (ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="worldsim-chunks")
                      if background else None)
        self._pending: deque[Future] = deque()

    def submit(self, path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Future:
        if self._pool is None:
            future: Future = Future()
            future.set_result(write_chunk(path, arrays, meta))
            return future
        while len(self._pending) >= MAX_PENDING_CHUNKS:
            self._pending.popleft().result()
        future = self._pool.submit(write_chunk, path, arrays, meta)
        self._pending.append(future)
        return future

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the index -----------------------------------------------------------------------------------------------


@dataclass
class ChunkFile:
    name: str  # file name inside the dataset directory
    frames: int
    bytes: int


@dataclass
class EpisodeEntry:
    """One episode as the index knows it."""

    id: int
    frames: int
    split: str
    seed: int
    files: list[ChunkFile]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "frames": self.frames, "split": self.split, "seed": self.seed,
                "files": [vars(f) for f in self.files], "metadata": self.metadata}

    @staticmethod
    def from_json(data: dict[str, Any]) -> EpisodeEntry:
        files = [ChunkFile(str(f["name"]), int(f["frames"]), int(f["bytes"])) for f in data["files"]]
        return EpisodeEntry(int(data["id"]), int(data["frames"]), str(data["split"]), int(data["seed"]),
                            files, dict(data.get("metadata", {})))


@dataclass
class DatasetIndex:
    """What a dataset directory holds: dataset-wide `info` plus the list of episodes. Saved atomically."""

    root: Path
    info: dict[str, Any]  # engine, resolution, frame_skip, scheme, encoding: identical for every episode
    episodes: list[EpisodeEntry] = field(default_factory=list)
    # The latest recording: {"first_episode", "request" (episodes, steps, seed, ...), "complete"}. None in
    # datasets from before it was kept: those are taken as complete.
    recording: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def complete(self) -> bool:
        """False while a recording is unfinished (still running, or killed: rerun it to finish)."""
        return self.recording is None or bool(self.recording.get("complete"))

    def missing(self) -> list[int]:
        """Episode ids the latest recording asked for that the index does not hold yet."""
        if self.recording is None:
            return []
        first, count = int(self.recording["first_episode"]), int(self.recording["request"]["episodes"])
        recorded = {e.id for e in self.episodes}
        return [i for i in range(first, first + count) if i not in recorded]

    def progress(self) -> str:
        """'5 of 8 episodes recorded', for the latest recording."""
        asked = self.recording["request"]["episodes"] if self.recording else len(self.episodes)
        return f"{asked - len(self.missing())} of {asked} episodes recorded"

    def select(self, split: str | None = None) -> list[EpisodeEntry]:
        """Episodes of one split (None: all)."""
        if split is not None and split not in SPLITS:
            raise WorldsimError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return [e for e in self.episodes if split is None or e.split == split]

    def frames(self, split: str | None = None) -> int:
        return sum(e.frames for e in self.select(split))

    def next_episode_id(self) -> int:
        return max((e.id for e in self.episodes), default=-1) + 1

    def save(self) -> None:
        atomic_write_json(self.path, {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "info": self.info,
            "frames": self.frames(),
            "splits": {s: {"episodes": len(self.select(s)), "frames": self.frames(s)} for s in SPLITS},
            "episodes": [e.to_json() for e in self.episodes],
            "recording": self.recording,
        })

    @staticmethod
    def load(root: str | Path) -> DatasetIndex:
        root = Path(root)
        path = root / INDEX_FILE
        if not root.is_dir():
            raise WorldsimError(f"no dataset directory {root}; record one with "
                                f"`worldsim record --out {root}`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorldsimError(f"{root} is not a worldsim dataset (no {INDEX_FILE}); "
                                f"record one with `worldsim record --out DIR`") from None
        except (OSError, ValueError) as err:
            raise CorruptDataError(f"{path}: unreadable index ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptDataError(f"{path}: not a worldsim dataset index (format should be {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise WorldsimError(f"{path}: dataset format version {data.get('version')!r} is not supported; "
                                f"allowed: {FORMAT_VERSION}")
        try:
            episodes = [EpisodeEntry.from_json(e) for e in data["episodes"]]
            recording = data.get("recording")
            if recording is not None:
                request = {**recording["request"], "episodes": int(recording["request"]["episodes"])}
                recording = {"first_episode": int(recording["first_episode"]), "request": request,
                             "complete": bool(recording["complete"])}
            return DatasetIndex(root, dict(data["info"]), episodes, recording)
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptDataError(f"{path}: malformed index ({type(err).__name__}: {err})") from None


@contextlib.contextmanager
def lock_dataset(root: Path) -> Iterator[None]:
    """Hold the dataset's recording lock (creating `root`): one recorder at a time. The kernel drops the lock
    when its holder dies, so a killed recorder never blocks the next one."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as fh:
        if fcntl is None:  # not POSIX: no lock
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorldsimError(f"another worldsim process is recording into {root}; wait for it to finish, "
                                "or record elsewhere") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_leftovers(index: DatasetIndex) -> list[Path]:
    """Delete what a killed recorder left in the dataset: temporary files of dead writers, and chunks the index
    does not list (written after its last save). Call it holding `lock_dataset`: no recorder is running then."""
    removed = remove_stale_files(index.root, TEMP_FILE)
    listed = {f.name for e in index.episodes for f in e.files}
    for path in sorted(index.root.glob("ep*.npz")):
        if CHUNK_FILE.match(path.name) and path.name not in listed:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def assign_splits(episode_ids: list[int], val_fraction: float, seed: int) -> dict[int, str]:
    """Train/val by episode, deterministic from the seed: round(fraction * n) episodes (at least one when the
    fraction is positive and there are two or more episodes; never all of them) go to validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise WorldsimError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n = len(episode_ids)
    count = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED5])).permutation(n)
    val = {episode_ids[i] for i in order[:count]}
    return {i: ("val" if i in val else "train") for i in episode_ids}


# -- writing and reading episodes ----------------------------------------------------------------------------


def chunk_name(episode_id: int, chunk: int) -> str:
    return f"ep{episode_id:06d}-c{chunk:03d}.npz"


class EpisodeWriter:
    """Streams one episode into chunk files: `append` per frame (a few array copies), chunks written in the
    background by a shared `ChunkWriter`; `end` submits the last chunk, `finish` returns the index entry once
    every chunk is on disk (`written` says whether that would block)."""

    def __init__(self, root: Path, episode_id: int, seed: int, metadata: dict[str, Any],
                 frame_shape: tuple[int, int, int], action_dim: int,
                 conditions: Callable[[np.ndarray], np.ndarray], writer: ChunkWriter,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        if chunk_frames < 1:
            raise WorldsimError(f"chunk_frames must be at least 1, got {chunk_frames}")
        self.root, self.id, self.seed, self.metadata = root, episode_id, seed, metadata
        self._frame_shape, self._action_dim = frame_shape, action_dim
        self._conditions, self._writer, self._chunk_frames = conditions, writer, chunk_frames
        self._files: list[tuple[str, int, Future]] = []
        self._start = 0  # episode frame index of the current chunk's first frame
        self._new_buffers()

    def _new_buffers(self) -> None:
        # Fresh buffers per chunk: the writer thread still reads the previous ones while we fill these.
        self._frames = np.empty((self._chunk_frames, *self._frame_shape), dtype=np.uint8)
        self._actions = np.empty((self._chunk_frames, self._action_dim), dtype=np.float32)
        self._poses = np.empty((self._chunk_frames, POSE_DIM), dtype=np.float32)
        self._count = 0

    @property
    def frames(self) -> int:
        return self._start + self._count

    def append(self, frame: np.ndarray, action: np.ndarray, pose: np.ndarray) -> None:
        n = self._count
        self._frames[n] = frame
        self._actions[n] = action
        self._poses[n] = pose
        self._count = n + 1
        if self._count == self._chunk_frames:
            self._flush()

    def _flush(self) -> None:
        n = self._count
        if n == 0:
            return
        name = chunk_name(self.id, len(self._files))
        actions = self._actions[:n]
        conditions = np.asarray(self._conditions(actions), dtype=np.float32)
        arrays = {"frames": self._frames[:n], "actions": actions, "conditions": conditions,
                  "poses": self._poses[:n]}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "episode": self.id, "chunk": len(self._files),
                "start": self._start, "frames": n, "seed": self.seed, "metadata": self.metadata}
        self._files.append((name, n, self._writer.submit(self.root / name, arrays, meta)))
        self._start += n
        self._new_buffers()

    def end(self) -> None:
        """No more frames: hand the last partial chunk to the writer."""
        self._flush()

    @property
    def written(self) -> bool:
        return all(future.done() for _, _, future in self._files)

    def finish(self, split: str = "train") -> EpisodeEntry:
        self._flush()
        files = [ChunkFile(name, n, future.result()) for name, n, future in self._files]
        return EpisodeEntry(self.id, self._start, split, self.seed, files, self.metadata)

    def abort(self) -> None:
        """Drop the episode: wait for chunks in flight, then delete every chunk it wrote (none is indexed)."""
        for name, _, future in self._files:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the chunk is being deleted anyway
                pass
            (self.root / name).unlink(missing_ok=True)
        self._files.clear()


@dataclass
class Episode:
    """One episode in memory, aligned as the module docstring says."""

    id: int
    split: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T, A) float32
    conditions: np.ndarray  # (T, F) float32
    poses: np.ndarray  # (T, 3) float32
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return len(self.frames)


def read_episode(root: str | Path, entry: EpisodeEntry) -> Episode:
    """Read and check one episode's chunks; CorruptDataError names the first bad file."""
    root = Path(root)
    parts: list[dict[str, np.ndarray]] = []
    start = 0
    for number, chunk in enumerate(entry.files):
        path = root / chunk.name
        arrays, meta = read_chunk(path)
        place = (meta.get("episode"), meta.get("chunk"), meta.get("start"))
        if place != (entry.id, number, start) or len(arrays["frames"]) != chunk.frames:
            expected = (entry.id, number, start)
            raise CorruptDataError(f"{path}: holds episode/chunk/start {place} with {len(arrays['frames'])} "
                                   f"frames, the index expects {expected} with {chunk.frames}")
        if parts and any(arrays[k].shape[1:] != parts[0][k].shape[1:] for k in ARRAYS):
            raise CorruptDataError(f"{path}: array shapes differ from the episode's first chunk")
        parts.append(arrays)
        start += chunk.frames
    if not parts or start != entry.frames:
        raise CorruptDataError(f"{root / INDEX_FILE}: episode {entry.id} lists {start} frames in its chunks, "
                               f"expected {entry.frames}")
    merged = {k: parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts]) for k in ARRAYS}
    return Episode(entry.id, entry.split, merged["frames"], merged["actions"], merged["conditions"],
                   merged["poses"], entry.metadata)


def iter_episodes(root: str | Path, split: str | None = None, index: DatasetIndex | None = None,
                  entries: list[EpisodeEntry] | None = None) -> Iterator[Episode]:
    """Every readable episode of a split (or the given entries), in order; corrupt ones are skipped with a
    CorruptDataWarning. Chunks are decompressed by `LOAD_THREADS` threads ahead of the consumer (zlib runs
    without the GIL)."""
    index = index or DatasetIndex.load(root)
    entries = index.select(split) if entries is None else entries
    with ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="worldsim-load") as pool:
        ahead: deque[tuple[EpisodeEntry, Future]] = deque()
        for entry in entries:
            ahead.append((entry, pool.submit(read_episode, index.root, entry)))
            if len(ahead) > LOAD_THREADS:
                yield from _take(*ahead.popleft())
        while ahead:
            yield from _take(*ahead.popleft())


def _take(entry: EpisodeEntry, future: Future) -> Iterator[Episode]:
    try:
        yield future.result()
    except CorruptDataError as err:
        warnings.warn(f"skipping episode {entry.id}: {err}", CorruptDataWarning, stacklevel=3)


def load_episodes(root: str | Path, split: str | None = None) -> list[Episode]:
    """All readable episodes of a split in memory (see `iter_episodes`)."""
    return list(iter_episodes(root, split))
