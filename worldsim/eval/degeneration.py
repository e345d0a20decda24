"""A no-reference degeneration detector: has a generated frame stopped looking like the world?

No aligned ground truth is needed (a player's session has none): each frame is described by a few cues of how
degenerated video looks, and compared with the engine's own frames of the same world.

Cues of one frame (`frame_cues`, all computed on the luma or RGB of the frame alone):
    streaks      share of 16x16 tiles (smaller in tiny worlds) whose vertical gradient is >= 2.5x their
                 horizontal one (horizontal streaks; the failure of the first shipped worlds)
    flat         share of tiles with almost no gradient (blotches and blur)
    saturated    share of pixels with a channel at 0-4 or 251-255 (blown-out colour)
    gradient     log mean |d/dx| and |d/dy| of the luma (detail, and its direction)
    laplacian    log mean |Laplacian| (fine texture)
    colours      a 4x4x4 RGB histogram, square-rooted (its distances are Hellinger distances)

Streaks alone are not degeneration: MAP01 has walls of white light panels that are nothing but horizontal lines.
So the detector asks whether the *combination* is unlike every real frame: its score is the distance from the
frame's cues to the k-th nearest real frame in a reference bank (engine frames of the world, cues standardised).
The threshold is fitted on the bank itself, leaving each reference episode out in turn: a margin (1.25x) over the
99th percentile of what real frames of an unseen episode score. The detector fires when `persistence` frames in a
row score above threshold: a single odd frame is not a collapse, half a second of them is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from worldsim.config import rng
from worldsim.errors import WorldsimError
from worldsim.eval.metrics import luma

TILE = 16  # pixels per tile side
MIN_SIZE = 5  # pixels: smaller frames have no tiles to speak of
STREAK_RATIO = 2.5  # vertical over horizontal gradient of a streaky tile
STREAK_MIN_GRADIENT = 3.0  # grey levels: flatter tiles are not streaks
FLAT_GRADIENT = 1.0  # grey levels: a tile flatter than this is a blotch
SATURATED_LOW, SATURATED_HIGH = 4, 251
HISTOGRAM_BINS = 4  # per channel
HISTOGRAM_WEIGHT = 1.0  # the histogram's share of the distance, next to the standardised scalar cues
SCALAR_CUES = ("streaks", "flat", "saturated", "gradient_x", "gradient_y", "laplacian")
CHUNK = 512  # frames per batch of cue / distance computation (bounded memory over long rollouts)


@dataclass(frozen=True)
class DetectorConfig:
    neighbours: int = field(default=1, metadata=rng(1, 1000))  # k of the k-th nearest reference frame
    quantile: float = field(default=0.99, metadata=rng(0.5, 1.0))  # of the held-out reference scores
    margin: float = field(default=1.25, metadata=rng(1.0, 10.0))  # threshold = margin x that quantile
    persistence: int = field(default=9, metadata=rng(1, 100_000))  # frames in a row above threshold to fire
    bank_size: int = field(default=4096, metadata=rng(16, 1_000_000))  # reference frames kept (evenly spaced)


def _tiles(x: np.ndarray, h: int, w: int, tile: int) -> np.ndarray:
    """(N, H, W) -> tile means (N, h // tile, w // tile) over the top-left h x w pixels."""
    n = len(x)
    return x[:, :h, :w].reshape(n, h // tile, tile, w // tile, tile).mean((2, 4))


def frame_cues(frames: np.ndarray) -> np.ndarray:
    """uint8 frames (N, H, W, 3) -> cues (N, 6 + 64): the scalar cues (SCALAR_CUES), then the colour histogram."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise WorldsimError(f"frame_cues needs uint8 frames (N, H, W, 3), got {frames.dtype} {frames.shape}")
    n, height, width = frames.shape[:3]
    if min(height, width) < MIN_SIZE:
        raise WorldsimError(f"frames of {height}x{width} are too small for the detector (at least {MIN_SIZE})")
    tile = min(TILE, (min(height, width) - 1) // 2)  # tiny test worlds get smaller tiles
    out = []
    for i in range(0, n, CHUNK):
        chunk = frames[i: i + CHUNK]
        y = luma(chunk)
        dx = np.abs(np.diff(y, axis=2))[:, :-1, :]  # (N, H - 1, W - 1)
        dy = np.abs(np.diff(y, axis=1))[:, :, :-1]
        h, w = (height - 1) // tile * tile, (width - 1) // tile * tile
        tx, ty = _tiles(dx, h, w, tile), _tiles(dy, h, w, tile)
        streaks = ((ty >= STREAK_RATIO * tx) & (ty >= STREAK_MIN_GRADIENT)).mean((1, 2))
        flat = (tx + ty < FLAT_GRADIENT).mean((1, 2))
        saturated = ((chunk <= SATURATED_LOW) | (chunk >= SATURATED_HIGH)).any(-1).mean((1, 2))
        laplacian = np.abs(4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2]
                           - y[:, 1:-1, 2:]).mean((1, 2))
        bins = (chunk // (256 // HISTOGRAM_BINS)).astype(np.int64)
        codes = (bins[..., 0] * HISTOGRAM_BINS + bins[..., 1]) * HISTOGRAM_BINS + bins[..., 2]  # (N, H, W)
        counts = np.stack([np.bincount(c.ravel(), minlength=HISTOGRAM_BINS ** 3) for c in codes])
        histogram = np.sqrt(counts / (height * width))
        scalars = np.stack([streaks, flat, saturated, np.log1p(dx.mean((1, 2))), np.log1p(dy.mean((1, 2))),
                            np.log1p(laplacian)], 1)
        out.append(np.concatenate([scalars, histogram], 1).astype(np.float32))
    return np.concatenate(out)


def _runs_at_least(flags: np.ndarray, length: int) -> np.ndarray:
    """Per frame: whether it ends a run of >= `length` flagged frames (the detector has fired by then)."""
    run = np.zeros(len(flags), dtype=np.int64)
    count = 0
    for i, flag in enumerate(flags):
        count = count + 1 if flag else 0
        run[i] = count
    return run >= length


class DegenerationDetector:
    """Fitted on the engine's frames of one world; scores and flags generated frames of that world."""

    def __init__(self, config: DetectorConfig, bank: np.ndarray, scale: np.ndarray, threshold: float):
        self.config = config
        self.scale = scale  # (len(SCALAR_CUES),): the reference's standard deviation per scalar cue
        self.bank = self._embed(bank)  # (M, D) standardised reference cues
        self.threshold = threshold

    def _embed(self, cues: np.ndarray) -> np.ndarray:
        k = len(SCALAR_CUES)
        return np.concatenate([cues[:, :k] / self.scale, HISTOGRAM_WEIGHT * cues[:, k:]], 1).astype(np.float32)

    @staticmethod
    def _kth_distance(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
        k = min(k, len(bank))
        out = []
        bank_sq = (bank ** 2).sum(1)
        for i in range(0, len(queries), CHUNK):
            q = queries[i: i + CHUNK]
            d2 = (q ** 2).sum(1)[:, None] + bank_sq[None] - 2 * q @ bank.T
            out.append(np.sqrt(np.maximum(np.partition(d2, k - 1, axis=1)[:, k - 1], 0)))
        return np.concatenate(out)

    @classmethod
    def fit(cls, episodes: list[np.ndarray], config: DetectorConfig = DetectorConfig()) -> DegenerationDetector:
        """Reference: the engine's frames, one uint8 (N, H, W, 3) array per episode (at least two episodes)."""
        if len(episodes) < 2:
            raise WorldsimError("the degeneration detector needs engine frames of at least two episodes, so its "
                                "threshold is measured on an episode it has not seen")
        cues = [frame_cues(e) for e in episodes]
        everything = np.concatenate(cues)
        scale = everything[:, : len(SCALAR_CUES)].std(0) + 1e-3
        per_episode = max(1, config.bank_size // len(cues))
        kept = [c[np.linspace(0, len(c) - 1, min(per_episode, len(c))).round().astype(int)] for c in cues]
        # 1. held-out scores: each episode's frames against the bank of the other episodes
        probe = cls(config, np.concatenate(kept), scale, threshold=np.inf)
        held_out = []
        for i, c in enumerate(cues):
            others = probe._embed(np.concatenate([k for j, k in enumerate(kept) if j != i]))
            held_out.append(cls._kth_distance(probe._embed(c), others, config.neighbours))
        # 2. the threshold: a margin over a high quantile of what unseen real frames score
        threshold = config.margin * float(np.quantile(np.concatenate(held_out), config.quantile))
        return cls(config, np.concatenate(kept), scale, threshold)

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N,) distance to the k-th nearest real frame (higher: less like the world)."""
        return self._kth_distance(self._embed(frame_cues(frames)), self.bank, self.config.neighbours)

    def judge(self, frames: np.ndarray) -> dict:
        """One rollout's frames in play order -> per-frame scores and flags, and when (if ever) it fired."""
        scores = self.scores(frames)
        flagged = scores > self.threshold
        fired = _runs_at_least(flagged, self.config.persistence)
        first = int(np.argmax(fired)) if fired.any() else None
        return {"scores": scores, "flagged": flagged, "fired": fired, "first_fired": first,
                "flagged_fraction": float(flagged.mean()), "fired_fraction": float(fired.mean())}

    # ---- files: a json of the numbers and an npz of the bank ----------------------------------------------------

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        k = len(SCALAR_CUES)
        raw = np.concatenate([self.bank[:, :k] * self.scale, self.bank[:, k:] / HISTOGRAM_WEIGHT], 1)
        np.savez_compressed(folder / "detector_bank.npz", bank=raw, scale=self.scale)
        (folder / "detector.json").write_text(json.dumps({"config": asdict(self.config),
                                                          "threshold": self.threshold}, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> DegenerationDetector:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "detector.json").read_text())
            with np.load(folder / "detector_bank.npz") as npz:
                bank, scale = npz["bank"], npz["scale"]
            return cls(DetectorConfig(**meta["config"]), bank, scale, float(meta["threshold"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise WorldsimError(f"{folder} holds no readable degeneration detector ({err})") from None
