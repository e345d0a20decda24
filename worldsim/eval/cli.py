"""`worldsim eval`: judge a world against the real engine, or train the inverse-dynamics judge it uses.

    worldsim eval --checkpoint runs/doom-camera/long/checkpoint --out runs/eval/long --idm runs/idm
    worldsim eval --checkpoint CKPT --out OUT --idm runs/idm --data data/doom-camera  # trains a missing IDM
    worldsim eval --train-idm --data data/doom-camera --idm runs/idm [--checkpoint CKPT]  # only train the IDM

The held-out engine frames are recorded once into --ground-truth (default OUT/ground-truth): pass the same
folder when evaluating several checkpoints, so they are judged on the same frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from worldsim.config import MAX_SAMPLING_STEPS
from worldsim.errors import WorldsimError
from worldsim.eval.evaluate import DTYPES, ENGINE, EvalConfig, evaluate
from worldsim.eval.ground_truth import DEFAULT_SEED
from worldsim.eval.idm import IDMConfig, IDMTrainConfig, load_idm, train_idm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="checkpoint directory to evaluate (with --train-idm: only sets "
                                             "the IDM's resolution)")
    parser.add_argument("--out", help="output folder: metrics.json, charts, engine_vs_model.mp4")
    parser.add_argument("--frames", type=int, default=1440, help="generated frames per episode")
    parser.add_argument("--episodes", type=int, default=4, help="held-out episodes")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the held-out sequences (keep it away from training data seeds)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps per frame (default: the checkpoint's; 1 for the AAPT generator)")
    parser.add_argument("--window", type=int, default=240, help="frames per drift window")
    parser.add_argument("--doom", default=None,
                        help="Doom config name or YAML path (default: the shipped world)")
    parser.add_argument("--ground-truth", default=None, help="folder of the recorded engine frames (default: "
                                                             "OUT/ground-truth); shared between checkpoints")
    parser.add_argument("--idm", default=None,
                        help="inverse-dynamics model directory; trained there first when missing and --data "
                             "is given; without it, action agreement and Frechet distance are skipped")
    parser.add_argument("--data", default=None,
                        help="recorded dataset to train the IDM on (train split; its val split gives the "
                             "IDM's ceiling)")
    parser.add_argument("--train-idm", action="store_true",
                        help="only train the IDM (--data, --idm) and stop")
    parser.add_argument("--idm-steps", type=int, default=IDMTrainConfig.steps, help="IDM training steps")
    parser.add_argument("--idm-max-frames", type=int, default=IDMTrainConfig.max_train_frames,
                        help="at most this many training frames are loaded for the IDM (memory)")
    parser.add_argument("--idm-seed", type=int, default=IDMTrainConfig.seed,
                        help="the IDM's initialisation and batch order (a second judge for training against, "
                             "independent of the one that evaluates)")
    parser.add_argument("--device", default="cpu", help="torch device for the model")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="model precision")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-video", action="store_true", help="skip the side-by-side MP4")
    parser.add_argument("--no-probes", action="store_true",
                        help="skip the behaviour probes (stand still, walk into a wall, strafe, turn in place, "
                        "walk a loop)")
    parser.add_argument("--no-detector", action="store_true",
                        help="skip the degeneration detector (and the engine reference episodes it is fitted on)")
    parser.add_argument("--context-noise", type=float, default=None,
                        help="noise level of the recycled frame at play time (default: the checkpoint's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the metrics, charts and video of an earlier evaluation in --out")


def _refuse_earlier_results(out: Path, overwrite: bool) -> None:
    """An evaluation replaces metrics.json, its charts and its video in --out: not without --overwrite."""
    from worldsim.eval import report

    names = [report.METRICS_FILE, report.VIDEO_FILE, *(f"{key}_per_frame.png" for key in report.PER_FRAME_CHARTS),
             *(f"{key}_per_window.png" for key in report.PER_WINDOW_CHARTS)]
    if out.exists() and not out.is_dir():
        raise WorldsimError(f"--out {out} exists and is not a folder; allowed: a new folder, or an earlier "
                            "evaluation's with --overwrite")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise WorldsimError(f"{out / existing[0]} already exists (an earlier evaluation); pass --overwrite to "
                            "replace its results, or choose another --out")


def _train_idm(args: argparse.Namespace) -> None:
    if not args.data:
        raise WorldsimError("training the IDM needs --data DATASET (a recorded dataset with a val split)")
    image_size = IDMConfig.image_size
    if args.checkpoint:
        from worldsim.checkpoint import load_config

        image_size = tuple(load_config(Path(args.checkpoint)).vae.image_size)
    if args.idm_steps < 0 or args.idm_max_frames < 2:
        raise WorldsimError("--idm-steps must be >= 0 and --idm-max-frames >= 2")
    idm = train_idm(args.data, args.idm, IDMConfig(image_size=image_size),
                    IDMTrainConfig(steps=args.idm_steps, max_train_frames=args.idm_max_frames,
                                   seed=args.idm_seed),
                    progress=not args.no_progress)
    accuracy = idm.metrics["val_accuracy"]
    print(f"IDM saved to {args.idm}: accuracy on real validation frames (the ceiling) "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_idm:
        if not args.idm:
            raise WorldsimError("--train-idm needs --idm DIR (where to save it)")
        _train_idm(args)
        return 0
    if not args.checkpoint or not args.out:
        raise WorldsimError("--checkpoint and --out are required (or --train-idm --data DATASET --idm DIR)")
    if args.frames < 1 or args.episodes < 1 or args.window < 1:
        raise WorldsimError("--frames, --episodes and --window must be at least 1")
    if args.context_noise is not None and not 0 <= args.context_noise <= 1:
        raise WorldsimError(f"--context-noise must be 0 to 1, got {args.context_noise}")
    if args.steps is not None and not 1 <= args.steps <= MAX_SAMPLING_STEPS:
        raise WorldsimError(f"--steps must be 1 to {MAX_SAMPLING_STEPS}, got {args.steps}")
    _refuse_earlier_results(Path(args.out), args.overwrite)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise WorldsimError(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    if args.idm and not (Path(args.idm) / "config.yaml").exists():
        if not args.data:
            raise WorldsimError(f"no IDM at {args.idm}; pass --data DATASET to train one there, or drop "
                                "--idm")
        _train_idm(args)
    config = EvalConfig(frames=args.frames, episodes=args.episodes, seed=args.seed, steps=args.steps,
                        window=args.window, doom=args.doom, device=args.device, dtype=args.dtype,
                        video=not args.no_video, probes=not args.no_probes, detector=not args.no_detector,
                        context_noise=args.context_noise)
    idm = load_idm(args.idm) if args.idm else None
    summary = evaluate(args.checkpoint, args.out, config, idm=idm, ground_truth_dir=args.ground_truth,
                       progress=not args.no_progress)
    print(format_summary(summary))
    print(f"wrote {Path(args.out) / 'metrics.json'}, {len(summary['plots'])} charts"
          + (f" and {summary['video']}" if summary["video"] else ""))
    return 0


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: PSNR at the horizons beside the yardsticks, agreement, drift, speed."""
    horizons = list(summary["psnr"]["model"]["at"])
    lines = ["PSNR (dB) at frame " + " / ".join(horizons)]
    for name, entry in summary["psnr"].items():
        lines.append(f"  {name:14s} " + " / ".join(f"{entry['at'][h]:.2f}" for h in horizons)
                     + f"   mean {entry['mean']:.2f}")
    lines.append(f"teacher-forced next-frame PSNR: model {summary['psnr']['model_teacher']['mean']:.2f}, "
                 f"copy previous {summary['psnr']['copy_previous']['mean']:.2f}, "
                 + (f"turned previous {summary['psnr']['turned_previous']['mean']:.2f}, "
                    if "turned_previous" in summary["psnr"] else "")
                 + (f"warped previous {summary['psnr']['warped_previous']['mean']:.2f}, "
                    if "warped_previous" in summary["psnr"] else "")
                 + f"VAE ceiling {summary['psnr']['vae']['mean']:.2f}")
    agreement = summary.get("action_agreement")
    if agreement:
        lines.append(f"action agreement (all axes): model {agreement['model']['mean']['all']:.3f}, "
                     f"engine (IDM ceiling) {agreement[ENGINE]['mean']['all']:.3f}, "
                     f"copy first {agreement['copy_first']['mean']['all']:.3f}")
        drift = summary["frechet"]["model"]["drift_ratio"]
        lines.append(f"Frechet (IDM features) drift ratio: model {drift:.2f}")
    degeneration = summary.get("degeneration")
    if degeneration:
        lines.append(f"degeneration detector: model first fired at frame {degeneration['model']['first_fired']} "
                     f"(per episode; None: never), flagged {degeneration['model']['flagged_fraction']:.3f} of "
                     f"frames; engine (false positives) flagged {degeneration[ENGINE]['flagged_fraction']:.4f}")
    if summary.get("beats_copy_first") is not None:
        lines.append(f"open loop above copy-first at {summary['beats_copy_first']:.0%} of frames from 24 on")
    for name, probe in (summary.get("probes") or {}).items():
        if isinstance(probe, dict):
            figures = {k: v for k, v in probe.get("model", {}).items() if not isinstance(v, dict)}
            lines.append(f"probe {name}: {'passed' if probe['passed'] else 'failed'} "
                         + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    lines.append("sharpness ratio per window: model "
                 + ", ".join(f"{v:.2f}" for v in summary["sharpness_ratio"]["model"]["windows"]))
    speed = summary["speed"]
    lines.append(f"speed: {speed['frames_per_s']:.1f} frames/s ({speed['sampler_steps']} sampler steps, "
                 f"{speed['dtype']}, {speed['threads']} threads)")
    return "\n".join(lines)
