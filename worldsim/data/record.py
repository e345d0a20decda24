"""The recording loop: an engine, a policy and the episode storage, with the alignment storage.py documents.

    frame, pose = env.reset(seed)            -> stored as frame 0 with the no-op action
    repeat: action = policy.act(frame, pose)
            frame, pose, info = env.step(action)
            stored: (frame, info.action, pose)  -> the action that produced this frame sits beside it

Episodes are seeded from (dataset seed, episode id), so the same seed records byte-identical arrays, and
appending to a dataset continues with fresh episodes instead of repeating old ones. The index is saved after
every episode: an interrupted recording keeps every finished episode and leaves no half-written one behind.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import worldsim
from worldsim.data import storage
from worldsim.data.env import Env
from worldsim.data.policies import Policy, StopRecording
from worldsim.data.storage import ChunkWriter, DatasetIndex, EpisodeWriter
from worldsim.errors import WorldsimError

COMPATIBLE_KEYS = ("engine", "resolution", "frame_skip", "encoding")  # what every episode of a dataset shares
PROGRESS_EVERY = 64  # frames between progress-bar updates (a tqdm call costs more than copying a frame)


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


def open_dataset(out: str | Path, info: dict[str, Any], append: bool) -> DatasetIndex:
    """A new dataset in a new or empty folder, or (append) the existing one if it holds the same data."""
    out = Path(out).absolute()  # writer threads must not follow a later chdir (ViZDoom's init makes one)
    if out.exists() and not out.is_dir():
        raise WorldsimError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not _is_empty_dataset(out):
        if not append:
            raise WorldsimError(f"{out} already exists and is not empty; pass --append to add episodes to "
                                f"it, or choose another --out (existing data is never overwritten)")
        index = DatasetIndex.load(out)
        diffs = [f"{k}: dataset has {index.info.get(k)!r}, this recording has {info[k]!r}"
                 for k in COMPATIBLE_KEYS if index.info.get(k) != info[k]]
        if diffs:
            raise WorldsimError(f"cannot append to {out}: {'; '.join(diffs)}")
        return index
    out.mkdir(parents=True, exist_ok=True)
    index = DatasetIndex(out, info)
    index.save()
    return index


def _is_empty_dataset(folder: Path) -> bool:
    """A dataset with no episode yet (a recording stopped during its first episode): safe to start over."""
    if {p.name for p in folder.iterdir() if not p.name.endswith(".tmp")} != {storage.INDEX_FILE}:
        return False
    try:
        return not DatasetIndex.load(folder).episodes
    except WorldsimError:
        return False


def record(env: Env, policy: Policy, out: str | Path, *, episodes: int, steps: int, seed: int,
           val_fraction: float = 0.1, append: bool = False, chunk_frames: int = storage.DEFAULT_CHUNK_FRAMES,
           progress: bool = True, background_writes: bool = True) -> DatasetIndex:
    """Record `episodes` episodes of up to `steps` steps each (steps + 1 frames; fewer if an episode ends)."""
    if episodes < 1 or steps < 1:
        raise WorldsimError(f"--episodes and --steps must be at least 1, got {episodes} and {steps}")
    if not 0.0 <= val_fraction < 1.0:
        raise WorldsimError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if chunk_frames < 1:
        raise WorldsimError(f"--chunk-frames must be at least 1, got {chunk_frames}")
    index = open_dataset(out, dataset_info(env), append)
    first = index.next_episode_id()
    ids = list(range(first, first + episodes))
    splits = storage.assign_splits(ids, val_fraction, seed)
    scheme = env.scheme
    no_op = np.zeros(len(scheme.control_names), dtype=np.float32)
    width, height = env.resolution
    shared = {**env.metadata(), "scheme": scheme.name, "encoding": scheme.encoding_dict(),
              "policy": policy.metadata(), "dataset_seed": seed, "worldsim_version": worldsim.__version__}

    # Finished episodes wait here until their chunks are on disk, so the next episode records meanwhile; they
    # enter the index in order, each followed by an atomic index save.
    finished: deque[tuple[EpisodeWriter, str]] = deque()

    def settle(wait: bool) -> None:
        while finished and (wait or finished[0][0].written):
            writer, split = finished.popleft()
            index.episodes.append(writer.finish(split))
            index.save()

    with ChunkWriter(background=background_writes) as chunks, \
            tqdm(total=episodes * (steps + 1), unit="frame", disable=not progress, desc="record") as bar:
        try:
            for episode_id in ids:
                ep_seed = episode_seed(seed, episode_id)
                metadata = {**shared, "seed": ep_seed, "steps": steps}
                writer = EpisodeWriter(index.root, episode_id, ep_seed, metadata, (height, width, 3),
                                       len(no_op), scheme.encoding.frame_vectors, chunks, chunk_frames)
                try:
                    stop = _play_episode(env, policy, writer, ep_seed, steps, no_op, bar)
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
    return index


def _play_episode(env: Env, policy: Policy, writer: EpisodeWriter, seed: int, steps: int, no_op: np.ndarray,
                  bar: tqdm) -> bool:
    """One episode into `writer`; returns True when the player asked to stop recording."""
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
        if writer.frames % PROGRESS_EVERY == 0:
            bar.update(PROGRESS_EVERY)
    bar.update(writer.frames % PROGRESS_EVERY)
    return stop
