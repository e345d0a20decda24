"""The recording loop: an engine, a policy and the episode storage, with the alignment storage.py documents.

    frame, pose = env.reset(seed)            -> stored as frame 0 with the no-op action
    repeat: action = policy.act(frame, pose)
            frame, pose, info = env.step(action)
            stored: (frame, info.action, pose)  -> the action that produced this frame sits beside it

Episodes are seeded from (dataset seed, episode id), so the same seed records byte-identical arrays, and
appending to a dataset continues with fresh episodes instead of repeating old ones. The index is saved after
every episode: an interrupted recording keeps every finished episode and leaves no half-written one behind, and
running the same command again records the episode ids it lacks, which gives the data (and the train/val split)
of an uninterrupted run.

With `workers` > 1 the episodes are recorded by that many processes (spawned, each with its own engine and
explorer built from a `RecorderSpec`), which write their episodes' chunks; the parent alone holds the lock and the
index, adding each finished episode in episode-id order. Since every episode depends only on its own seed, the
data are those of one process.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import worldsim
from worldsim.data import storage
from worldsim.data.env import Env, make_env
from worldsim.data.policies import ExploreConfig, ExplorePolicy, Policy, StopRecording
from worldsim.data.storage import ChunkWriter, DatasetIndex, EpisodeWriter
from worldsim.errors import WorldsimError

COMPATIBLE_KEYS = ("engine", "resolution", "frame_skip", "encoding")  # what every episode of a dataset shares
PROGRESS_EVERY = 64  # frames between progress-bar updates (a tqdm call costs more than copying a frame)


@dataclass(frozen=True)
class RecorderSpec:
    """What a recording worker process builds its own engine and scripted explorer from (sent to it pickled)."""

    engine: str = "doom"
    config: str | None = None  # the engine's config name or path (None: its default world)
    scheme: str = "camera"  # a scheme name or YAML path
    explore: ExploreConfig | None = None

    def build(self) -> tuple[Env, Policy]:
        from worldsim.conditioning import load_scheme

        scheme = load_scheme(self.scheme)
        return make_env(self.engine, self.config, scheme), ExplorePolicy(scheme, self.explore)


def dataset_info(env: Env) -> dict[str, Any]:
    """Dataset-wide facts that every episode must share (checked when appending)."""
    scheme = env.scheme
    return {
        "engine": env.metadata()["engine"],
        "resolution": list(env.resolution),
        "frame_skip": env.frame_skip,
        "scheme": scheme.name,
        "encoding": scheme.encoding_dict(),
        "controls": list(scheme.control_names),
        "worldsim_version": worldsim.__version__,
    }


def episode_seed(dataset_seed: int, episode_id: int) -> int:
    return int(np.random.SeedSequence([dataset_seed, episode_id]).generate_state(1)[0])


def recording_request(env: Env, policy: Policy, episodes: int, steps: int, seed: int,
                      val_fraction: float) -> dict[str, Any]:
    """What decides a recording's data (as JSON): a rerun with the same request continues an unfinished
    recording; a rerun with another one is refused."""
    request = {"episodes": episodes, "steps": steps, "seed": seed, "val_fraction": val_fraction,
               "policy": policy.metadata(), "env": env.metadata()}
    return json.loads(json.dumps(request))


def open_dataset(out: str | Path, info: dict[str, Any], request: dict[str, Any], append: bool) -> DatasetIndex:
    """Call holding `storage.lock_dataset`. A new dataset (in a new or empty folder, or over a dataset whose
    recording stopped during its first episode); the unfinished recording of the same request, to continue; or
    (append) a finished dataset of the same data, with `request` as its next recording."""
    out = Path(out).absolute()  # writer threads must not follow a later chdir (ViZDoom's init makes one)
    index = DatasetIndex.load(out) if (out / storage.INDEX_FILE).exists() else None
    if index is not None:
        storage.remove_leftovers(index)
    if index is None or not index.episodes:
        index = DatasetIndex(out, info, recording={"first_episode": 0, "request": request, "complete": False})
        index.save()
        return index
    diffs = [f"{k}: {index.info.get(k)!r} in the dataset, {info[k]!r} now"
             for k in COMPATIBLE_KEYS if index.info.get(k) != info[k]]
    if not index.complete:
        done = index.progress()
        if append:
            raise WorldsimError(f"{out} holds an unfinished recording ({done}); finish it first by running the "
                                "command that started it again, without --append")
        diffs += _differences(index.recording["request"], request)
        if diffs:
            raise WorldsimError(f"{out} holds an unfinished recording ({done}) made with other arguments: "
                                f"{'; '.join(diffs)}. Run it again with the same arguments to finish it, or "
                                "choose another --out")
        return index
    if not append:
        raise WorldsimError(f"{out} already exists and is not empty; pass --append to add episodes to "
                            f"it, or choose another --out (existing data is never overwritten)")
    if diffs:
        raise WorldsimError(f"cannot append to {out}: {'; '.join(diffs)}")
    index.recording = {"first_episode": index.next_episode_id(), "request": request, "complete": False}
    index.save()
    return index


def _differences(old: Any, new: Any, key: str = "") -> list[str]:
    """'steps: 30 in the dataset, 40 now' for every leaf that differs between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(old.keys() | new.keys())
                for d in _differences(old.get(k), new.get(k), f"{key}.{k}" if key else k)]
    return [] if old == new else [f"{key}: {old!r} in the dataset, {new!r} now"]


