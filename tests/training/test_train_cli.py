"""`worldsim train` around the stages: where the data set goes, and what to run next."""

from pathlib import Path

from worldsim.cli import main
from worldsim.training import stages
from worldsim.training.recipe import load_recipe


def test_train_names_the_data_set_it_records_and_how_to_play_the_result(tmp_path, monkeypatch, capsys):
    calls = []

    def train(recipe, stage, out, resume, device, **kwargs):
        calls.append(recipe.data.dir)
        return [out / "vae" / "checkpoint", out / "long" / "checkpoint"]

    monkeypatch.setattr(stages, "train", train)
    out = tmp_path / "run"
    assert main(["train", "--recipe", "smoke", "--out", str(out), "--data", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out
    assert calls == [str(tmp_path / "data")]
    assert f"recording the data set into {tmp_path / 'data'} first" in printed
    assert printed.strip().endswith(f"play it: worldsim play --checkpoint {out / 'long' / 'checkpoint'}")


def test_shipped_recipes_keep_their_data_sets_in_the_documented_folder():
    """Data sets live in data/<name> under the current folder (the train --help rule), never inside runs/."""
    for name in ("smoke", "doom-camera"):
        assert Path(load_recipe(name).data.dir) == Path("data") / name
