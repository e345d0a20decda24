"""`evaluate()`: judge a world against the real engine on held-out action sequences.

    from worldsim.eval import EvalConfig, evaluate
    metrics = evaluate("runs/doom-camera/long/checkpoint", "runs/eval/long", EvalConfig(frames=1440),
                       idm="runs/idm", ground_truth_dir="runs/eval/ground-truth")

1. The engine's frames of `episodes` held-out sequences are recorded once (worldsim/eval/ground_truth.py) and
   resized to the model's resolution (area filter).
2. Per episode, the model is rolled out open loop and teacher forced, beside three yardsticks computed on the
   same frames (worldsim/eval/candidates.py): the VAE ceiling, copy-previous-frame and copy-first-frame.
3. Every candidate gets every metric (DEFINITIONS below, also written into metrics.json).
4. metrics.json, one chart per metric over time and an engine | model video go to `out`.

Scores are computed per episode and only per-frame numbers are kept: memory does not grow with episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from worldsim.config import rng, to_dict
from worldsim.errors import WorldsimError
from worldsim.eval import metrics
from worldsim.eval.candidates import Candidate, RolloutSpeed, episode_candidates
from worldsim.eval.ground_truth import DEFAULT_SEED, GroundTruthSpec, load_ground_truth
from worldsim.eval.idm import DEAD_ZONE, IDM, MOTION_AXES, agreement_summary, load_idm, motion_buckets

ENGINE = "engine"  # the real frames judged like a candidate: the IDM's ceiling on these very sequences
DTYPES = ("float32", "bfloat16", "float16")

DEFINITIONS = {
    "candidates": "model: open-loop rollout from the real first frame with the recorded actions. "
                  "model_teacher: teacher forced, the recycled latent of every step is the VAE latent of the "
                  "real previous frame (the KV cache holds teacher-forced steps). vae: decode(encode(real "
                  "frame)), the ceiling. copy_previous: the real previous frame (teacher-forced yardstick). "
                  "copy_first: the real first frame (open-loop yardstick). turned_previous (generators that reproject "
                  "their recycled frame by the commanded yaw): the real previous latent turned that way and "
                  "decoded, what the geometry alone draws (teacher-forced yardstick); for worlds that warp their "
                  "recycled frame by the move instead, turned by the engine's turn with the warp (its rows scaled "
                  "by depth too). warped_previous (worlds whose "
                  "movement has the map's walls): the real previous latent warped by the engine's move with depth "
                  "from the walls and decoded, what 2.5D geometry draws of the move too (teacher-forced "
                  "yardstick). keyframe (worlds with a keyframe "
                  "memory): the recorded keyframe nearest to the pose the world tracks open loop, turned to its "
                  "heading (warped to the pose with memory.warp_views) and decoded, what retrieval alone draws "
                  "(open-loop yardstick). engine: the real frames "
                  "(action agreement only: the IDM's ceiling on these sequences).",
    "movement": "worlds with a movement: open loop from the engine's first pose, distance to the engine's "
                "position after 1, 10 and 60 s (median and mean over episodes long enough), the distance averaged "
                "over each episode (mean_error: median and mean over episodes, and frames_near: the share of all "
                "frames within 32 map units), heading error after "
                "10 s, the share of the engine's wall contacts (commanded to move, moved less than half the free "
                "move) the movement also stops at, and the share of rollouts that leave the walkable area.",
    "frames": "frame t is the frame after the t-th recorded action; frame 0 is the real start frame.",
    "psnr": f"per frame, uint8 RGB at model resolution, capped at {metrics.PSNR_CAP_DB:g} dB. at[h]: mean "
            "over episodes of frame h; mean_to[h]: mean over episodes and frames 1..h; mean: over all "
            "frames; windows: mean per window.",
    "ssim": "per frame: Gaussian window 11, sigma 1.5, per channel, data range 255 (as scikit-image); "
            "aggregated like psnr.",
    "teacher_forced_psnr": "mean PSNR over all frames of model_teacher (next-frame prediction with real "
                           "history), beside copy_previous and vae on the same frames.",
    "action_agreement": "fraction of frames whose IDM decision on the pair (previous frame, frame t) equals "
                        "the bucket of the commanded action, per axis (forward, strafe, yaw; buckets "
                        f"negative / none / positive, none when |command| < {DEAD_ZONE:g}) and on all three "
                        "axes at once ('all'). The previous frame is the candidate's own, or the real one "
                        "for teacher-forced candidates.",
    "frechet": "per window: Frechet distance between Gaussians fitted to the IDM's penultimate features of "
               "the candidate's pairs and of the engine's pairs, pooled over episodes.",
    "sharpness_ratio": "per window: mean Laplacian variance (luma) of the candidate's frames over the "
                       "engine's.",
    "color_histogram_distance": "per window: total variation distance between 8x8x8 RGB histograms of the "
                                "candidate's and the engine's frames, pooled over episodes.",
    "drift_ratio": "last window / first window of a windowed metric.",
    "speed": "open-loop rollout only (condition + generate + decode per frame, batch 1), wall time.",
    "degeneration": "the no-reference degeneration detector (worldsim/eval/degeneration.py), fitted on engine "
                    "frames of reference_episodes episodes recorded under seed + 1: per frame, flagged "
                    "when its cues (streaks, flat tiles, saturation, gradients, colours) are farther from the "
                    "nearest reference frame than 1.25x the 99th percentile of real frames of an unseen reference "
                    "episode; fired once frames stay flagged "
                    "for `persistence` frames in a row. engine: the held-out engine frames (the false-positive "
                    "rate). first_fired: per episode, the frame it first fired at (null: never).",
    "probes": "behaviour probes (worldsim/eval/probes.py): stand still a minute, walk into a wall, strafe, turn in "
              "place; scripted controls replayed in the engine and the model from the engine's first frame.",
    "beats_copy_first": "share of frames h >= 24 at which the model's open-loop PSNR (mean over episodes) is above "
                        "copy_first's.",
}


@dataclass(frozen=True)
class EvalConfig:
    frames: int = field(default=1440, metadata=rng(1, 10_000_000))  # AAPT's minute (82 s at Doom's 17.5 fps)
    episodes: int = field(default=4, metadata=rng(1, 100_000))
    seed: int = DEFAULT_SEED  # of the held-out sequences; keep it away from training data seeds
    steps: int | None = None  # sampler steps per frame; None: the checkpoint's (1 AAPT, 32 diffusion)
    window: int = field(default=240, metadata=rng(1, 10_000_000))  # frames per drift window
    horizons: tuple[int, ...] = (1, 8, 24, 96)  # open-loop PSNR/SSIM reported at these frames (and the last)
    doom: str | None = None  # Doom config name or path; None: the shipped world
    device: str = "cpu"
    dtype: str = "float32"
    video: bool = True
    noise_seed: int = 0  # the session's noise seed
    context_noise: float | None = field(default=None, metadata=rng(0.0, 1.0))  # None: the checkpoint's level
    probes: bool = True  # replay the behaviour probes (worldsim/eval/probes.py) in engine and model
    detector: bool = True  # judge the open-loop frames with the degeneration detector (worldsim/eval/degeneration.py)
    # engine frames the detector is fitted on, recorded under seed + 1 (never the judged sequences)
    reference_episodes: int = field(default=24, metadata=rng(2, 10_000))
    reference_frames: int = field(default=400, metadata=rng(1, 1_000_000))

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise WorldsimError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.steps is not None and self.steps < 1:
            raise WorldsimError(f"steps must be at least 1, got {self.steps}")


@dataclass
class Scores:
    """One candidate on one episode: per-frame arrays and per-window histograms (everything kept)."""

    psnr: np.ndarray  # (F,)
    ssim: np.ndarray  # (F,)
    sharpness: np.ndarray  # (F,) Laplacian variance
    histograms: np.ndarray  # (W, bins)
    hits: np.ndarray | None  # (F, 3) bool: IDM decision == commanded bucket
    features: np.ndarray | None  # (F, D) IDM features


def windows_of(frames: int, window: int) -> list[slice]:
    """Whole windows over frames 1..F as slices of 0-based per-frame arrays (a partial tail is dropped; with
    fewer frames than a window, one window of all of them)."""
    size = min(window, frames)
    return [slice(k * size, (k + 1) * size) for k in range(frames // size)]


def score(candidate: Candidate, real: np.ndarray, commanded: np.ndarray, windows: list[slice],
          idm: IDM | None) -> Scores:
    """real: the engine's frames 1..F (F, h, w, 3); commanded: (F, 3) buckets of the actions behind them."""
    hits = features = None
    if idm is not None:
        decisions, features = idm.judge(candidate.previous, candidate.frames)
        hits = decisions == commanded
    return Scores(metrics.psnr(candidate.frames, real), metrics.ssim(candidate.frames, real),
                  metrics.laplacian_variance(candidate.frames),
                  np.stack([metrics.color_histogram(candidate.frames[w]) for w in windows]), hits, features)


