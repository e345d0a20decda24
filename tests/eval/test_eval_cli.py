"""`worldsim eval` end to end on a tiny checkpoint against ViZDoom, and `evaluate()` from Python."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("vizdoom", reason="ViZDoom not installed (pip install 'worldsim[train]')")

from worldsim.cli import main  # noqa: E402
from worldsim.eval.evaluate import ENGINE, EvalConfig, evaluate  # noqa: E402

CANDIDATES = ["model", "model_teacher", "vae", "copy_previous", "copy_first"]
SMALL = ["--frames", "24", "--episodes", "2", "--window", "8", "--no-progress"]


@pytest.fixture(scope="module")
def cli_run(tiny_checkpoint, tiny_idm, shared_ground_truth, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--idm", str(tiny_idm),
               "--ground-truth", str(shared_ground_truth), *SMALL])
    return rc, out


def test_eval_writes_metrics_charts_and_video(cli_run, capsys):
    import imageio.v2 as imageio

    rc, out = cli_run
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("checkpoint", "config", "speed", "idm", "definitions", "headline", "psnr", "ssim",
                "teacher_forced_psnr", "action_agreement", "frechet", "sharpness_ratio",
                "color_histogram_distance", "windows", "per_frame", "plots", "video", "degeneration", "probes",
                "beats_copy_first"):
        assert key in metrics, key
    # the detector judged the model and the engine's own frames (its false positives); the probes ran both
    assert len(metrics["degeneration"]["model"]["first_fired"]) == 2
    assert 0 <= metrics["degeneration"][ENGINE]["flagged_fraction"] <= 1
    assert (out / "detector" / "detector.json").exists()
    assert set(metrics["probes"]) >= {"stand_still", "walk_into_wall", "strafe", "turn_in_place", "sheet"}
    assert metrics["probes"]["stand_still"]["engine"]["mean_change"] < 0.5  # the engine stands still
    assert (out / metrics["probes"]["sheet"]).exists()
    assert list(metrics["psnr"]) == CANDIDATES and list(metrics["psnr"]["model"]["at"]) == ["1", "8", "24"]
    assert list(metrics["action_agreement"]) == [*CANDIDATES, ENGINE]
    assert metrics["windows"] == [[1, 8], [9, 16], [17, 24]]
    assert len(metrics["frechet"]["model"]["windows"]) == 3 and metrics["frechet"]["model"]["drift_ratio"] > 0
    assert len(metrics["per_frame"]["psnr"]["model"]) == 24
    assert metrics["speed"]["frames_per_s"] > 0 and metrics["speed"]["sampler_steps"] == 1
    assert metrics["headline"]["teacher_forced_psnr"] == metrics["psnr"]["model_teacher"]["mean"]
    for name in metrics["plots"]:
        assert (out / name).stat().st_size > 1000
    assert {"psnr_per_frame.png", "ssim_per_frame.png", "action_agreement_per_window.png",
            "frechet_per_window.png", "sharpness_ratio_per_window.png"} <= set(metrics["plots"])
    video = imageio.mimread(out / metrics["video"])
    assert len(video) == 25  # the shared start frame + 24 generated
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_yardsticks_are_the_metrics_of_the_engine_frames(cli_run, shared_ground_truth, tiny_checkpoint):
    """copy_previous / copy_first in metrics.json are exactly the PSNR of the engine's own frames."""
    from worldsim.data.dataset import resize_frames
    from worldsim.data.storage import load_episodes
    from worldsim.eval.metrics import psnr

    _, out = cli_run
    metrics = json.loads((out / "metrics.json").read_text())
    h, w = metrics["checkpoint"]["image_size"]
    episodes = sorted(load_episodes(shared_ground_truth), key=lambda e: e.id)[:2]
    real = [resize_frames(e.frames[:25], (w, h)) for e in episodes]
    at_8 = np.mean([psnr(r[7:8], r[8:9]) for r in real])  # copy_previous at frame 8: frame 7 vs frame 8
    assert metrics["psnr"]["copy_previous"]["at"]["8"] == pytest.approx(at_8, abs=1e-4)
    first_24 = np.mean([psnr(r[0:1], r[24:25]) for r in real])
    assert metrics["psnr"]["copy_first"]["at"]["24"] == pytest.approx(first_24, abs=1e-4)


