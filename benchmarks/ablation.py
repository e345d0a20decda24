"""The paper's ablation on one world: every stage's generator judged by `worldsim eval` on the same held-out
sequences, side by side; optionally ships the chosen checkpoint to checkpoints/ with the table in its card.

    python benchmarks/ablation.py --run runs/doom-camera --teacher-run runs/doom-camera-teacher --idm runs/idm \
        --out runs/ablation --frames 1440 --episodes 2 --multistep-frames 96

Rows: the one-step generator after adversarial training with student forcing (long-video stage if present), the
same stage with teacher forcing, consistency distillation alone, and the diffusion model sampled with 8 and 32
steps. Multi-step rows cost 8-32 evaluations per frame, so they may be judged on a shorter horizon
(`--multistep-frames`); the table says which horizon each row used.

A row whose checkpoint weights and evaluation settings are unchanged since its last run is reused, so rows can be
split across processes (`--rows`) and the table assembled by a final run without `--rows`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from worldsim.eval import EvalConfig, evaluate


def rows(run: Path, teacher_run: Path | None) -> list[tuple[str, Path, int]]:
    final = run / "long" / "checkpoint"
    if not final.exists():
        final = run / "adversarial" / "checkpoint"
    candidates = [("AAPT one-step, student forcing", final, 1)]
    if teacher_run is not None:
        candidates.append(("AAPT one-step, teacher forcing", teacher_run / "adversarial" / "checkpoint", 1))
    candidates += [("consistency distillation (1 step)", run / "consistency" / "checkpoint", 1),
                   ("diffusion, 8 steps", run / "diffusion" / "checkpoint", 8),
                   ("diffusion, 32 steps", run / "diffusion" / "checkpoint", 32)]
    return [(name, path, steps) for name, path, steps in candidates if path.exists()]


def slug_of(name: str, steps: int) -> str:
    slug = name.split(",")[0].split(" (")[0].replace(" ", "-").lower() + f"-{steps}step"
    return slug + "-teacher" if "teacher forcing" in name else slug


def fingerprint(checkpoint: Path, eval_config: EvalConfig) -> str:
    """Changes when the weights (size, mtime) or the evaluation settings change."""
    parts = [repr(eval_config)] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                                   for f in sorted(checkpoint.glob("*.safetensors"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: list[dict]) -> str:
    head = ("| generator | frames | PSNR h1 | PSNR h8 | PSNR h24 | PSNR h96 | teacher-forced PSNR | "
            "action agreement (engine) | Frechet last window | drift ratio (Frechet) | frames/s |")
    lines = [head, "|" + " --- |" * 11]
    for r in results:
        h = r["headline"]
        at = h["psnr_at"]
        agree = (f"{fmt(h.get('action_agreement'))} ({fmt(h.get('action_agreement_engine'))})"
                 if "action_agreement" in h else "-")
        lines.append(f"| {r['name']} | {r['frames']} | {fmt(at.get('1'))} | {fmt(at.get('8'))} | {fmt(at.get('24'))} "
                     f"| {fmt(at.get('96'))} | {fmt(h['teacher_forced_psnr'])} | {agree} | "
                     f"{fmt(h.get('frechet_last_window'))} | {fmt(h.get('frechet_drift_ratio'))} | "
                     f"{fmt(h['frames_per_s'], 1)} |")
    y = results[0]["headline"] if results else {}
    if y:
        lines.append(f"| yardsticks: VAE ceiling / copy previous frame / copy first frame (last frame) | | | | | | "
                     f"{fmt(y['vae_ceiling_psnr'])} / {fmt(y['copy_previous_psnr'])} / "
                     f"{fmt(y['copy_first_psnr_at_last'])} | | | | |")
    if "turned_previous_psnr" in y:
        lines.append(f"| yardstick: real previous frame turned (by the commanded yaw; a world that warps: the engine's "
                     "turn, warped) | | | | | "
                     f"| {fmt(y['turned_previous_psnr'])} | {fmt(y.get('action_agreement_turned_previous'))} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run of the shipped recipe")
    parser.add_argument("--teacher-run", type=Path, default=None, help="run whose adversarial stage used "
                        "teacher forcing (same earlier stages)")
    parser.add_argument("--idm", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=1440)
    parser.add_argument("--multistep-frames", type=int, default=96)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", nargs="+", default=None, metavar="SLUG",
                        help="evaluate only these rows (e.g. diffusion-32step); the table needs every row")
    parser.add_argument("--ship", type=Path, default=None,
                        help="copy the first row's checkpoint here in float16 with the table in its card")
    parser.add_argument("--card", type=Path, default=None, help="model card text; the table is appended")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    ground_truth = args.out / "ground-truth"
    candidates = rows(args.run, args.teacher_run)
    known = [slug_of(name, steps) for name, _, steps in candidates]
    unknown = sorted(set(args.rows or ()) - set(known))
    if unknown:
        parser.error(f"--rows: no row named {', '.join(unknown)}; the rows of this run are {', '.join(known)}")
    results = []
    for name, path, steps in candidates:
        frames = args.frames if steps == 1 else min(args.frames, args.multistep_frames)
        slug = slug_of(name, steps)
        if args.rows is not None and slug not in args.rows:
            continue
        eval_config = EvalConfig(frames=frames, episodes=args.episodes, steps=steps)
        stamp, metrics_file = args.out / slug / "fingerprint.txt", args.out / slug / "metrics.json"
        key = fingerprint(path, eval_config)
        if metrics_file.exists() and stamp.exists() and stamp.read_text() == key:
            print(f"== {name}: {path} ({steps} steps, {frames} frames), reused", flush=True)
            metrics = json.loads(metrics_file.read_text())
        else:
            print(f"== {name}: {path} ({steps} steps, {frames} frames)", flush=True)
            metrics = evaluate(path, args.out / slug, eval_config, idm=args.idm, ground_truth_dir=ground_truth,
                               progress=False)
            stamp.write_text(key)
        results.append({"name": name, "checkpoint": str(path), "steps": steps, "frames": frames,
                        "headline": metrics["headline"]})
    if args.rows is not None:
        print(f"evaluated {len(results)} row(s); run again without --rows for the table")
        return
    text = table(results)
    (args.out / "ablation.md").write_text(text + "\n")
    (args.out / "ablation.json").write_text(json.dumps(results, indent=1))
    print(text)
    if args.ship is not None and results:
        ship(Path(results[0]["checkpoint"]), args.ship, results[0], text, args.card)


def ship(src: Path, dst: Path, result: dict, table_text: str, card: Path | None) -> None:
    """The player's copy: generator and VAE in float16 (half the size, same frames within rounding), start
    frames, the evaluation in config.yaml and the card; no optimiser or discriminator state."""
    import torch

    from worldsim.checkpoint import load_checkpoint, save_checkpoint
    from worldsim.config import replace

    ckpt = load_checkpoint(src)
    config = replace(ckpt.config, metrics={"evaluation": result["headline"], "frames": result["frames"]})
    text = (card.read_text() if card else "# worldsim world\n") + "\n## Evaluation\n\n" + table_text + "\n"
    save_checkpoint(dst, config, ckpt.generator, ckpt.vae, ckpt.start_frames, dtype=torch.float16, card=text)
    print(f"shipped {src} -> {dst}")


if __name__ == "__main__":
    main()