def _horizons(config: EvalConfig) -> list[int]:
    return sorted({h for h in config.horizons if 1 <= h <= config.frames} | {config.frames})


def summarize(scores: dict[str, list[Scores]], config: EvalConfig, windows: list[slice]) -> dict:
    """Aggregate per-episode scores into the metrics.json tables (candidate -> numbers)."""
    engine = scores[ENGINE]
    names = [n for n in scores if n != ENGINE]
    horizons = _horizons(config)
    summary: dict = {"windows": [[w.start + 1, w.stop] for w in windows], "per_frame": {}}
    for key in ("psnr", "ssim"):
        table, curves = {}, {}
        for name in names:
            values = np.stack([getattr(s, key) for s in scores[name]])  # (episodes, F)
            per_window = [float(values[:, w].mean()) for w in windows]
            table[name] = {"mean": float(values.mean()),
                           "at": {str(h): float(values[:, h - 1].mean()) for h in horizons},
                           "mean_to": {str(h): float(values[:, :h].mean()) for h in horizons},
                           "windows": per_window, "drift_ratio": metrics.drift_ratio(per_window)}
            curves[name] = values.mean(0).round(4).tolist()
        summary[key] = table
        summary["per_frame"][key] = curves
    summary["teacher_forced_psnr"] = {n: summary["psnr"][n]["mean"]
                                      for n in ("model_teacher", "copy_previous", "turned_previous",
                                                "warped_previous", "vae")
                                      if n in names}

    def pooled(name: str, key: str, w: slice) -> np.ndarray:  # one window, all episodes
        return np.concatenate([getattr(s, key)[w] for s in scores[name]])

    summary["sharpness_ratio"] = _windowed(names, windows, lambda n, k, w: metrics.sharpness_ratio(
        pooled(n, "sharpness", w), pooled(ENGINE, "sharpness", w)))
    summary["color_histogram_distance"] = _windowed(
        names, windows, lambda n, k, w: metrics.histogram_distance(sum(s.histograms[k] for s in scores[n]),
                                                                   sum(s.histograms[k] for s in engine)))
    if engine[0].features is None:  # no IDM
        summary["frechet"] = summary["action_agreement"] = None
        return summary
    summary["frechet"] = _windowed(names, windows, lambda n, k, w: metrics.frechet_distance(
        pooled(n, "features", w), pooled(ENGINE, "features", w)))
    agreement = {}
    for name in [*names, ENGINE]:
        hits = np.stack([s.hits for s in scores[name]])  # (episodes, F, 3)
        per_window = [agreement_summary(hits[:, w].reshape(-1, len(MOTION_AXES))) for w in windows]
        agreement[name] = {"mean": agreement_summary(hits.reshape(-1, len(MOTION_AXES))),
                           "windows": per_window,
                           "drift_ratio": metrics.drift_ratio([w["all"] for w in per_window])}
    summary["action_agreement"] = agreement
    return summary


