"""`worldsim bench` on a tiny checkpoint: one run writes every section's keys; user mistakes are one-line errors."""

import json

import pytest

from worldsim.bench import decoder_flops, frame_flops
from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main

REQUIRED = {
    "machine": {"cpu", "cpus", "torch", "date", "load_average_start", "load_average_end"},
    "world": {"generator", "image_size", "threads", "frames"},
    "matmul_peak": {"gflops", "load_average"},
    "backends": set(),
    "ratios_vs_baseline": {"eager/float32", "onnx/float32"},
    "cache_vs_recompute": {"eager/float32"},
    "teacher_steps": {"eager/float32"},
    "flops_per_frame": {"total", "generator", "decoder_convs", "flop_counter_total"},
    "utilization": {"eager/float32", "onnx/float32"},
    "quality": {"onnx/float32", "frames"},
    "memory": {"peak_rss_mib"},
    "targets": {"fps", "latency_p95_ms", "cache_speedup", "peak_fraction"},
}
RUN_KEYS = {"fps", "latency_ms", "stage_ms", "stage_ms_p95", "cpu_ms_per_frame", "memory", "load_average"}


@pytest.fixture(scope="module")
def report(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main(["bench", "--checkpoint", str(tiny_checkpoint), "--frames", "12", "--warmup", "3", "--backend",
                 "onnx", "--threads", "1", "--quality-frames", "6", "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text())


def test_json_has_every_section(report):
    for section, keys in REQUIRED.items():
        assert section in report, section
        assert keys <= set(report[section]), (section, keys - set(report[section]))
    for label in ("eager/float32", "onnx/float32"):
        run = report["backends"][label]
        assert RUN_KEYS <= set(run) and run["fps"] > 0
        assert {"p50", "p95"} <= set(run["latency_ms"]) and "generate" in run["stage_ms_p95"]
    teacher = report["teacher_steps"]["eager/float32"]
    assert {"1_steps_ms", "8_steps_ms", "32_steps_ms", "speedup_vs_32_steps"} <= set(teacher)
    assert set(report["matmul_peak"]["gflops"]) == {"float32", "bfloat16"}


def test_flop_count_matches_torchs_counter(report, tiny_checkpoint):
    flops = report["flops_per_frame"]
    # FlopCounterMode has no formula for the CPU flash-attention kernel: everything else must agree
    assert flops["flop_counter_total"] == pytest.approx(flops["total"] - flops["generator_attention"], rel=0.02)
    vae = load_checkpoint(tiny_checkpoint).config.vae
    assert decoder_flops(vae) == frame_flops(load_checkpoint(tiny_checkpoint).config)["decoder_convs"]


def test_paper_scale_refuses_the_cpu(capsys):
    assert main(["bench", "--preset", "paper-scale"]) == 2
    assert "--allow-cpu" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--backend", "tensorrt"], "unknown backend"),
    (["--backend", "eager/int4"], "unknown dtype"),
    (["--threads", "0"], "at least 1"),
    (["--skip", "everything"], "unknown"),
])
def test_user_mistakes_are_one_line_errors(tiny_checkpoint, capsys, argv, message):
    assert main(["bench", "--checkpoint", str(tiny_checkpoint), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_preset_needs_no_checkpoint(tmp_path):
    out = tmp_path / "tiny.json"
    assert main(["bench", "--preset", "tiny", "--frames", "5", "--warmup", "2", "--backend", "eager", "--threads",
                 "1", "--skip", "recompute,teacher,flops,quality", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["world"]["source"].startswith("preset tiny")


def test_paper_scale_preset_has_the_papers_geometry():
    """Config only (no weights): 736x416 frames, 8x spatial compression, 1196 tokens per latent frame, window 30."""
    from worldsim.testing import random_config

    config = random_config("paper-scale", "paper-scale")
    g = config.generator
    assert config.vae.image_size == (416, 736) and config.vae.compression == 8
    assert g.tokens == 92 * 52 // 4 == 1196 and g.window == 30 and (g.dim, g.depth) == (4096, 36)


def test_an_existing_report_is_not_replaced_without_overwrite(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Refused before measuring (minutes), not after; --overwrite replaces it."""
    import worldsim.bench as bench

    out = tmp_path / "bench.json"
    out.write_text("precious\n")
    monkeypatch.setattr(bench, "benchmark", lambda args: pytest.fail("measured before refusing"))
    assert main(["bench", "--checkpoint", str(tiny_checkpoint), "--json", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out.read_text() == "precious\n"
    monkeypatch.setattr(bench, "benchmark", lambda args: {"world": {}})
    monkeypatch.setattr(bench, "print_report", lambda report: None)
    assert main(["bench", "--checkpoint", str(tiny_checkpoint), "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text()) == {"world": {}}
