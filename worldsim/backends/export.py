"""ONNX export of a checkpoint: the generator's cached step and the decoder, static-shaped, batch 1.

    generator_step.onnx        one step: frame inputs + position plan + KV cache in -> velocity + KV cache out
    generator_step.int8.onnx   the same with dynamic int8 matmul weights (--quantize int8; CPU)
    decoder.onnx               latent (1, C, h, w) -> frame (1, 3, H, W)
    export.json                what was exported from what, input/output names, and the measured agreement

The step graph is the same for every frame: what depends on the frame's position (rotary tables, the cache entries
it writes, the sink store, the visibility mask) comes in as the plan's tensors (`plan_step`), and the cache comes in
and goes out as per-layer tensors (ring buffer + sink keys), so the runtime owns the cache and the graph has no state.
Its agreement with torch is measured at export over a rollout longer than the window (the ring wraps and the sink is
read), and recorded in export.json.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from worldsim.checkpoint import swap_in_directory
from worldsim.config import to_dict
from worldsim.errors import WorldsimError
from worldsim.files import parse_json, read_text
from worldsim.models.generator import Generator, GeneratorConfig, StepPlan, plan_step

FORMAT = "worldsim-onnx"
VERSION = 1
OPSET = 18
STEP_FILE = "generator_step.onnx"
INT8_STEP_FILE = "generator_step.int8.onnx"
DECODER_FILE = "decoder.onnx"
MANIFEST_FILE = "export.json"
EXPORT_FILES = (STEP_FILE, INT8_STEP_FILE, DECODER_FILE, MANIFEST_FILE)  # the int8 step may be added by the backend
MAX_MANIFEST_BYTES = 1_000_000
PLAN_INPUTS = ("rope_cos", "rope_sin", "sink_cos", "sink_sin", "key_index", "value_index", "sink_index", "store_sink",
               "mask")
# Largest difference between onnxruntime and torch eager (float32, CPU) accepted over a verification rollout, in
# latent units (unit variance) and in frame units ([-1, 1]). Measured agreement is about 1e-5: float rounding only.
LATENT_TOLERANCE = 1e-3
FRAME_TOLERANCE = 1e-3
VERIFY_EXTRA_FRAMES = 8  # frames past window + sink in the verification rollout: the ring wraps, the sink is read


def frame_input_names(config: GeneratorConfig) -> list[str]:
    """The step's per-frame inputs; a scheme without token (or frame) conditions has no such input."""
    names = ["noisy", "recycled"]
    if config.token_cond_channels:
        names.append("token_cond")
    if config.frame_cond_dim:
        names.append("frame_cond")
    return names + ["t", "aug"]


def cache_names(config: GeneratorConfig, suffix: str = "") -> list[str]:
    """Per-layer cache tensors in graph order: keys, values, sink keys (`suffix` '_out' for the outputs)."""
    return [f"{kind}{layer}{suffix}" for kind in ("k", "v", "sink_k") for layer in range(config.depth)]


class ExportedStep(nn.Module):
    """Generator.cached_step with flat tensor inputs and outputs, branch-free in the position (`traced=True`)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator
        self.frame_inputs = frame_input_names(generator.config)
        self.depth = generator.config.depth

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_frame, n_plan, L = len(self.frame_inputs), len(PLAN_INPUTS), self.depth
        frame = dict(zip(self.frame_inputs, inputs[:n_frame]))
        plan = dict(zip(PLAN_INPUTS, inputs[n_frame:n_frame + n_plan]))
        cache = inputs[n_frame + n_plan:]
        step_plan = StepPlan(plan["rope_cos"], plan["rope_sin"], plan["sink_cos"], plan["sink_sin"],
                             plan["key_index"], plan["sink_index"], plan["key_index"], plan["value_index"],
                             plan["store_sink"], plan["mask"], storing_sink=False)
        velocity, k, v, sink_k = self.generator.cached_step(
            frame["noisy"], frame["recycled"], frame.get("token_cond"), frame.get("frame_cond"), frame["t"],
            frame["aug"], cache[:L], cache[L:2 * L], cache[2 * L:], step_plan, in_place=False, traced=True)
        return (velocity, *k, *v, *sink_k)


class ExportedDecoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent)


def step_example(generator: Generator, dtype: torch.dtype) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Input names and example tensors of the step graph (zeros; a steady-state position, full mask)."""
    c = generator.config
    cache = generator.new_cache(1, "cpu", dtype, per_layer=True)
    cache.position = c.window + c.sink
    plan = plan_step(cache, generator.rotary, full_mask=True)
    latent = torch.zeros((1, c.latent_channels, *c.latent_size), dtype=dtype)
    frame = {"noisy": latent, "recycled": latent, "token_cond": torch.zeros((1, c.token_cond_channels, *c.grid),
                                                                            dtype=dtype),
             "frame_cond": torch.zeros((1, c.frame_cond_dim), dtype=dtype), "t": torch.ones(1, dtype=dtype),
             "aug": torch.zeros(1, dtype=dtype)}
    names = frame_input_names(c) + list(PLAN_INPUTS) + cache_names(c)
    tensors = ([frame[n] for n in frame_input_names(c)] + [getattr(plan, n) for n in PLAN_INPUTS]
               + [*cache.k, *cache.v, *cache.sink_k])
    return names, tuple(tensors)


