"""The fast proxy of the stability work: screen one lever in about 20 minutes of CPU, judge it like the shipped world.

Each arm is the shipped world fine-tuned by the `stability-proxy` recipe with the arm's overrides (or, for play-time
levers, the shipped world itself with a play setting), then evaluated by `worldsim eval` on the same held-out
sequences, with the degeneration detector and the behaviour probes. Every arm trains for the same wall time
(ARM_MINUTES at one thread, `--time-budget`), so arms differ only by the lever.

    python benchmarks/stability_proxy.py --arms ship,unroll-short,unroll-long --out runs/proxy
    python benchmarks/stability_proxy.py --table runs/proxy          # the lever table of the arms done so far

Arms resume: a trained arm is not trained again, an evaluated one is not evaluated again (delete its folder to
redo it). One arm at a time: the machine has two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from worldsim.config import from_dict
from worldsim.eval import EvalConfig, evaluate
from worldsim.training.recipe import WorldSpec, load_recipe
from worldsim.training.stages import train

SHIPPED = "checkpoints/doom-camera"
ARM_MINUTES = 20.0  # training wall time per arm at one thread: arms differ by the lever, not by the compute
MAX_STEPS = 100_000  # the time budget, not the step count, ends an arm

# arm -> (what it changes, stage overrides or None for no training, play-time context noise or None); the stage is
# `unroll` unless the overrides name another with a "stage" key
ARMS: dict[str, tuple[str, dict | None, float | None]] = {
    "ship": ("the shipped world as it is", None, None),
    **{f"ship-play-noise-{level}": (f"shipped world, context noise {level} at play time (no training)", None, level)
       for level in (0.1, 0.2, 0.3, 0.5)},
    "unroll-short": ("own-rollout regression, 12-frame rollouts (the adversarial stage's horizon)",
                     {"clip_frames": 12}, None),
    "unroll-long": ("own-rollout regression, 48-frame rollouts", {"clip_frames": 48}, None),
    "unroll-long-noise": ("48-frame rollouts, context noise up to 0.3 in training, 0.1 at play",
                          {"clip_frames": 48, "context_noise": 0.3, "play_context_noise": 0.1}, None),
    "unroll-long-noise-still": ("48-frame rollouts, context noise 0.3 / 0.1, a quarter of the clips still "
                                "(one real frame, nothing pressed)",
                                {"clip_frames": 48, "context_noise": 0.3, "play_context_noise": 0.1,
                                 "still_fraction": 0.25}, None),
    "adv-long-noise": ("adversarial student forcing on 48-frame rollouts (D from the shipped generator), context "
                       "noise 0.3 / 0.1, L2 on the first 8 frames only",
                       {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                        "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8}, None),
    "unroll-short-noise-still": ("12-frame rollouts, context noise 0.3 / 0.1, a quarter of the clips still",
                                 {"clip_frames": 12, "context_noise": 0.3, "play_context_noise": 0.1,
                                  "still_fraction": 0.25}, None),
    "memory-unroll": ("posed keyframe memory (issue 12): the view recorded nearest to the movement model's pose "
                      "as an input; 48-frame rollouts, context noise 0.3 / 0.1",
                      {"clip_frames": 48, "context_noise": 0.3, "play_context_noise": 0.1, "input_lr": 1e-3,
                       "world": {"movement": True, "memory": {"keyframes": 3000}}}, None),
    "memory-attend-unroll": ("memory-unroll with the keyframe view attended as extra tokens of each frame (as the "
                             "sink frame is) instead of taken as input channels",
                             {"clip_frames": 48, "context_noise": 0.3, "play_context_noise": 0.1, "input_lr": 1e-3,
                              "world": {"movement": True, "memory": {"keyframes": 3000, "attend": True}}}, None),
    "memory-adv": ("posed keyframe memory as an input; adversarial student forcing on 48-frame rollouts (D from the "
                   "shipped generator), context noise 0.3 / 0.1, L2 on the first 8 frames",
                   {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                    "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8, "input_lr": 1e-3,
                    "world": {"movement": True, "memory": {"keyframes": 3000}}}, None),
    "world-unroll": ("absolute camera (the world scheme: ray maps of the tracked pose in map coordinates), no memory; "
                     "48-frame rollouts, context noise 0.3 / 0.1",
                     {"clip_frames": 48, "context_noise": 0.3, "play_context_noise": 0.1, "input_lr": 1e-3,
                      "scheme": "world", "world": {"movement": True}}, None),
    "memory-unroll-adv": ("memory-unroll, then 20 more minutes of adversarial student forcing on 48-frame rollouts "
                          "(D from its generator), context noise 0.3 / 0.1, L2 on the first 8 frames",
                          {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                           "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8,
                           "init": "runs/proxy/memory-unroll/unroll/checkpoint",
                           "world": {"movement": True, "memory": {"keyframes": 3000}}}, None),
    "pull-adv-0.3": ("the shipped world with a keyframe memory that pulls 0.3 (no anchor input), fine-tuned by "
                     "adversarial student forcing on 48-frame rollouts that pull as play does (D from the shipped "
                     "generator), context noise 0.3 / 0.1, L2 on the first 8 frames",
                     {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                      "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8,
                      "world": {"movement": True, "memory": {"keyframes": 3000, "condition": False, "pull": 0.3}}},
                     None),
    "pull-adv-still": ("pull-adv-0.3 at the shipped pull (0.4) with a quarter of the clips still (one real frame "
                       "repeated under the no-op; the discriminator sees them as real)",
                       {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                        "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8, "still_fraction": 0.25,
                        "world": {"movement": True, "memory": {"keyframes": 3000, "condition": False, "pull": 0.4,
                                                               "write_back": 512}}}, None),
    **{f"pull-adv-0.4{suffix}": ("the shipped world's state (walls and doors, keyframe pull 0.4, write-back) "
                                 "fine-tuned by adversarial student forcing on 48-frame rollouts pulled as play pulls "
                                 "them (D from the shipped generator), context noise 0.3 / 0.1, L2 on the first 8 "
                                 "frames" + what,
                                 {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                                  "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8, **model,
                                  "world": {"movement": True, "memory": {"keyframes": 3000, "condition": False,
                                                                         "pull": 0.4, "write_back": 512}}}, None)
       for suffix, what, model in (
           ("", " (pull-adv-0.4-warp's baseline)", {}),
           ("-warp", ", with every recycled frame warped by the move (turn included) with depth from the map's walls "
                     "instead of turned by the commanded yaw, in training and at play",
            {"model": {"yaw_reprojection": False, "warp": True}}))},
    **{f"ship-adv{suffix}": ("the shipped world's state as it plays now (Doom's physics, keyframe pull 0.4 toward "
                             "views warped to the pose, write-back, noise held while still) fine-tuned by adversarial "
                             "student forcing on 48-frame rollouts pulled as play pulls them (D from the shipped "
                             "generator), context noise 0.3 / 0.1, L2 on the first 8 frames" + what,
                             {"stage": "adversarial", "clip_frames": 48, "batch": 2, "context_noise": 0.3,
                              "play_context_noise": 0.1, "detach_every": 8, "regression_frames": 8, **action,
                              "world": {"movement": True, "memory": {"keyframes": 3000, "condition": False,
                                                                     "pull": 0.4, "write_back": 512,
                                                                     "warp_views": True}}}, None)
       for suffix, what, action in (
           ("", " (ship-adv-action's baseline)", {}),
           ("-action", ", and judged on following the controls: a second IDM (runs/idm-judge, trained like the "
                       "evaluation's runs/idm with another seed) reads each generated move, which must read as the "
                       "real clip's (weight 1)", {"action_weight": 1.0, "action_judge": "runs/idm-judge"}),
           ("-pixelturn", ", with the recycled frame turned by the commanded yaw in pixels (decoded, turned, encoded "
                          "again) instead of in latent columns, in training and at play",
            {"model": {"turn_in_pixels": True}}))},
    **{f"ship-unroll{suffix}": ("the shipped world's state as it plays now fine-tuned by own-rollout regression "
                                "(no discriminator) on 48-frame rollouts pulled as play pulls them, no context noise "
                                "in training or at play" + what,
                                {"clip_frames": 48, "batch": 2, "context_noise": 0.0, "play_context_noise": 0.0,
                                 "detach_every": 8, **model,
                                 "world": {"movement": True, "memory": {"keyframes": 3000, "condition": False,
                                                                        "pull": 0.4, "write_back": 512,
                                                                        "warp_views": True, "pixel_views": True}}},
                                None)
       for suffix, what, model in (
           ("", " (ship-unroll-pixelturn's baseline)", {}),
           ("-pixelturn", ", with the recycled frame turned in pixels in training and at play",
            {"model": {"turn_in_pixels": True}}))},
    **{f"memory-unroll-pull-{pull}": (f"memory-unroll played with its recycled latent pulled {pull} toward the "
                                      "keyframe of its pose (no more training)",
                                      {"from": "memory-unroll", "memory": {"pull": pull}}, None)
       for pull in (0.1, 0.3)},
    "memory-unroll-movement-now": ("memory-unroll played with memory-attend-unroll's movement (walls and doors, "
                                   "fitted by the same code), so the two ways to take the keyframe meet the same "
                                   "pose (no more training)",
                                   {"from": "memory-unroll", "movement": "memory-attend-unroll"}, None),
    **{f"{arm}-pull-0.3": (f"{arm} played with its recycled latent pulled 0.3 toward the keyframe of its pose",
                           {"from": arm, "memory": {"pull": 0.3}}, None)
       for arm in ("memory-attend-unroll", "memory-unroll-movement-now")},
    "ship-reveal-zero": ("the shipped world as it plays now with the columns a turn reveals left at zero (the "
                         "latents' mean) instead of repeating the edge column (no training)",
                         {"from": "ship", "generator": {"reveal": "zero"}}, None),
    "ship-pixelturn": ("the shipped world as it plays now with its recycled frame turned by the commanded yaw in "
                       "pixels (decoded, turned, encoded again) instead of in latent columns (no training)",
                       {"from": "ship", "generator": {"turn_in_pixels": True}}, None),
    **{f"ship-warp-move-{share}": (f"the shipped world as it plays now with its recycled latent warped by {share} "
                                   "of the player's move (the translation; the generator turns it) with depth from "
                                   "the map's walls before each step (no training)",
                                   {"from": "ship", "sampling": {"warp_move": share}}, None)
       for share in (0.5, 1.0)},
    "ship-write-back": ("the shipped world (keyframe pull 0.4, doors) with generated frames written back (512 "
                        "slots): each cell and heading bin keeps the frame its first 2 s settled on under the "
                        "keyframe's pull, and later the pull goes toward it (no training)",
                        {"from": "ship", "memory": {"write_back": 512}}, None),
    "ship-memory-dense": ("the shipped world played with a denser keyframe memory: 8,000 keyframes, one per 24-unit "
                          "cell and 15-degree heading bin (the shipped one: 3,000, 32 units, 22.5 degrees), pull 0.4 "
                          "(no training)",
                          {"steps": 0, "world": {"movement": True, "memory": {
                              "keyframes": 8000, "cell": 24.0, "heading_bins": 24, "condition": False, "pull": 0.4}}},
                          None),
    **{f"ship-pull-coarse-{scale}-{pull}": (f"the shipped world as it plays now (walls, hold still, write-back) "
                                            f"with the pull moving only the mean of {scale}x{scale} latent cells, "
                                            f"{pull} of the way: the keyframe anchors the layout, the generator "
                                            "keeps its detail (no training)",
                                            {"from": "ship", "memory": {"pull": pull, "pull_scale": scale}}, None)
       for scale, pull in ((2, 0.4), (4, 0.4))},
    "ship-hold-still": ("the shipped world (keyframe pull 0.4, doors) with the generator's input noise held while the "
                        "tracked pose does not change (standing, or stopped by a wall; no training)",
                        {"from": "ship", "sampling": {"hold_still": True}}, None),
    **{f"ship-memory-pull-{pull}": (f"shipped world with the learned movement and a keyframe memory (issue 12), "
                                    f"the recycled latent pulled {pull} toward the keyframe of its pose at play "
                                    "(no training)",
                                    {"steps": 0, "world": {"movement": True, "memory": {
                                        "keyframes": 3000, "condition": False, "pull": pull}}}, None)
       for pull in (0.1, 0.2, 0.4, 0.6)},
    "ship-memory-pull-0.4-noise-0.1": ("ship-memory-pull-0.4 played with context noise 0.1 (level told to the model)",
                                       {"steps": 0, "world": {"movement": True, "memory": {
                                           "keyframes": 3000, "condition": False, "pull": 0.4}}}, 0.1),
    "unroll-96-noise": ("96-frame rollouts, context noise up to 0.3 in training, 0.1 at play",
                        {"clip_frames": 96, "context_noise": 0.3, "play_context_noise": 0.1, "batch": 2}, None),
}


def train_arm(name: str, overrides: dict, out: Path, recipe_name: str) -> Path:
    recipe = load_recipe(recipe_name)
    overrides = dict(overrides)
    stage = overrides.pop("stage", "unroll")
    if "scheme" in overrides:  # another conditioning scheme on the same recordings (e.g. the world encoding)
        recipe = replace(recipe, data=replace(recipe.data, scheme=overrides.pop("scheme")))
    if "model" in overrides:  # how the generator is shown its inputs (e.g. the recycled frame warped by the move)
        recipe = replace(recipe, model=replace(recipe.model, **overrides.pop("model")))
    if "world" in overrides:  # the world's state beyond pixels (worldsim/world): movement, keyframe memory
        recipe = replace(recipe, world=from_dict(WorldSpec, overrides.pop("world"), path="world"))
    config = replace(getattr(recipe, stage), **overrides)
    if stage == "adversarial":  # the proxy's adversarial arms fine-tune a finished world like its unroll arms
        # (the shipped one unless the arm names another); no R1/R2: two discriminator passes fewer
        config = replace(config, init=overrides.get("init", recipe.unroll.init), lr_generator=3e-5,
                         lr_discriminator=3e-5, r1_weight=0.0, regression_weight=1.0)
    config = replace(config, steps=overrides.get("steps", MAX_STEPS), save_every=25, log_every=5, sample_every=0)
    checkpoint = out / name / stage / "checkpoint"
    done = out / name / "trained.json"
    if done.exists():
        return checkpoint
    train(replace(recipe, **{stage: config}), stage, out / name, resume=checkpoint.exists(),
          time_budget=ARM_MINUTES * 60)
    meta = json.loads((checkpoint / "trainer.json").read_text())
    done.write_text(json.dumps({"stage": stage, "steps": meta["step"], "minutes": meta["elapsed_s"] / 60}))
    print(f"{name}: trained {meta['step']} {stage} steps in {meta['elapsed_s'] / 60:.1f} min", flush=True)
    return checkpoint


def arm_checkpoint(name: str, out: Path) -> Path:
    """An arm's checkpoint (trained, or a play variant), or the shipped one ("ship")."""
    if name == "ship":
        return Path(SHIPPED)
    if not (out / name / "trained.json").exists():
        return out / name / "checkpoint"
    stage = json.loads((out / name / "trained.json").read_text())["stage"]
    return out / name / stage / "checkpoint"


