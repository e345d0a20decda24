"""Training throughput per stage for a recipe's model on this machine: samples/s and tokens/s, fp32 eager vs the
recipe's bf16 autocast, measured side by side on synthetic latents of the right shapes (no data set needed).

    python benchmarks/bench_train.py --recipe doom-camera [--steps 6] [--json out.json] [--stages adversarial,adv-chain]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time

import torch

from worldsim.conditioning import load_scheme
from worldsim.models.generator import Generator
from worldsim.training.adversarial import (
    Discriminator,
    discriminator_step_loss,
    generator_step_loss,
    student_rollout,
)
from worldsim.training.clips import Clip
from worldsim.training.consistency import consistency_loss
from worldsim.training.diffusion import diffusion_loss
from worldsim.training.recipe import load_recipe
from worldsim.training.stages import model_configs


def synthetic_clip(config, batch: int, frames: int) -> Clip:
    gh, gw = config.grid
    return Clip(torch.randn(batch, frames, config.latent_channels, *config.latent_size),
                torch.randn(batch, frames, config.frame_cond_dim),
                torch.randn(batch, frames, config.token_cond_channels, gh, gw))


def measure(step, steps: int) -> float:
    step()  # warm-up (allocations, oneDNN kernel selection)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="doom-camera")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--stages", default="diffusion,consistency,adversarial,adv-chain",
                        help="comma-separated: diffusion, consistency, adversarial, adv-chain")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    gen_config, _ = model_configs(recipe, load_scheme(recipe.data.scheme))
    torch.manual_seed(0)
    generator = Generator(gen_config)
    tokens = gen_config.tokens
    results = {"recipe": recipe.name, "generator": recipe.model.generator, "tokens_per_frame": tokens,
               "parameters_M": round(sum(p.numel() for p in generator.parameters()) / 1e6, 2), "stages": {}}

    stages = set(args.stages.split(","))
    known = {"diffusion", "consistency", "adversarial", "adv-chain"}
    if stages - known:
        raise SystemExit(f"unknown --stages {sorted(stages - known)}; known: {', '.join(sorted(known))}")

    def run(name: str, cfg, loss_fn, precision: str) -> None:
        if name not in stages:
            return
        clip = synthetic_clip(gen_config, cfg.batch, cfg.clip_frames)
        g = copy.deepcopy(generator)
        opt = torch.optim.AdamW(g.parameters(), lr=1e-5)
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())

        def step() -> None:
            with autocast:
                loss = loss_fn(g, clip)
            opt.zero_grad()
            loss.backward()
            opt.step()

        seconds = measure(step, args.steps)
        generated = cfg.batch * (cfg.clip_frames - 1)
        results["stages"][f"{name}/{precision}"] = {
            "s_per_step": round(seconds, 3), "samples_per_s": round(cfg.batch / seconds, 2),
            "tokens_per_s": round(generated * tokens / seconds), "steps_in_recipe": cfg.steps,
            "recipe_hours": round(cfg.steps * seconds / 3600, 2)}
        print(f"{name:12s} {precision:5s} {seconds * 1e3:8.0f} ms/step {cfg.batch / seconds:8.2f} clips/s "
              f"{generated * tokens / seconds:9.0f} tokens/s  recipe {cfg.steps} steps = "
              f"{cfg.steps * seconds / 3600:.2f} h", flush=True)

    teacher = copy.deepcopy(generator).requires_grad_(False)
    disc = Discriminator(copy.deepcopy(generator))
    d = recipe.diffusion
    for precision in ("fp32", "bf16"):
        run("diffusion", d, lambda g, c: diffusion_loss(g, c, d.shift, d.recycle_noise)[0], precision)
    c = recipe.consistency
    run("consistency", c, lambda g, clip: consistency_loss(g, teacher, clip, c.teacher_steps, d.shift)[0], "bf16")
    a = recipe.adversarial

    def adversarial(recompute: bool):
        def loss(g, clip):
            fake = student_rollout(g, clip, recompute=recompute)
            g_loss = generator_step_loss(disc, fake, clip, clip, a.regression_weight)[0]
            d_loss = discriminator_step_loss(disc, fake, clip, clip, a.r1_weight, a.r1_sigma)[0]
            return g_loss + d_loss  # one backward through both: the cost of a G and a D update
        return loss

    # the rollout recomputed in one block-causal pass with gradients (training's default), and as the chain of
    # cached steps with a differentiable cache it replaces (the same frames and gradients)
    if a.clip_frames - 1 > gen_config.window:
        print(f"adversarial: {a.clip_frames - 1} generated frames exceed the window of {gen_config.window}, so the "
              "rollout is not recomputed in one pass: both rows measure the chain")
    run("adversarial", a, adversarial(True), "bf16")
    run("adv-chain", a, adversarial(False), "bf16")
    measured = results["stages"]
    if "diffusion" in stages:
        fp32, bf16 = measured["diffusion/fp32"]["tokens_per_s"], measured["diffusion/bf16"]["tokens_per_s"]
        results["bf16_speedup_over_fp32_eager"] = round(bf16 / fp32, 2)
        print(f"bf16 autocast vs fp32 eager (diffusion stage): {bf16 / fp32:.2f}x")
    if {"adversarial", "adv-chain"} <= stages:
        speedup = measured["adversarial/bf16"]["tokens_per_s"] / measured["adv-chain/bf16"]["tokens_per_s"]
        results["rollout_recompute_speedup"] = round(speedup, 2)
        print(f"adversarial step, rollout recomputed in one pass vs the cached chain: {speedup:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