def _windowed(names: list[str], windows: list[slice], value) -> dict:
    """candidate -> {"windows": [value(name, k, window k)], "drift_ratio": last / first}."""
    table = {}
    for name in names:
        per_window = [value(name, k, w) for k, w in enumerate(windows)]
        table[name] = {"windows": per_window, "drift_ratio": metrics.drift_ratio(per_window)}
    return table


def evaluate(checkpoint: str | Path, out: str | Path, config: EvalConfig = EvalConfig(), *,
             idm: str | Path | IDM | None = None, ground_truth_dir: str | Path | None = None,
             progress: bool = True) -> dict:
    """Evaluate a checkpoint directory: writes metrics.json, charts and a video into `out` and returns the
    metrics. `idm`: a trained IDM (directory or loaded); without one, action agreement and Fréchet distance
    are skipped. `ground_truth_dir` (default OUT/ground-truth): share it between checkpoints so the engine's
    frames are recorded once."""
    from worldsim.checkpoint import load_checkpoint
    from worldsim.data.dataset import resize_frames
    from worldsim.eval import report
    from worldsim.runtime.session import WorldSession

    # 1. the world, the judge and the held-out sequences
    out = Path(out)
    ckpt = load_checkpoint(checkpoint)
    session = WorldSession(ckpt, device=config.device, dtype=getattr(torch, config.dtype),
                           seed=config.noise_seed, steps=config.steps, context_noise=config.context_noise)
    encoding = ckpt.config.encoding
    judge = load_idm(idm) if isinstance(idm, (str, Path)) else idm
    if judge is not None:
        judge.check_encoding(encoding, f"the checkpoint {ckpt.path}")
    gt_dir = Path(ground_truth_dir) if ground_truth_dir is not None else out / "ground-truth"
    spec = GroundTruthSpec(config.seed, config.episodes, config.frames, config.doom)
    episodes = load_ground_truth(gt_dir, spec, session.scheme, progress)
    out.mkdir(parents=True, exist_ok=True)

    detector = _detector(gt_dir, config, session, out, progress) if config.detector else None
    judged: dict[str, list[dict]] = {}  # detector verdicts per candidate and episode

    # 2. per episode: candidates, scores, and the video of the first one
    windows = windows_of(config.frames, config.window)
    height, width = session.image_size
    scores: dict[str, list[Scores]] = {}
    speeds: list[RolloutSpeed] = []
    movement_tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # engine poses, actions, tracked poses
    video = None
    for number, episode in enumerate(episodes):
        real = resize_frames(episode.frames, (width, height))  # (F + 1, h, w, 3), area filter
        commanded = motion_buckets(episode.actions[1:], encoding)
        candidates, speed, tracked = episode_candidates(session, real, episode.actions, episode.poses, progress)
        speeds.append(speed)
        if tracked is not None:
            movement_tracks.append((episode.poses, episode.actions, tracked))
        candidates[ENGINE] = Candidate(real[1:], real[:-1])
        for name, candidate in candidates.items():
            scores.setdefault(name, []).append(score(candidate, real[1:], commanded, windows, judge))
        if detector is not None:
            for name in ("model", ENGINE):
                judged.setdefault(name, []).append(detector.judge(candidates[name].frames))
        if number == 0 and config.video:
            model = np.concatenate([candidates["model"].previous[:1], candidates["model"].frames])
            video = report.write_video(out / report.VIDEO_FILE, real, model, episode.actions, session.scheme,
                                       ckpt.config.fps, scores["model"][0].psnr).name
        del candidates

    # 3. context first, then the tables
    seconds = sum(s.seconds for s in speeds)
    frames = sum(s.frames for s in speeds)
    summary = {
        "checkpoint": {"path": str(ckpt.path), "stage": ckpt.config.stage, "scheme": ckpt.config.scheme,
                       "encoding": encoding, "image_size": list(session.image_size), "fps": ckpt.config.fps},
        "config": to_dict(config),
        "frames": config.frames,
        "episodes": len(episodes),
        "ground_truth": {"dir": str(gt_dir), "seed": config.seed, "episode_ids": [e.id for e in episodes]},
        "speed": {"frames_per_s": frames / seconds if seconds > 0 else math.nan,
                  "ms_per_frame": {k: v / frames for k, v in _sum_stages(speeds).items()},
                  "sampler_steps": session.steps, "device": config.device, "dtype": config.dtype,
                  "threads": torch.get_num_threads()},
        "idm": None if judge is None else {"path": str(judge.path),
                                           "val_accuracy": judge.metrics.get("val_accuracy"),
                                           "val_none_fraction": judge.metrics.get("val_none_fraction")},
        "definitions": DEFINITIONS,
        "headline": {},
        **summarize(scores, config, windows),
    }
    if detector is not None:
        summary["degeneration"] = _degeneration_summary(detector, judged, windows)
    summary["beats_copy_first"] = _beats_copy_first(summary)
    if session.movement is not None and movement_tracks:
        from worldsim.eval.movement import movement_metrics

        summary["movement"] = movement_metrics(session.movement, movement_tracks, ckpt.config.fps)
    if config.probes:
        from worldsim.eval.probes import run_probes, write_probe_sheet

        probes = run_probes(session, config.doom)
        summary["probes"] = {k: v for k, v in probes.items() if k != "_frames"}
        summary["probes"]["sheet"] = write_probe_sheet(out, probes["_frames"]).name
    summary["headline"] = headline(summary)
    # 4. files
    summary["plots"] = report.write_plots(out, summary)
    summary["video"] = video
    report.write_metrics(out, summary)
    return summary