def test_evaluate_from_python_without_idm_reuses_the_ground_truth(tiny_checkpoint, shared_ground_truth,
                                                                   cli_run, tmp_path, monkeypatch):
    from worldsim.eval import ground_truth

    monkeypatch.setattr(ground_truth, "_record", lambda *a, **k: pytest.fail("recorded twice"))
    config = EvalConfig(frames=12, episodes=1, window=6, video=False, steps=2, probes=False, detector=False)
    metrics = evaluate(tiny_checkpoint, tmp_path / "out", config, ground_truth_dir=shared_ground_truth,
                       progress=False)
    assert "probes" not in metrics and "degeneration" not in metrics
    assert metrics["action_agreement"] is None and metrics["frechet"] is None and metrics["video"] is None
    assert metrics["speed"]["sampler_steps"] == 2
    assert list(metrics["psnr"]["model"]["at"]) == ["1", "8", "12"]
    assert (tmp_path / "out" / "metrics.json").exists()
    assert "action_agreement_per_window.png" not in metrics["plots"]


def test_evaluate_a_keys_world(tiny_keys_checkpoint, tmp_path):
    metrics = evaluate(tiny_keys_checkpoint, tmp_path / "out", EvalConfig(frames=6, episodes=1, window=3,
                                                                          reference_episodes=2, reference_frames=20),
                       progress=False)
    assert set(metrics["probes"]) == {"stand_still", "walk_into_wall", "strafe", "turn_in_place", "walk_loop", "sheet"}
    assert metrics["checkpoint"]["scheme"] == "keys" and len(metrics["windows"]) == 2
    assert (tmp_path / "out" / metrics["video"]).exists()


def test_train_idm_command_uses_the_checkpoint_resolution(doom_dataset, tiny_checkpoint, tmp_path, capsys):
    from worldsim.eval.idm import load_idm

    rc = main(["eval", "--train-idm", "--data", str(doom_dataset), "--idm", str(tmp_path / "idm"),
               "--checkpoint", str(tiny_checkpoint), "--idm-steps", "2", "--no-progress"])
    assert rc == 0
    idm = load_idm(tmp_path / "idm")
    assert idm.model.config.image_size == (16, 24)
    assert set(idm.metrics["val_accuracy"]) == {"all", "forward", "strafe", "yaw"}
    assert "ceiling" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--out", "x"], "--checkpoint and --out are required"),
    (["--checkpoint", "does/not/exist", "--out", "x"], "no such checkpoint"),
    (["--train-idm", "--idm", "x"], "--data"),
    (["--frames", "0"], "at least 1"),
    (["--context-noise", "1.5"], "--context-noise must be 0 to 1"),
])
def test_user_mistakes_are_one_line_errors(args, message, tiny_checkpoint, tmp_path, capsys):
    if args[0] in ("--frames", "--context-noise"):
        args = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"), *args]
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_idm_without_data_is_refused(tiny_checkpoint, tmp_path, capsys):
    rc = main(["eval", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o"),
               "--idm", str(tmp_path / "no-idm")])
    assert rc == 2 and "pass --data" in capsys.readouterr().err


def test_earlier_results_are_not_replaced_without_overwrite(cli_run, tiny_checkpoint, capsys, monkeypatch):
    """Refused before evaluating; --overwrite lets the evaluation run (stubbed here: it takes a while)."""
    import worldsim.eval.cli as eval_cli
    from worldsim.errors import WorldsimError

    _, out = cli_run
    before = (out / "metrics.json").read_bytes()

    def evaluate_stub(*args, **kwargs):
        raise WorldsimError("evaluation reached")

    monkeypatch.setattr(eval_cli, "evaluate", evaluate_stub)
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *SMALL]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "metrics.json already exists (an earlier evaluation); pass --overwrite" in err
    assert (out / "metrics.json").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 2 and "evaluation reached" in capsys.readouterr().err
