"""`worldsim train --time-budget`: durations, a deadline that stops a stage early, and how stages share the time."""

import json
import time

import pytest
from test_trainer import make_trainer, run

from worldsim.cli import main
from worldsim.config import replace
from worldsim.errors import WorldsimError
from worldsim.training.cli import parse_duration
from worldsim.training.recipe import STAGES, Budget, load_recipe
from worldsim.training.stages import TimeBudget, train


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("90", 90), ("8m", 480), ("2h", 7200), ("1h30m", 5400),
                                          ("1.5h", 5400), (" 8M ", 480), ("1h 30m", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "8x", "-5m", "5m3h", "abc", "0s"])
def test_bad_durations_are_refused(text):
    with pytest.raises(WorldsimError, match="--time-budget"):
        parse_duration(text)


def test_a_bad_duration_is_one_line_from_the_cli(tmp_path, capsys):
    assert main(["train", "--recipe", "smoke", "--out", str(tmp_path / "run"), "--time-budget", "8 minutes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("worldsim train: error: --time-budget '8 minutes': not a duration; allowed: ")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_deadline_stops_a_stage_early_saved_and_a_resume_continues(tmp_path, capsys):
    trainer = make_trainer(tmp_path, steps=1000, resume=False)
    trainer.deadline = time.monotonic() + 0.5
    checkpoint = run(trainer)
    meta = json.loads((checkpoint / "trainer.json").read_text())
    assert 0 < meta["step"] < 1000 and meta["step"] == trainer.step and meta["elapsed_s"] >= 0.4
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {"step": trainer.step, "time_s": log[-1]["time_s"], "stopped": "time budget"}
    assert f"time budget reached at step {trainer.step} of 1000" in capsys.readouterr().err

    resumed = make_trainer(tmp_path, steps=1000, resume=True)
    resumed.deadline = time.monotonic() + 0.3
    run(resumed)
    assert resumed.step > trainer.step


def test_no_time_left_still_leaves_a_checkpoint_for_the_next_stage(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, resume=False)
    trainer.deadline = time.monotonic() - 1
    checkpoint = run(trainer)
    assert json.loads((checkpoint / "trainer.json").read_text())["step"] == 0


def test_stages_share_the_time_left_by_their_fractions(tmp_path):
    recipe = replace(load_recipe("smoke"), budget=Budget(vae=0.1, diffusion=0.5, consistency=0.1, unroll=0.0,
                                                          adversarial=0.2, long=0.1))
    budget = TimeBudget(100.0, recipe, STAGES, tmp_path)
    start = time.monotonic()
    assert budget.deadline("vae") - start == pytest.approx(10, abs=0.5)
    # the vae stage ended at once: diffusion gets 0.5 / 0.9 of the 100 s left, unroll nothing
    assert budget.deadline("diffusion") - start == pytest.approx(100 * 0.5 / 0.9, abs=0.5)
    assert budget.deadline("unroll") - time.monotonic() == pytest.approx(0, abs=0.01)
    assert budget.deadline("long") - start == pytest.approx(100, abs=0.5)  # the last stage gets all that is left
    one = TimeBudget(60.0, recipe, ("unroll",), tmp_path)  # a single stage gets it all, whatever its fraction
    assert one.deadline("unroll") - time.monotonic() == pytest.approx(60, abs=0.5)


def test_a_resumed_budget_counts_the_time_already_spent(tmp_path):
    recipe = load_recipe("smoke")
    for stage, spent in (("vae", 20.0), ("diffusion", 30.0)):
        (tmp_path / stage / "checkpoint").mkdir(parents=True)
        (tmp_path / stage / "checkpoint" / "trainer.json").write_text(json.dumps({"step": 1, "elapsed_s": spent}))
    budget = TimeBudget(100.0, recipe, STAGES, tmp_path)
    assert budget.spent == 50.0 and budget.end - time.monotonic() == pytest.approx(50, abs=0.5)


def test_every_fraction_zero_is_refused(tmp_path):
    recipe = replace(load_recipe("smoke"), budget=Budget(**{stage: 0.0 for stage in STAGES}))
    with pytest.raises(WorldsimError, match="'budget': every stage to run has a time fraction of 0"):
        TimeBudget(60.0, recipe, STAGES, tmp_path)


def test_every_stage_within_a_budget(smoke_recipe, tmp_path):
    """The smoke recipe with far more steps than 20 s allow: every stage stops at its deadline, and the next one
    starts from the checkpoint it left."""
    recipe = replace(smoke_recipe, threads=1, **{stage: replace(getattr(smoke_recipe, stage), steps=100_000)
                                                 for stage in STAGES})
    start = time.monotonic()
    paths = train(recipe, "all", tmp_path / "run", time_budget=20.0)
    assert time.monotonic() - start < 60  # setup, saves and samples on top of the 20 s
    assert [p.parent.name for p in paths] == list(STAGES)
    for path in paths:
        assert 0 <= json.loads((path / "trainer.json").read_text())["step"] < 100_000


def test_a_resumed_stage_gets_its_share_of_the_whole_budget_less_what_it_spent(tmp_path):
    recipe = replace(load_recipe("smoke"), budget=Budget(vae=0.0, diffusion=0.6, consistency=0.1, unroll=0.0,
                                                          adversarial=0.3, long=0.0))
    (tmp_path / "diffusion" / "checkpoint").mkdir(parents=True)
    (tmp_path / "diffusion" / "checkpoint" / "trainer.json").write_text(json.dumps({"step": 1, "elapsed_s": 40.0}))
    budget = TimeBudget(100.0, recipe, STAGES, tmp_path)
    start = time.monotonic()
    # 60 s of the 100 are diffusion's, 40 of them spent: 20 s more, not 0.6 of the 60 s left
    assert budget.deadline("diffusion") - start == pytest.approx(20, abs=0.5)
    over = TimeBudget(100.0, replace(recipe, budget=replace(recipe.budget, diffusion=0.3, adversarial=0.6)),
                      STAGES, tmp_path)
    assert over.deadline("diffusion") - time.monotonic() == pytest.approx(0, abs=0.01)  # its share is spent
