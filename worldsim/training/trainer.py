"""The training loop every stage shares: resume, atomic checkpoints, JSONL logs, a progress bar, NaN guard, samples.

A stage provides `step(i) -> stats` (one optimisation step, losses already backpropagated and applied) and the
modules and optimisers to save. Checkpoints are runtime checkpoints (the stage's generator and VAE play directly)
plus the training state: optimiser tensors, the discriminator, the random state, the step.

A run killed while saving leaves temporary copies beside the checkpoint, or (between the two renames of
`swap_in_directory`) only the previous checkpoint under its temporary name; the next start repairs both before it
decides whether there is anything to resume.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from worldsim import files
from worldsim.checkpoint import CheckpointConfig, read_weights, save_checkpoint
from worldsim.errors import WorldsimError
from worldsim.training import distributed

MAX_TRAINER_JSON_BYTES = 16 << 20  # step, elapsed time and optimiser settings: kilobytes
MAX_PROBLEM_CHARS = 240  # of a damaged checkpoint's error, in the one-line message


class TrainingError(WorldsimError):
    pass


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state as flat tensors (for safetensors) plus JSON metadata; nothing is pickled."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def recover_checkpoint(path: Path) -> str | None:
    """Repair what a kill during `save_checkpoint(path)` leaves; returns what happened when it matters.

    `swap_in_directory` renames `path` to `.NAME.old`, then the new copy to `path`. Killed between the two, only
    `.NAME.old` holds a complete save: it goes back in place (otherwise a resume found no checkpoint and restarted
    the stage from step 0). The temporary copies a save writes into (`.NAME.XXXXXXXX`) are never resumed from:
    nothing but this trainer writes beside its checkpoint, so they are removed.
    """
    note = None
    old = path.with_name(f".{path.name}.old")  # swap_in_directory's name for the copy it replaces
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old)  # killed while removing it, after the swap
        else:
            os.replace(old, path)
            try:
                step = json.loads((path / "trainer.json").read_text())["step"]
            except (OSError, ValueError, KeyError, TypeError):
                step = "unknown"
            note = (f"the last save was interrupted while it was swapped in; restored the checkpoint before it "
                    f"(step {step}) to {path}")
    for leftover in path.parent.glob(f".{path.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    return note


class Trainer:
    """Runs one stage: `steps` calls of `step`, saving to `out/checkpoint` every `save_every` steps. With a
    `deadline` (a `time.monotonic()` time: the stage's share of a time budget) it stops there instead, as if its
    last step had been the stage's last: saved, logged and sampled."""

    def __init__(self, stage: str, out: Path, steps: int, log_every: int, save_every: int, sample_every: int,
                 resume: bool, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                 checkpoint_config: Callable[[int], CheckpointConfig], generator: nn.Module, vae: nn.Module,
                 start_frames: torch.Tensor | None, rng: torch.Generator,
                 sample: Callable[[int, Path], dict] | None = None,
                 before_save: Callable[[], None] | None = None, deadline: float | None = None,
                 world: dict[str, dict[str, torch.Tensor]] | None = None):
        self.stage, self.out, self.steps = stage, Path(out), steps
        self.world = world or {}  # the world's learned state (movement, memory): saved with every checkpoint
        self.deadline = deadline
        self.log_every, self.save_every, self.sample_every = log_every, save_every, sample_every
        self.modules, self.optimizers = modules, optimizers
        self.checkpoint_config, self.generator, self.vae = checkpoint_config, generator, vae
        self.start_frames, self.rng, self.sample = start_frames, rng, sample
        self.before_save = before_save
        self.checkpoint_dir = self.out / "checkpoint"
        self.log_path = self.out / "log.jsonl"
        self.step = 0
        self.elapsed = 0.0  # training seconds, carried across resumes
        if distributed.is_main():
            note = recover_checkpoint(self.checkpoint_dir)
            if note is not None:
                print(f"{stage}: {note}", file=sys.stderr, flush=True)
            for leftover in (self.out / "samples").glob(".*.tmp.*"):  # samples.py's, from a killed run
                leftover.unlink(missing_ok=True)
        distributed.barrier()  # every rank sees the repaired checkpoint
        if self.checkpoint_dir.exists():
            if not resume:
                raise TrainingError(f"{self.checkpoint_dir} already exists; pass --resume to continue it, or "
                                    "choose another --out (nothing was overwritten)")
            self._load()
        elif distributed.is_main():
            self.out.mkdir(parents=True, exist_ok=True)

    def _load(self) -> None:
        """Resume from the checkpoint. A damaged one (truncated weights, a hand-edited trainer.json, tensors that no
        longer fit the recipe's models) is one TrainingError saying what to do, not a traceback."""
        directory = self.checkpoint_dir
        weights = {p.stem: p for p in directory.glob("*.safetensors")}
        try:
            meta = files.parse_json(files.read_text(directory / "trainer.json", MAX_TRAINER_JSON_BYTES))
            for name, module in self.modules.items():
                if name in weights:
                    module.load_state_dict(read_weights(weights[name]))
            for name, optimizer in self.optimizers.items():
                load_optimizer(optimizer, read_weights(directory / f"optimizer_{name}.safetensors"),
                               meta["optimizers"][name])
            self.rng.set_state(read_weights(directory / "trainer.safetensors")["rng"])
            self.step, self.elapsed = int(meta["step"]), float(meta.get("elapsed_s", 0.0))
        except (WorldsimError, KeyError, ValueError, RuntimeError, TypeError) as err:
            # KeyError: a missing entry; RuntimeError: load_state_dict's shape mismatch; TypeError: JSON of the
            # wrong shape (a list where the optimiser settings were)
            problem = " ".join(str(err).split())  # load_state_dict lists every key over many lines
            if len(problem) > MAX_PROBLEM_CHARS:
                problem = problem[:MAX_PROBLEM_CHARS - 3] + "..."
            raise TrainingError(f"{directory} is damaged ({problem}); restore it or train into a new --out") from None

    def save(self) -> None:
        if self.before_save is not None:
            self.before_save()
        if not distributed.is_main():
            return
        extra, optim_meta = {}, {}
        for name, module in self.modules.items():
            if name not in ("generator", "vae"):
                extra[name] = {k: v.detach() for k, v in module.state_dict().items()}
        for name, optimizer in self.optimizers.items():
            extra[f"optimizer_{name}"], optim_meta[name] = optimizer_tensors(optimizer)
        extra["trainer"] = {"rng": self.rng.get_state()}
        extra.update(self.world)
        meta = {"stage": self.stage, "step": self.step, "elapsed_s": self.elapsed, "optimizers": optim_meta}
        save_checkpoint(self.checkpoint_dir, self.checkpoint_config(self.step), self.generator, self.vae,
                        self.start_frames, extra=extra, files={"trainer.json": json.dumps(meta, indent=1)})

    def log(self, record: dict) -> None:
        if distributed.is_main():
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def out_of_time(self) -> bool:
        """Past the deadline, by rank 0's clock on every rank (ranks must stop at the same step)."""
        if self.deadline is None:
            return False
        return distributed.rank0_decides(time.monotonic() >= self.deadline, next(self.generator.parameters()).device)

    def run(self, step_fn: Callable[[int], dict[str, float]]) -> Path:
        bar = tqdm(total=self.steps, initial=self.step, desc=self.stage, disable=not distributed.is_main(),
                   dynamic_ncols=True, mininterval=2.0)
        last_save = self.step
        started = time.perf_counter() - self.elapsed
        stopped = self.step < self.steps and self.out_of_time()  # no time left even for one step
        try:
            while self.step < self.steps and not stopped:
                stats = step_fn(self.step)
                bad = [k for k, v in stats.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingError(
                        f"{self.stage}: {bad[0]} became {stats[bad[0]]} at step {self.step}; stopped without "
                        f"saving, the last good checkpoint (step {last_save}) is kept in {self.checkpoint_dir}. "
                        "Lower the learning rate or enable gradient clipping in the recipe.")
                self.step += 1
                self.elapsed = time.perf_counter() - started
                bar.update(1)
                stopped = self.step < self.steps and self.out_of_time()
                last = self.step == self.steps or stopped
                if self.step % self.log_every == 0 or last:
                    self.log({"step": self.step, "time_s": round(self.elapsed, 2), **stats})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(stats.items())[:4]})
                if self.step % self.save_every == 0 or last:
                    self.save()
                    last_save = self.step
                if self.sample is not None and distributed.is_main() and (
                        (self.sample_every and self.step % self.sample_every == 0) or last):
                    self.log({"step": self.step, **self.sample(self.step, self.out / "samples")})
        finally:
            bar.close()
        if stopped and distributed.is_main():
            print(f"{self.stage}: time budget reached at step {self.step} of {self.steps} "
                  f"({self.elapsed:.1f} s of training)", file=sys.stderr, flush=True)
            self.log({"step": self.step, "time_s": round(self.elapsed, 2), "stopped": "time budget"})
        if (self.step == self.steps or stopped) and not self.checkpoint_dir.exists():
            self.save()  # zero-step stages (or no time left) still leave a checkpoint for the next stage
        for name, module in self.modules.items():
            distributed.assert_in_sync(module, f"{self.stage}/{name}")
        distributed.barrier()
        return self.checkpoint_dir


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