def _check_target(out: Path, append: bool) -> None:
    """Refuse a file, or a folder of someone else's files, before anything is written into it."""
    if out.exists() and not out.is_dir():
        raise WorldsimError(f"--out {out} is a file, not a directory")
    if not out.is_dir() or (out / storage.INDEX_FILE).exists():
        return
    # Only the lock or a temporary file (a recording killed at its start) may be there already.
    if any(p.name != storage.LOCK_FILE and not storage.TEMP_FILE.match(p.name) for p in out.iterdir()):
        if append:
            DatasetIndex.load(out)  # raises: not a worldsim dataset
        raise WorldsimError(f"{out} already exists and is not empty; pass --append to add episodes to "
                            f"it, or choose another --out (existing data is never overwritten)")


def record(env: Env, policy: Policy, out: str | Path, *, episodes: int, steps: int, seed: int,
           val_fraction: float = 0.1, append: bool = False, chunk_frames: int = storage.DEFAULT_CHUNK_FRAMES,
           progress: bool = True, background_writes: bool = True, workers: int = 1,
           spec: RecorderSpec | None = None) -> DatasetIndex:
    """Record `episodes` episodes of up to `steps` steps each (steps + 1 frames; fewer if an episode ends).
    Into a folder that holds an unfinished recording of the same arguments, records the episodes it lacks.
    `workers` > 1 records in that many processes, each building the engine and explorer `spec` describes (`env`
    and `policy`, which must be what `spec` builds, then only describe the recording)."""
    if episodes < 1 or steps < 1:
        raise WorldsimError(f"--episodes and --steps must be at least 1, got {episodes} and {steps}")
    if workers < 1:
        raise WorldsimError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and spec is None:
        raise WorldsimError("recording in several processes needs the scripted explorer (not --input keyboard)")
    if not 0.0 <= val_fraction < 1.0:
        raise WorldsimError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if chunk_frames < 1:
        raise WorldsimError(f"--chunk-frames must be at least 1, got {chunk_frames}")
    root = Path(out).absolute()
    _check_target(root, append)
    request = recording_request(env, policy, episodes, steps, seed, val_fraction)
    with storage.lock_dataset(root):
        index = open_dataset(root, dataset_info(env), request, append)
        if workers > 1:
            _record_missing_in_workers(env, policy, index, chunk_frames, progress, workers, spec)
        else:
            _record_missing(env, policy, index, chunk_frames, progress, background_writes)
    return index


def _plan(env: Env, policy: Policy, index: DatasetIndex) -> tuple[list[int], dict[int, str], dict[str, Any]]:
    """The episode ids the index's recording lacks, the split of every episode id, and the metadata every
    episode shares (the per-episode metadata adds its seed and steps)."""
    recording = index.recording
    first, request = recording["first_episode"], recording["request"]
    seed, episodes = request["seed"], request["episodes"]
    ids = index.missing()
    if len(ids) < episodes:
        print(f"{index.root}: continuing an interrupted recording ({index.progress()})", file=sys.stderr)
    # Split the whole recording, not what is left of it: a continued recording splits as an uninterrupted one.
    splits = storage.assign_splits(list(range(first, first + episodes)), request["val_fraction"], seed)
    scheme = env.scheme
    shared = {**env.metadata(), "scheme": scheme.name, "encoding": scheme.encoding_dict(),
              "policy": policy.metadata(), "dataset_seed": seed, "worldsim_version": worldsim.__version__}
    return ids, splits, shared


def _new_writer(env: Env, root: Path, episode_id: int, shared: dict[str, Any], steps: int, chunks: ChunkWriter,
                chunk_frames: int) -> EpisodeWriter:
    ep_seed = episode_seed(shared["dataset_seed"], episode_id)
    width, height = env.resolution
    return EpisodeWriter(root, episode_id, ep_seed, {**shared, "seed": ep_seed, "steps": steps}, (height, width, 3),
                         len(env.scheme.control_names), env.scheme.encoding.frame_vectors, chunks, chunk_frames)


