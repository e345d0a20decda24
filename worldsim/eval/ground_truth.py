"""Held-out engine ground truth: action sequences no model trained on, played in ViZDoom and recorded once.

The sequences come from the scripted explorer (`ExplorePolicy`) under a validation seed (10_000 by default;
training data sets use small seeds such as 0, and episode seeds are hashed from (dataset seed, episode id),
so the two never share an episode). They are recorded by the same `record()` as training data: a ground-truth
folder is an ordinary worldsim dataset (`load_episodes` reads it) plus `ground_truth.json`, what it is for.

The folder is recorded under a temporary name and renamed when complete. A later evaluation asking for the
same world, scheme, explorer and seed reuses it; fewer episodes or frames are a prefix of it (engine and
explorer are deterministic), so several checkpoints are judged on the very same frames, recorded once.
Asking for more re-records a larger superset in its place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from worldsim.conditioning.scheme import Scheme
from worldsim.config import rng, to_dict
from worldsim.data.storage import Episode, atomic_write_json, load_episodes
from worldsim.errors import WorldsimError

DEFAULT_SEED = 10_000  # far from the seeds training data sets are recorded with (0, 1, ...)
SPEC_FILE = "ground_truth.json"


@dataclass(frozen=True)
class GroundTruthSpec:
    seed: int = DEFAULT_SEED
    episodes: int = field(default=4, metadata=rng(1, 100_000))
    frames: int = field(default=1440, metadata=rng(1, 10_000_000))  # steps; each episode holds frames + 1
    doom: str | None = None  # a shipped Doom config name or a YAML path; None: the shipped world


def _identity(spec: GroundTruthSpec, scheme: Scheme) -> dict:
    """What a reused recording must share with the one asked for (counts may be smaller)."""
    from worldsim.data.doom import load_config
    from worldsim.data.env import resolve_config
    from worldsim.data.policies import ExploreConfig

    return {"seed": spec.seed, "doom": to_dict(load_config(resolve_config("doom", spec.doom))),
            "encoding": scheme.action_space(), "explorer": to_dict(ExploreConfig())}


def load_ground_truth(directory: str | Path, spec: GroundTruthSpec, scheme: Scheme,
                      progress: bool = True) -> list[Episode]:
    """The spec's episodes, `spec.frames + 1` frames each at engine resolution, recorded into `directory`
    unless a recording there already covers them."""
    directory = Path(directory)
    identity = _identity(spec, scheme)
    recorded = _read_spec(directory)
    if recorded is not None:
        differs = [f"{k}: recorded {recorded['identity'].get(k)!r}, asked {v!r}"
                   for k, v in identity.items() if recorded["identity"].get(k) != v]
        if differs:
            raise WorldsimError(f"the ground truth in {directory} was recorded for something else "
                                f"({'; '.join(differs)}); pass another --ground-truth folder or delete it")
    if recorded is None or recorded["episodes"] < spec.episodes or recorded["frames"] < spec.frames:
        old = recorded or {"episodes": 0, "frames": 0}  # keep covering what earlier evaluations used
        _record(directory, spec.seed, max(spec.episodes, old["episodes"]), max(spec.frames, old["frames"]),
                spec.doom, scheme, identity, progress)
    episodes = sorted(load_episodes(directory), key=lambda e: e.id)[: spec.episodes]
    short = [e for e in episodes if len(e) < spec.frames + 1]
    if len(episodes) < spec.episodes or short:
        detail = (f"episode {short[0].id} ended after {len(short[0]) - 1} steps" if short
                  else "too few episodes")
        raise WorldsimError(f"the ground truth in {directory} is shorter than asked ({detail}); ask for "
                            "fewer --frames or use a Doom config without an episode timeout")
    for episode in episodes:
        episode.frames = episode.frames[: spec.frames + 1]
        episode.actions = episode.actions[: spec.frames + 1]
        episode.poses = episode.poses[: spec.frames + 1]
    return episodes


def _read_spec(directory: Path) -> dict | None:
    if not directory.exists():
        return None
    try:
        data = json.loads((directory / SPEC_FILE).read_text())
        return {"identity": dict(data["identity"]), "episodes": int(data["episodes"]),
                "frames": int(data["frames"])}
    except (OSError, ValueError, KeyError, TypeError):
        raise WorldsimError(f"{directory} exists but is not a ground-truth recording (no readable "
                            f"{SPEC_FILE}); pass another --ground-truth folder") from None


def _record(directory: Path, seed: int, episodes: int, frames: int, doom: str | None, scheme: Scheme,
            identity: dict, progress: bool) -> None:
    from worldsim.data.env import make_env
    from worldsim.data.policies import ExplorePolicy
    from worldsim.data.record import record

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the recording is ordinary data
    try:
        env = make_env("doom", doom, scheme)
        try:
            # val_fraction 0: the split label is irrelevant here; the seed is what keeps these frames held out
            record(env, ExplorePolicy(scheme, seed=seed), tmp, episodes=episodes, steps=frames, seed=seed,
                   val_fraction=0.0, progress=progress)
        finally:
            env.close()
        atomic_write_json(tmp / SPEC_FILE, {"identity": identity, "episodes": episodes, "frames": frames,
                                            "note": "held-out evaluation sequences: never train on them"})
        if directory.exists():  # a smaller recording: its sequences are a prefix of this one
            shutil.rmtree(directory)
        tmp.replace(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