def play_variant(name: str, overrides: dict, out: Path) -> Path:
    """Another arm's checkpoint (or the shipped one: "ship") played with other keyframe-memory, sampling or
    generator settings (a copy with those config entries changed), or with another arm's movement (`movement`:
    that arm's name)."""
    checkpoint = out / name / "checkpoint"
    if not checkpoint.exists():
        shutil.copytree(arm_checkpoint(overrides["from"], out), checkpoint)
        if "movement" in overrides:
            shutil.copy(arm_checkpoint(overrides["movement"], out) / "movement.safetensors", checkpoint)
        config = yaml.safe_load((checkpoint / "config.yaml").read_text())
        for section in ("memory", "sampling", "generator"):
            config[section].update(overrides.get(section, {}))
        (checkpoint / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return checkpoint


def evaluate_arm(name: str, checkpoint: str | Path, play_noise: float | None, out: Path, frames: int,
                 episodes: int, ground_truth: Path, idm: Path | None = None) -> dict:
    metrics_path = out / name / "eval" / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    config = EvalConfig(frames=frames, episodes=episodes, context_noise=play_noise, video=False)
    return evaluate(checkpoint, out / name / "eval", config, idm=idm, ground_truth_dir=ground_truth, progress=False)


def row(name: str, metrics: dict) -> dict:
    """The lever table's figures of one arm."""
    psnr = metrics["psnr"]
    probes = metrics.get("probes", {})
    degeneration = metrics.get("degeneration", {})
    last = str(metrics["frames"])
    return {
        "arm": name, "what": ARMS.get(name, ("?",))[0],
        "psnr_at": {h: round(v, 2) for h, v in psnr["model"]["at"].items()},
        "copy_first_at": {h: round(v, 2) for h, v in psnr["copy_first"]["at"].items()},
        "beats_copy_first": metrics.get("beats_copy_first"),
        "teacher_forced": round(psnr["model_teacher"]["mean"], 2),
        "turned_previous": round(psnr.get("turned_previous", {}).get("mean", float("nan")), 2),
        "first_fired": degeneration.get("model", {}).get("first_fired"),
        "flagged": round(degeneration.get("model", {}).get("flagged_fraction", float("nan")), 3),
        "engine_flagged": round(degeneration.get("engine", {}).get("flagged_fraction", float("nan")), 4),
        "sharpness_last_window": round(metrics["sharpness_ratio"]["model"]["windows"][-1], 2),
        "still_change": round(probes.get("stand_still", {}).get("model", {}).get("mean_change", float("nan")), 2),
        "still_last_vs_first": round(probes.get("stand_still", {}).get("model", {}).get("last_vs_first_psnr",
                                                                                       float("nan")), 1),
        "wall_change": round(probes.get("walk_into_wall", {}).get("model", {}).get("change_when_blocked",
                                                                                  float("nan")), 2),
        "strafe_ratio": round(probes.get("strafe", {}).get("shift_ratio", float("nan")), 2),
        "turn_full_over_half": round(probes.get("turn_in_place", {}).get("model", {}).get("full_over_half_db",
                                                                                         float("nan")), 1),
        "loop_return_over_far": round(probes.get("walk_loop", {}).get("model", {}).get("return_over_far_db",
                                                                                       float("nan")), 1),
        "keyframe_at": {h: round(v, 2) for h, v in psnr.get("keyframe", {}).get("at", {}).items()},
        "warped_previous": round(psnr.get("warped_previous", {}).get("mean", float("nan")), 2),
        "action_agreement": round((metrics.get("action_agreement") or {}).get("model", {}).get("mean", {}).get(
            "all", float("nan")), 3),
        "psnr_last": round(psnr["model"]["at"][last], 2),
    }


def markdown(rows: list[dict]) -> str:
    head = ("| arm | PSNR h24 / h96 / last (copy-first) | beats copy-first (share of h>=24) | teacher-forced "
            "(turned-prev) | detector: first fired / flagged (engine) | sharpness, last window | still: change / "
            "last-vs-first dB | wall change | strafe ratio | turn: full-half dB | loop: return-far dB "
            "| keyframe yardstick | action agreement (--idm) |\n" + "|---" * 13 + "|\n")
    lines = []
    for r in rows:
        at, first = r["psnr_at"], r["copy_first_at"]
        hs = [h for h in ("24", "96") if h in at] + [list(at)[-1]]
        keyframe = r.get("keyframe_at") or {}
        loop = r.get("loop_return_over_far", float("nan"))
        lines.append(
            f"| {r['arm']} | {' / '.join(f'{at[h]:.2f}' for h in hs)} ({' / '.join(f'{first[h]:.2f}' for h in hs)}) "
            f"| {r['beats_copy_first']:.2f} | {r['teacher_forced']:.2f} ({r['turned_previous']:.2f}) "
            f"| {r['first_fired']} / {r['flagged']:.2f} ({r['engine_flagged']:.4f}) | {r['sharpness_last_window']:.2f} "
            f"| {r['still_change']:.2f} / {r['still_last_vs_first']:.1f} | {r['wall_change']:.2f} "
            f"| {r['strafe_ratio']:.2f} | {r['turn_full_over_half']:.1f} | {loop:.1f} "
            f"| {' / '.join(f'{keyframe[h]:.2f}' for h in hs) if keyframe else '-'} "
            f"| {r.get('action_agreement', float('nan')):.3f} |")
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default="", help=f"comma-separated arms: {', '.join(ARMS)}")
    parser.add_argument("--out", default="runs/proxy")
    parser.add_argument("--recipe", default="stability-proxy")
    parser.add_argument("--frames", type=int, default=1440)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--ground-truth", default="runs/gt", help="held-out engine frames, shared by all arms")
    parser.add_argument("--table", default=None, help="print the lever table of the arms in this folder and stop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--idm", default=None, help="an inverse-dynamics judge (runs/idm): arms get action agreement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.table or args.out)
    if not args.table:
        for name in [a for a in args.arms.split(",") if a]:
            if name not in ARMS:
                raise SystemExit(f"unknown arm {name!r}; known: {', '.join(ARMS)}")
            _, overrides, play_noise = ARMS[name]
            if overrides is None:
                checkpoint = SHIPPED
            elif "from" in overrides:
                checkpoint = play_variant(name, overrides, out)
            else:
                checkpoint = train_arm(name, overrides, out, args.recipe)
            evaluate_arm(name, checkpoint, play_noise, out, args.frames, args.episodes, Path(args.ground_truth),
                         args.idm and Path(args.idm))
            print(f"{name}: evaluated", flush=True)
    rows = [row(p.parent.parent.name, json.loads(p.read_text())) for p in sorted(out.glob("*/eval/metrics.json"))]
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
