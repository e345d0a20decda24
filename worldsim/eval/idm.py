"""The inverse-dynamics judge: a small conv net that tells, from two consecutive frames, how the player moved.

It is trained on real engine frames only, so it judges generated frames by the engine's standard: if a world
model follows the commanded action, the IDM reads that action back from the generated pair of frames.

What it predicts: for each motion axis (forward, strafe, yaw) one of three buckets: negative (back, left),
none, positive (forward, right). Camera actions are bucketed with a dead-zone (|value| < DEAD_ZONE is none:
the explorer's slight drift while walking straight is no decision); keys actions by which of two opposing keys
is held. USE is not judged: a door opens frames later, not between two frames. Doom's momentum also carries
motion a few frames past a released key; the IDM's accuracy on real validation frames (saved with it) is the
ceiling any world model can reach.

Input: frame t-1, frame t and their difference, at the IDM's resolution; frames of another size are resized
with an area filter, so one IDM can judge worlds of several resolutions. Its penultimate layer is the feature
space of the Fréchet distance (worldsim/eval/evaluate.py).

Saved as a directory like a checkpoint: `idm.safetensors` and `config.yaml` (model config, encoding, training
settings, accuracy on real validation frames).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from worldsim.checkpoint import swap_in_directory
from worldsim.conditioning.scheme import action_space, parse_encoding
from worldsim.config import ConfigError, from_dict, load_yaml, rng, to_dict
from worldsim.errors import WorldsimError

FORMAT = "worldsim-idm"
VERSION = 1
MOTION_AXES = ("forward", "strafe", "yaw")
BUCKETS = 3  # 0: negative (back, left), 1: none, 2: positive (forward, right)
NONE_BUCKET = 1
DEAD_ZONE = 0.2  # |camera command| below this is "none": a fifth of a full command, the explorer's drift
# keys scheme: axis -> (the key that moves it positive, the key that moves it negative)
KEY_AXES = {"forward": ("forward", "back"), "strafe": ("strafe_right", "strafe_left"),
            "yaw": ("turn_right", "turn_left")}
INFERENCE_BATCH = 128
# Consecutive frames differ by a few grey levels where the view moves; amplified, the difference reaches the
# first layer at the scale of the frames themselves.
DIFFERENCE_GAIN = 4.0


def motion_buckets(actions: np.ndarray, encoding: dict) -> np.ndarray:
    """Recorded or commanded actions (N, A) -> (N, 3) int64 buckets for forward, strafe, yaw."""
    config = parse_encoding(encoding)
    actions = np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)
    if config.type in ("camera", "world"):  # control order forward, strafe, yaw, use (CameraEncoding)
        values = actions[:, :3]
    else:
        names = list(config.actions)

        def held(name: str) -> np.ndarray:
            return (actions[:, names.index(name)] > 0.5 if name in names else np.zeros(len(actions), bool))

        values = np.stack([held(pos).astype(np.float32) - held(neg) for pos, neg in KEY_AXES.values()], 1)
    return np.where(values > DEAD_ZONE, 2, np.where(values < -DEAD_ZONE, 0, NONE_BUCKET)).astype(np.int64)


def agreement_summary(hits: np.ndarray) -> dict[str, float]:
    """(N, 3) bool hits -> fraction right on all three axes at once ("all") and per axis."""
    if len(hits) == 0:
        return {"all": math.nan, **dict.fromkeys(MOTION_AXES, math.nan)}
    per_axis = {axis: float(hits[:, i].mean()) for i, axis in enumerate(MOTION_AXES)}
    return {"all": float(hits.all(1).mean()), **per_axis}


# ---- the network ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IDMConfig:
    image_size: tuple[int, int] = (96, 128)  # (height, width) it looks at; the shipped world's resolution
    channels: tuple[int, ...] = (32, 64, 96, 128)  # one stride-2 conv per entry
    pool: tuple[int, int] = (3, 4)  # coarse layout kept before the head: walking expands, turning shifts
    feature_dim: int = field(default=64, metadata=rng(2, 4096))  # the Fréchet feature space


class InverseDynamics(nn.Module):
    def __init__(self, config: IDMConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = 9  # previous frame, current frame, their difference
        for out in config.channels:
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.GroupNorm(1, out),
                       nn.SiLU()]
            width = out
        self.convs = nn.Sequential(*layers)
        self.features_out = nn.Linear(width * config.pool[0] * config.pool[1], config.feature_dim)
        self.head = nn.Linear(config.feature_dim, len(MOTION_AXES) * BUCKETS)

    def features(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, H, W) in [-1, 1] -> features (B, feature_dim)."""
        size = tuple(self.config.image_size)
        if tuple(previous.shape[-2:]) != size:
            previous, current = (F.interpolate(x, size=size, mode="area") for x in (previous, current))
        difference = DIFFERENCE_GAIN * (current - previous)
        x = self.convs(torch.cat([previous, current, difference], 1))  # (B, C, h, w)
        x = F.adaptive_avg_pool2d(x, self.config.pool).flatten(1)  # (B, C * pool)
        return F.silu(self.features_out(x))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).view(-1, len(MOTION_AXES), BUCKETS)  # (B, 3 axes, 3 buckets)

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(previous, current))