def _detector(gt_dir: Path, config: EvalConfig, session, out: Path, progress: bool):
    """The degeneration detector of this world, fitted on engine episodes recorded under the next seed (never
    the held-out sequences it is then judged on), and saved to OUT/detector."""
    from worldsim.data.dataset import resize_frames
    from worldsim.eval.degeneration import DegenerationDetector

    reference_spec = GroundTruthSpec(config.seed + 1, config.reference_episodes, config.reference_frames, config.doom)
    reference_dir = gt_dir.with_name(gt_dir.name + "-reference")
    height, width = session.image_size
    reference = [resize_frames(e.frames, (width, height))
                 for e in load_ground_truth(reference_dir, reference_spec, session.scheme, progress)]
    detector = DegenerationDetector.fit(reference)
    detector.save(out / "detector")
    return detector


def _degeneration_summary(detector, judged: dict[str, list[dict]], windows: list[slice]) -> dict:
    table = {"threshold": detector.threshold, "persistence": detector.config.persistence}
    for name, verdicts in judged.items():
        flagged = np.stack([v["flagged"] for v in verdicts])  # (episodes, F)
        fired = np.stack([v["fired"] for v in verdicts])
        table[name] = {"first_fired": [v["first_fired"] for v in verdicts],
                       "flagged_fraction": float(flagged.mean()), "fired_fraction": float(fired.mean()),
                       "flagged_windows": [float(flagged[:, w].mean()) for w in windows]}
    return table