def _register_symbolics() -> None:
    """aten::rms_norm has no TorchScript-exporter symbolic at opset 18: spell it out, x / sqrt(mean(x^2) + eps)."""
    with warnings.catch_warnings():  # importing the TorchScript exporter warns that TorchScript is deprecated
        warnings.simplefilter("ignore")
        from torch.onnx import JitScalarType, register_custom_op_symbolic, symbolic_helper

    @symbolic_helper.parse_args("v", "is", "v", "f")
    def rms_norm(g, x, normalized_shape, weight, eps):
        axes = g.op("Constant", value_t=torch.tensor(list(range(-len(normalized_shape), 0)), dtype=torch.long))
        mean_square = g.op("ReduceMean", g.op("Mul", x, x), axes, keepdims_i=1)
        eps_value = g.op("Constant", value_t=torch.tensor(eps, dtype=torch.float32))
        root = g.op("Sqrt", g.op("Add", mean_square, g.op("CastLike", eps_value, x)))
        y = g.op("Div", x, root)
        return y if symbolic_helper._is_none(weight) else g.op("Mul", y, weight)

    @symbolic_helper.parse_args("v", "v", "v", "v", "f", "b", "v", "b")
    def attention(g, query, key, value, mask, dropout_p, is_causal, scale, enable_gqa):
        # softmax(q k^T / sqrt(d) + mask) v, without the exporter's guard against fully masked rows (a Where over
        # every score: 2 ms per frame in onnxruntime). A frame always sees its own entries, so no row is empty.
        head_dim = symbolic_helper._get_tensor_sizes(query)[-1]
        q = g.op("Mul", query, g.op("CastLike", g.op("Constant", value_t=torch.tensor(head_dim ** -0.5)), query))
        scores = g.op("MatMul", q, g.op("Transpose", key, perm_i=[0, 1, 3, 2]))
        if not symbolic_helper._is_none(mask):
            if symbolic_helper._try_get_scalar_type(mask) == JitScalarType.BOOL:  # visible 0, hidden -inf; (1, L)
                zero = g.op("CastLike", g.op("Constant", value_t=torch.tensor(0.0)), query)
                hidden = g.op("CastLike", g.op("Constant", value_t=torch.tensor(float("-inf"))), query)
                mask = g.op("Where", mask, zero, hidden)
            scores = g.op("Add", scores, mask)
        return g.op("MatMul", g.op("Softmax", scores, axis_i=-1), value)

    register_custom_op_symbolic("aten::rms_norm", rms_norm, OPSET)
    register_custom_op_symbolic("aten::scaled_dot_product_attention", attention, OPSET)


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    # The TorchScript exporter: the graph is static, and it needs nothing beyond torch and onnx (the dynamo
    # exporter would add onnxscript as a dependency).
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=input_names, output_names=output_names,
                          opset_version=OPSET, do_constant_folding=True)