def _record_missing(env: Env, policy: Policy, index: DatasetIndex, chunk_frames: int, progress: bool,
                    background_writes: bool) -> None:
    """Record the episodes the index's recording lacks, then mark the recording complete."""
    recording = index.recording
    steps = recording["request"]["steps"]
    ids, splits, shared = _plan(env, policy, index)

    # Finished episodes wait here until their chunks are on disk, so the next episode records meanwhile; they
    # enter the index in order, each followed by an atomic index save.
    finished: deque[tuple[EpisodeWriter, str]] = deque()

    def settle(wait: bool) -> None:
        while finished and (wait or finished[0][0].written):
            writer, split = finished.popleft()
            index.episodes.append(writer.finish(split))
            index.episodes.sort(key=lambda e: e.id)  # (a recording continued after several workers left gaps)
            index.save()

    with ChunkWriter(background=background_writes) as chunks, \
            tqdm(total=len(ids) * (steps + 1), unit="frame", disable=not progress, desc="record") as bar:
        try:
            for episode_id in ids:
                writer = _new_writer(env, index.root, episode_id, shared, steps, chunks, chunk_frames)
                try:
                    stop = _play_episode(env, policy, writer, writer.seed, steps, bar)
                except BaseException:
                    writer.abort()  # a partial episode is dropped, never indexed
                    raise
                if writer.frames >= 2:  # a single frame has no transition to learn from
                    writer.end()
                    finished.append((writer, splits[episode_id]))
                else:
                    writer.abort()
                settle(wait=False)
                if stop:
                    break
        finally:
            settle(wait=True)  # finished episodes are kept even when recording stops on an error or Ctrl-C
    recording["complete"] = True  # saved last: a recording killed before this is continued by a rerun
    index.save()


def _record_missing_in_workers(env: Env, policy: Policy, index: DatasetIndex, chunk_frames: int, progress: bool,
                               workers: int, spec: RecorderSpec) -> None:
    """`_record_missing` with the episodes played by `workers` spawned processes; this one keeps the index."""
    steps = index.recording["request"]["steps"]
    ids, splits, shared = _plan(env, policy, index)
    tasks = [(str(index.root), episode_id, splits[episode_id], shared, steps, chunk_frames) for episode_id in ids]
    if tasks:
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)), _worker_start, (spec,))
        finished = False
        try:
            with tqdm(total=len(ids) * (steps + 1), unit="frame", disable=not progress, desc="record") as bar:
                for entry in pool.imap_unordered(_worker_episode, tasks):
                    if entry is not None:
                        index.episodes.append(storage.EpisodeEntry.from_json(entry))
                        index.episodes.sort(key=lambda e: e.id)  # as one process would have listed them
                        index.save()
                        bar.update(entry["frames"])
            finished = True
        finally:
            if finished:
                pool.close()  # the workers close their engines and exit
            else:
                pool.terminate()  # an error or Ctrl-C: the finished episodes are in the index already
            pool.join()
            if not finished:
                storage.remove_leftovers(index)  # chunks of the episodes that were being played
    index.recording["complete"] = True  # saved last, as in `_record_missing`
    index.save()


# A recording worker process's engine, explorer and chunk writer, kept between its episodes (or what went wrong
# when building them: raised by its first task, since an initializer that raises makes the pool respawn forever).
_worker: tuple[Env, Policy, ChunkWriter] | BaseException | None = None


def _worker_start(spec: RecorderSpec) -> None:
    global _worker
    try:
        env, policy = spec.build()
        _worker = (env, policy, ChunkWriter())
    except Exception as err:  # noqa: BLE001 - handed to the parent by the first task
        _worker = err


def _worker_episode(task: tuple) -> dict[str, Any] | None:
    """Play one episode in a worker; its index entry as JSON (None: too short to keep)."""
    root, episode_id, split, shared, steps, chunk_frames = task
    try:
        if isinstance(_worker, BaseException):
            raise _worker
        env, policy, chunks = _worker
        writer = _new_writer(env, Path(root), episode_id, shared, steps, chunks, chunk_frames)
        try:
            _play_episode(env, policy, writer, writer.seed, steps, None)
            if writer.frames < 2:
                writer.abort()
                return None
            writer.end()
            return writer.finish(split).to_json()
        except BaseException:
            writer.abort()
            raise
    except WorldsimError as err:  # (its subclasses may not unpickle in the parent)
        raise WorldsimError(str(err)) from None


def _play_episode(env: Env, policy: Policy, writer: EpisodeWriter, seed: int, steps: int,
                  bar: tqdm | None) -> bool:
    """One episode into `writer`; returns True when the player asked to stop recording."""
    no_op = np.zeros(len(env.scheme.control_names), dtype=np.float32)
    frame, pose = env.reset(seed)
    policy.reset(seed)
    writer.append(frame, no_op, pose)
    stop = False
    for _ in range(steps):
        try:
            action = policy.act(frame, pose)
        except StopRecording:
            stop = True
            break
        frame, pose, info = env.step(action)
        if info.done:  # the engine ended the episode during this step: there is no new frame
            break
        writer.append(frame, info.action, pose)
        if bar is not None and writer.frames % PROGRESS_EVERY == 0:
            bar.update(PROGRESS_EVERY)
    if bar is not None:
        bar.update(writer.frames % PROGRESS_EVERY)
    return stop