def _unit(frames: np.ndarray | torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 frames -> float (B, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    x = x.permute(0, 3, 1, 2) if channels_last else x
    return x.float().div(127.5).sub(1.0)


@dataclass
class IDM:
    """A trained judge: the network, the encoding its buckets refer to, and what it scored on real frames."""

    model: InverseDynamics
    encoding: dict
    metrics: dict = field(default_factory=dict)
    path: Path | None = None

    @torch.inference_mode()
    def judge(self, previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, H, W, 3) frame pairs -> (decisions (N, 3) int64 buckets, features (N, feature_dim))."""
        self.model.eval()
        decisions = [np.zeros((0, len(MOTION_AXES)), np.int64)]
        features = [np.zeros((0, self.model.config.feature_dim), np.float32)]
        for i in range(0, len(current), INFERENCE_BATCH):
            f = self.model.features(_unit(previous[i: i + INFERENCE_BATCH], True),
                                    _unit(current[i: i + INFERENCE_BATCH], True))
            decisions.append(self.model.logits(f).argmax(-1).numpy())
            features.append(f.float().numpy())
        return np.concatenate(decisions), np.concatenate(features)

    def check_encoding(self, encoding: dict, what: str) -> None:
        """Refuse to judge a world whose actions mean something else than the IDM's training data."""
        if action_space(encoding) == action_space(self.encoding):  # a world encoding plays the camera's actions
            return
        keys = sorted(set(encoding) | set(self.encoding))
        diffs = [f"{k}: IDM has {self.encoding.get(k)!r}, {what} has {encoding.get(k)!r}"
                 for k in keys if encoding.get(k) != self.encoding.get(k)]
        raise WorldsimError(f"the IDM at {self.path} was trained for another encoding than {what} "
                            f"({'; '.join(diffs)}); train one on data recorded with the same scheme")


# ---- training data ----------------------------------------------------------------------------------------


@dataclass
class PairData:
    """Consecutive frame pairs of recorded episodes at the IDM's resolution: frames[t - 1], frames[t] and the
    buckets of actions[t] (the action that produced frames[t])."""

    frames: torch.Tensor  # (N, 3, h, w) uint8, episodes back to back
    buckets: torch.Tensor  # (N, 3) int64; row t labels the pair (t - 1, t)
    pairs: torch.Tensor  # (P,) the indices t whose frame t - 1 belongs to the same episode

    @staticmethod
    def from_episodes(episodes: Iterable, image_size: tuple[int, int], encoding: dict) -> PairData:
        """Episodes are resized one at a time, so an iterator keeps only one raw episode in memory."""
        from worldsim.data.dataset import resize_frames

        height, width = image_size
        frames, buckets, pairs, start = [], [], [], 0
        for episode in episodes:
            frames.append(torch.from_numpy(resize_frames(episode.frames, (width, height), channels_first=True)))
            buckets.append(torch.from_numpy(motion_buckets(episode.actions, encoding)))
            pairs.append(torch.arange(start + 1, start + len(episode)))
            start += len(episode)
        if not frames or not sum(len(p) for p in pairs):
            raise WorldsimError("no frame pairs to train or validate the IDM on")
        return PairData(torch.cat(frames), torch.cat(buckets), torch.cat(pairs))

    @staticmethod
    def from_dataset(root: str | Path, split: str, image_size: tuple[int, int],
                     max_frames: int) -> tuple[PairData, dict]:
        """The split's episodes in order, up to `max_frames` frames (memory); returns (data, encoding)."""
        from worldsim.data.storage import DatasetIndex, iter_episodes

        index = DatasetIndex.load(root)
        encoding = index.info.get("encoding")
        if not isinstance(encoding, dict):
            raise WorldsimError(f"{root}: the dataset records no encoding; re-record it with worldsim record")
        entries, total = [], 0
        for entry in index.select(split):
            if total >= max_frames:
                break
            entries.append(entry)
            total += entry.frames

        def truncated():
            taken = 0
            for episode in iter_episodes(root, index=index, entries=entries):
                keep = min(len(episode), max_frames - taken)
                if keep < 2:
                    return
                episode.frames, episode.actions = episode.frames[:keep], episode.actions[:keep]
                taken += keep
                yield episode

        try:
            return PairData.from_episodes(truncated(), image_size, encoding), encoding
        except WorldsimError:
            raise WorldsimError(f"{root}: no readable {split} episodes for the IDM") from None

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.pairs[index]
        return _unit(self.frames[t - 1], False), _unit(self.frames[t], False), self.buckets[t]

    def subset(self, n: int) -> PairData:
        """`n` pairs spread evenly over the data (a cheap accuracy estimate on the training split)."""
        keep = torch.linspace(0, len(self.pairs) - 1, min(n, len(self.pairs))).long()
        return PairData(self.frames, self.buckets, self.pairs[keep])

    def none_fraction(self) -> dict[str, float]:
        """How often each axis is "none" in the labels: the score of a judge that always answers "none"."""
        labels = self.buckets[self.pairs]
        none = (labels == NONE_BUCKET).float().mean(0)
        return {axis: float(none[i]) for i, axis in enumerate(MOTION_AXES)}


# ---- training ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IDMTrainConfig:
    steps: int = field(default=2000, metadata=rng(0, 10_000_000))
    batch: int = field(default=64, metadata=rng(1, 65536))
    lr: float = field(default=1e-3, metadata=rng(0.0, 1.0))
    weight_decay: float = field(default=0.01, metadata=rng(0.0, 10.0))
    max_train_frames: int = field(default=30_000, metadata=rng(2, 100_000_000))  # 1.1 GB at 96x128
    max_val_frames: int = field(default=4096, metadata=rng(2, 100_000_000))
    seed: int = 0


def fit(model: InverseDynamics, data: PairData, config: IDMTrainConfig,
        progress: bool = False) -> list[float]:
    """Cross-entropy over the three axes on random pairs; returns every step's loss."""
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine to zero: the last steps settle instead of jitter
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / max(config.steps, 1))))
    model.train()
    losses = []
    for _ in tqdm(range(config.steps), desc="idm", disable=not progress, unit="step"):
        index = torch.randint(0, len(data.pairs), (config.batch,), generator=gen)
        previous, current, target = data.batch(index)
        loss = F.cross_entropy(model(previous, current).flatten(0, 1), target.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.inference_mode()
def accuracy(model: InverseDynamics, data: PairData) -> dict[str, float]:
    """Fraction of pairs whose bucket the IDM gets right, on all three axes at once and per axis."""
    model.eval()
    hits = []
    for i in range(0, len(data.pairs), INFERENCE_BATCH):
        previous, current, target = data.batch(torch.arange(i, min(i + INFERENCE_BATCH, len(data.pairs))))
        hits.append(model(previous, current).argmax(-1) == target)
    return agreement_summary(torch.cat(hits).numpy())


def train_idm(data: str | Path, out: str | Path, config: IDMConfig = IDMConfig(),
              train: IDMTrainConfig = IDMTrainConfig(), progress: bool = True) -> IDM:
    """Train an IDM on a recorded dataset's train split, score it on its val split (the ceiling of action
    agreement), save it to `out` and return it."""
    torch.manual_seed(train.seed)
    start = time.perf_counter()
    train_data, encoding = PairData.from_dataset(data, "train", config.image_size, train.max_train_frames)
    try:
        val_data, _ = PairData.from_dataset(data, "val", config.image_size, train.max_val_frames)
    except WorldsimError:
        raise WorldsimError(f"{data}: the IDM needs a val split for its ceiling; record the dataset with "
                            "--val-fraction > 0") from None
    model = InverseDynamics(config)
    losses = fit(model, train_data, train, progress)
    idm = IDM(model, encoding, {
        "val_accuracy": accuracy(model, val_data),
        "train_accuracy": accuracy(model, train_data.subset(len(val_data.pairs))),
        "val_none_fraction": val_data.none_fraction(),
        "final_loss": float(np.mean(losses[-50:])) if losses else math.nan,
        "train_pairs": len(train_data.pairs), "val_pairs": len(val_data.pairs),
        "data": str(data), "seconds": round(time.perf_counter() - start, 1)})
    idm.path = save_idm(idm, out, train)
    return idm


# ---- files ------------------------------------------------------------------------------------------------


def save_idm(idm: IDM, out: str | Path, train: IDMTrainConfig | None = None) -> Path:
    """Write the IDM directory atomically: a temporary directory renamed into place."""
    out = Path(out)
    if out.exists() and not (out / "config.yaml").exists() and (not out.is_dir() or any(out.iterdir())):
        raise WorldsimError(f"{out} exists and is not an IDM directory; choose another --idm path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is ordinary data
    try:
        weights = {k: v.contiguous() for k, v in idm.model.state_dict().items()}
        save_file(weights, str(tmp / "idm.safetensors"))
        config = {"format": FORMAT, "version": VERSION, "model": to_dict(idm.model.config),
                  "encoding": idm.encoding, "training": to_dict(train) if train else {},
                  "metrics": idm.metrics}
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        swap_in_directory(tmp, out)  # the old IDM is removed only once the new one is in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_idm(path: str | Path) -> IDM:
    """Load an IDM directory (safetensors only); every problem is a WorldsimError naming the file."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise WorldsimError(f"{path}: not an IDM directory (no config.yaml); train one with "
                            f"`worldsim eval --train-idm --data DATASET --idm {path}`")
    data = load_yaml(path / "config.yaml")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(path / "config.yaml", "format", "not an IDM config", None, repr(FORMAT))
    config = from_dict(IDMConfig, data.get("model", {}), file=path / "config.yaml", path="model")
    encoding = data.get("encoding")
    parse_encoding(encoding, path / "config.yaml", "encoding")
    model = InverseDynamics(config)
    try:
        weights = load_file(str(path / "idm.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WorldsimError(f"{path / 'idm.safetensors'}: missing or unreadable ({err})") from None
    expected = model.state_dict()
    if set(weights) != set(expected) or any(weights[k].shape != expected[k].shape for k in expected):
        raise WorldsimError(f"{path / 'idm.safetensors'}: weights do not match config.yaml")
    model.load_state_dict(weights)
    return IDM(model.eval(), encoding, dict(data.get("metrics") or {}), path)