def quantize_int8(step_path: Path, out_path: Path) -> None:
    """Dynamic int8 quantisation of the step's matmul weights (activations quantised per call): for CPUs with
    VNNI/AMX int8. The quality cost is measured by `worldsim bench`, not assumed."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice on pre-processing meant for image models
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(step_path), str(out_path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)


def export_checkpoint(checkpoint, out_dir: str | Path, dtype: torch.dtype = torch.float32, quantize: str = "none",
                      verify: bool = True, overwrite: bool = False) -> dict:
    """Export `checkpoint` (a loaded Checkpoint) into `out_dir`; returns the manifest written to export.json.

    Written into a temporary directory next to `out_dir` and renamed into place, so a failed export leaves nothing
    half-written. `overwrite` replaces an earlier export only (see `check_out_dir`). `verify` runs the exported
    graphs against torch over a rollout that wraps the ring."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, checkpoint.path, overwrite)
    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError:
        raise WorldsimError("ONNX export needs the onnx package: pip install 'worldsim[onnx]'") from None
    _register_symbolics()
    generator = copy.deepcopy(checkpoint.generator).to("cpu", dtype).eval()
    vae = copy.deepcopy(checkpoint.vae).to("cpu", dtype).eval()
    c = generator.config
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        start = time.perf_counter()
        names, args = step_example(generator, dtype)
        outputs = ["velocity", *cache_names(c, "_out")]
        _export(ExportedStep(generator), args, tmp / STEP_FILE, names, outputs)
        latent = torch.zeros((1, c.latent_channels, *c.latent_size), dtype=dtype)
        _export(ExportedDecoder(vae), (latent,), tmp / DECODER_FILE, ["latent"], ["frames"])
        files = {"step": STEP_FILE, "decoder": DECODER_FILE}
        if quantize == "int8":
            quantize_int8(tmp / STEP_FILE, tmp / INT8_STEP_FILE)
            files["step_int8"] = INT8_STEP_FILE
        manifest = {
            "format": FORMAT, "version": VERSION, "opset": OPSET, "dtype": str(dtype).removeprefix("torch."),
            "checkpoint": str(checkpoint.path) if checkpoint.path else None,
            "checkpoint_id": _checkpoint_id(checkpoint), "generator": to_dict(c),
            "vae": to_dict(checkpoint.config.vae), "files": files,
            "step_inputs": names, "step_outputs": outputs, "export_s": round(time.perf_counter() - start, 2),
            # every file of the export (a graph over 2 GB keeps its weights in files beside it): what a later
            # --overwrite may replace
            "written": sorted({p.name for p in tmp.iterdir()} | {MANIFEST_FILE}),
        }
        _write_manifest(tmp, manifest)
        if verify:
            manifest["verified"] = verify_export(checkpoint, tmp)
            _write_manifest(tmp, manifest)
        check_out_dir(out_dir, checkpoint.path, overwrite)  # again: the export took a while
        swap_in_directory(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def check_out_dir(out_dir: Path, checkpoint_dir: Path | None, overwrite: bool) -> None:
    """Refuse an --out whose replacement would lose files: the checkpoint's folder or one holding it, a file, a
    link, a non-empty folder without `overwrite`, and with it any folder but an earlier export of only its own
    files (the files its export.json lists)."""
    if checkpoint_dir is not None:
        source, target = Path(checkpoint_dir).resolve(), out_dir.resolve()
        if target == source or target in source.parents:
            raise WorldsimError(f"--out {out_dir} is the checkpoint's folder or holds it ({checkpoint_dir}); "
                                "write the export to another folder")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise WorldsimError(f"--out {out_dir} exists and is not a folder; allowed: a new or empty folder, or an "
                            "earlier export with --overwrite")
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    if not entries:
        return
    if not overwrite:
        raise WorldsimError(f"{out_dir} exists and is not empty; pass --overwrite to replace an earlier export "
                            "there")
    ours = _export_files(out_dir)
    if ours is None:
        raise WorldsimError(f"{out_dir} is not an earlier export (no readable {MANIFEST_FILE}), so --overwrite "
                            "does not replace it; allowed: a new or empty folder, or an earlier export")
    others = [name for name in entries if name not in ours]
    if others:
        raise WorldsimError(f"{out_dir} holds files an export did not write ({', '.join(others[:3])}), so "
                            "--overwrite does not replace it; move them, or export to a new or empty folder")


def _export_files(folder: Path) -> set[str] | None:
    """The names an earlier export in `folder` wrote, from its manifest; None when it is not one."""
    try:
        manifest = parse_json(read_text(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except (WorldsimError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    written = manifest.get("written", [])  # exports from before the list have only EXPORT_FILES
    if not isinstance(written, list):
        return None
    return set(EXPORT_FILES) | {name for name in written if isinstance(name, str)}


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _checkpoint_id(checkpoint) -> str:
    from worldsim.runtime.recorder import checkpoint_fingerprint

    return checkpoint_fingerprint(checkpoint.path) if checkpoint.path else "in-memory"


def read_manifest(onnx_dir: str | Path, checkpoint) -> dict:
    """export.json of `onnx_dir`, checked against the checkpoint it will run for."""
    onnx_dir = Path(onnx_dir)
    path = onnx_dir / MANIFEST_FILE
    if not path.exists():
        raise WorldsimError(f"{onnx_dir}: no {MANIFEST_FILE}; not a worldsim ONNX export (make one with "
                            "`worldsim export --checkpoint DIR --out DIR`)")
    try:
        manifest = parse_json(read_text(path, MAX_MANIFEST_BYTES))
    except ValueError as err:
        raise WorldsimError(f"{path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("version"), int) or manifest["version"] > VERSION:
        raise WorldsimError(f"{path}: not a worldsim ONNX export this version can read")
    if manifest.get("generator") != to_dict(checkpoint.config.generator) or manifest.get("vae") != to_dict(
            checkpoint.config.vae):
        raise WorldsimError(f"{onnx_dir} was exported from a model of another shape than this checkpoint; "
                            "re-export it with `worldsim export`")
    expected = _checkpoint_id(checkpoint)
    if "in-memory" not in (expected, manifest.get("checkpoint_id")) and manifest.get("checkpoint_id") != expected:
        raise WorldsimError(f"{onnx_dir} was exported from checkpoint {manifest.get('checkpoint_id')}, this one is "
                            f"{expected}; re-export it with `worldsim export`")
    return manifest


@torch.inference_mode()
def verify_export(checkpoint, onnx_dir: str | Path, frames: int | None = None, quantize: str = "none",
                  seed: int = 0) -> dict:
    """Roll out torch eager (fp32, CPU) and the exported graphs (onnxruntime, CPU) from the same first latent with
    the same noise and conditions, `window + sink + 8` frames by default (the ring wraps, the sink is read), and
    compare every latent and decoded frame. Raises if they differ by more than the tolerances."""
    from worldsim.backends.base import BackendConfig
    from worldsim.backends.onnx_runtime import OnnxBackend
    from worldsim.backends.torch_backends import EagerBackend
    from worldsim.rollout import step_frame

    c = checkpoint.config.generator
    frames = frames or c.window + c.sink + VERIFY_EXTRA_FRAMES
    reference = copy.copy(checkpoint)
    reference.generator, reference.vae = (copy.deepcopy(checkpoint.generator).float(),
                                          copy.deepcopy(checkpoint.vae).float())
    torch_side = EagerBackend(reference, BackendConfig(), torch.device("cpu"), torch.float32)
    onnx_side = OnnxBackend(reference, BackendConfig(name="onnx", quantize=quantize, onnx_dir=str(onnx_dir)),
                            torch.device("cpu"), torch.float32, verify_manifest=False)
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(shape, generator=gen)  # noqa: E731
    latent = randn(1, c.latent_channels, *c.latent_size)
    caches = torch_side.new_cache(), onnx_side.new_cache()
    latents = [latent, latent.clone()]
    worst_latent = worst_frame = 0.0
    for _ in range(frames):
        noise = randn(1, c.latent_channels, *c.latent_size)
        token = randn(1, c.token_cond_channels, *c.grid) if c.token_cond_channels else None
        frame_cond = randn(1, c.frame_cond_dim) if c.frame_cond_dim else None
        for i, backend in enumerate((torch_side, onnx_side)):
            latents[i] = step_frame(backend, caches[i], latents[i], frame_cond, token, noise, vae=reference.vae)
        pictures = [torch_side.decode(latents[0]).float(), onnx_side.decode(latents[1]).float()]
        worst_latent = max(worst_latent, float((latents[0] - latents[1]).abs().max()))
        worst_frame = max(worst_frame, float((pictures[0] - pictures[1]).abs().max()))
    onnx_side.close()
    result = {"frames": frames, "window": c.window, "sink": c.sink, "max_abs_latent": worst_latent,
              "max_abs_frame": worst_frame, "latent_tolerance": LATENT_TOLERANCE, "frame_tolerance": FRAME_TOLERANCE,
              "within_tolerance": bool(worst_latent <= LATENT_TOLERANCE and worst_frame <= FRAME_TOLERANCE)}
    if quantize == "none" and not result["within_tolerance"]:
        raise WorldsimError(f"the ONNX export differs from torch by {worst_latent:.3g} (latent) / {worst_frame:.3g} "
                            f"(frame) over {frames} frames; tolerance {LATENT_TOLERANCE:g}")
    return result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 frames `a` against `b` (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