def _beats_copy_first(summary: dict) -> float | None:
    model = np.array(summary["per_frame"]["psnr"]["model"])
    first = np.array(summary["per_frame"]["psnr"]["copy_first"])
    if len(model) < 24:
        return None
    return float((model[23:] > first[23:]).mean())


def _sum_stages(speeds: list[RolloutSpeed]) -> dict[str, float]:
    return {stage: sum(s.stage_ms[stage] for s in speeds) for stage in speeds[0].stage_ms}


def headline(summary: dict) -> dict:
    """The numbers quoted in a table row (the model, open loop unless named)."""
    psnr = summary["psnr"]
    last = str(summary["frames"])
    line = {
        "psnr_at": psnr["model"]["at"],
        "ssim_at": summary["ssim"]["model"]["at"],
        "teacher_forced_psnr": psnr["model_teacher"]["mean"],
        "copy_previous_psnr": psnr["copy_previous"]["mean"],
        "copy_first_psnr_at_last": psnr["copy_first"]["at"][last],
        "vae_ceiling_psnr": psnr["vae"]["mean"],
        **({"turned_previous_psnr": psnr["turned_previous"]["mean"]} if "turned_previous" in psnr else {}),
        "sharpness_ratio_drift": summary["sharpness_ratio"]["model"]["drift_ratio"],
        "frames_per_s": summary["speed"]["frames_per_s"],
        "beats_copy_first": summary.get("beats_copy_first"),
    }
    if summary.get("degeneration"):
        line["degeneration_first_fired"] = summary["degeneration"]["model"]["first_fired"]
        line["degeneration_flagged"] = summary["degeneration"]["model"]["flagged_fraction"]
        line["degeneration_engine_flagged"] = summary["degeneration"][ENGINE]["flagged_fraction"]
    if summary.get("probes"):
        line["probes_passed"] = {k: v["passed"] for k, v in summary["probes"].items() if isinstance(v, dict)}
    if summary.get("action_agreement"):
        line["action_agreement"] = summary["action_agreement"]["model"]["mean"]["all"]
        line["action_agreement_engine"] = summary["action_agreement"][ENGINE]["mean"]["all"]
        if "turned_previous" in summary["action_agreement"]:
            line["action_agreement_turned_previous"] = summary["action_agreement"]["turned_previous"]["mean"]["all"]
        line["frechet_last_window"] = summary["frechet"]["model"]["windows"][-1]
        line["frechet_drift_ratio"] = summary["frechet"]["model"]["drift_ratio"]
    return line
