"""The onnx backend: the exported step and decoder run by onnxruntime, on CPU or (onnxruntime-gpu) CUDA.

The runtime owns the KV cache as torch tensors and binds them to the graph by address (I/O binding), so nothing is
copied between torch and onnxruntime: the step reads the cache from one set of per-layer buffers and writes the
updated cache into a second set, and the two swap roles after every step (ping-pong). On CUDA the buffers live on
the GPU and the cache never leaves it (the CUDA path is UNTESTED here: no GPU on the development machine).
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch

from worldsim.backends.base import Backend, BackendConfig, BackendUnavailable
from worldsim.backends.export import (
    DECODER_FILE,
    INT8_STEP_FILE,
    PLAN_INPUTS,
    STEP_FILE,
    cache_names,
    export_checkpoint,
    frame_input_names,
    quantize_int8,
    read_manifest,
)
from worldsim.errors import WorldsimError
from worldsim.models.generator import plan_step
from worldsim.models.kv_cache import KVCache

NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.bool: np.bool_}


class PingPongCache(KVCache):
    """A per-layer KVCache with a second set of buffers for the step to write the updated cache into."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, per_layer=True, **kwargs)
        self.next_k = [torch.empty_like(t) for t in self.k]
        self.next_v = [torch.empty_like(t) for t in self.v]
        self.next_sink_k = [torch.empty_like(t) for t in self.sink_k]

    def swap(self) -> None:
        """The buffers just written become the cache; the old ones are written next."""
        self.k, self.next_k = self.next_k, self.k
        self.v, self.next_v = self.next_v, self.v
        self.sink_k, self.next_sink_k = self.next_sink_k, self.sink_k


class OnnxBackend(Backend):
    def __init__(self, checkpoint, config: BackendConfig, device: torch.device, dtype: torch.dtype,
                 verify_manifest: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("the onnx backend needs onnxruntime: pip install 'worldsim[onnx]' "
                                     "(onnxruntime-gpu for CUDA)") from None
        self.config, self.device, self.dtype = config, device, dtype
        if device.type == "cpu" and dtype != torch.float32:
            raise WorldsimError(f"the onnx backend runs float32 on CPU (onnxruntime has no {dtype} CPU kernels for "
                                "this graph); use --dtype float32, or the eager/compile backends for bfloat16")
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("the onnx backend on CUDA needs onnxruntime-gpu (the installed onnxruntime "
                                         "has no CUDA execution provider)")
            if config.quantize != "none":
                raise WorldsimError("--quantize int8 is for CPU; on CUDA use --dtype float16")
            if dtype not in NUMPY_DTYPES:  # I/O binding names element types by numpy dtype, and numpy has no bf16
                raise WorldsimError(f"the onnx backend on CUDA runs float16 or float32, not {dtype}; "
                                    "the torch backends run bfloat16")
        elif device.type != "cpu":
            raise WorldsimError(f"the onnx backend runs on cpu or cuda, not {device.type}")
        # The torch modules: the generator's config and rotary tables build each step's plan; the VAE encodes
        # first frames at reset.
        self.generator = checkpoint.generator.to("cpu", torch.float32).eval()
        self.vae = checkpoint.vae.to(device, dtype).eval()
        self.onnx_dir = Path(config.onnx_dir) if config.onnx_dir else self._export_temporary(checkpoint, dtype)
        manifest = read_manifest(self.onnx_dir, checkpoint) if verify_manifest else None
        if manifest is not None and manifest["dtype"] != str(dtype).removeprefix("torch."):
            raise WorldsimError(f"{self.onnx_dir} holds a {manifest['dtype']} export; this session runs {dtype}")
        step_file = self.onnx_dir / STEP_FILE
        if config.quantize == "int8":
            step_file = self.onnx_dir / INT8_STEP_FILE
            if not step_file.exists():
                if config.onnx_dir:
                    raise WorldsimError(f"{self.onnx_dir} has no int8 model; export with --quantize int8")
                quantize_int8(self.onnx_dir / STEP_FILE, step_file)

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the thread count the user chose for torch
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle workers spinning for work would take cores from the game loop and anything else on the machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            # onnxruntime computes on torch's stream: no cross-stream race on the bound buffers
            stream = torch.cuda.current_stream(index).cuda_stream
            cuda_options = {"device_id": index, "user_compute_stream": str(stream)}
            providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
            self.binding_device = ("cuda", index)
        else:
            providers = ["CPUExecutionProvider"]
            self.binding_device = ("cpu", 0)
        self.step_session = ort.InferenceSession(str(step_file), options, providers=providers)
        self.decoder_session = ort.InferenceSession(str(self.onnx_dir / DECODER_FILE), options, providers=providers)
        self.step_binding = self.step_session.io_binding()
        self.decoder_binding = self.decoder_session.io_binding()
        graph_inputs = {i.name for i in self.step_session.get_inputs()}  # onnxruntime may drop unused ones
        g = self.generator.config
        self.frame_inputs = [n for n in frame_input_names(g) if n in graph_inputs]
        self.plan_inputs = [n for n in PLAN_INPUTS if n in graph_inputs]
        self.cache_inputs, self.cache_outputs = cache_names(g), cache_names(g, "_out")
        # Preallocated outputs: the velocity and the decoded frame are written here by onnxruntime.
        self.velocity = torch.empty((1, g.latent_channels, *g.latent_size), device=device, dtype=dtype)
        self.frames = torch.empty((1, 3, *checkpoint.config.vae.image_size), device=device, dtype=dtype)

    def _export_temporary(self, checkpoint, dtype: torch.dtype) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="worldsim-onnx-"))
        self._cleanup = weakref.finalize(self, _remove, folder)
        export_checkpoint(checkpoint, folder / "export", dtype=dtype, quantize=self.config.quantize, verify=False)
        return folder / "export"

    def new_cache(self) -> KVCache:
        c = self.generator.config
        return PingPongCache(c.depth, 1, c.heads, c.tokens, c.head_dim, c.window, c.sink, self.device, self.dtype)

    def _bind(self, binding, name: str, tensor: torch.Tensor, output: bool = False) -> None:
        kind, index = self.binding_device
        bind = binding.bind_output if output else binding.bind_input
        bind(name, kind, index, NUMPY_DTYPES[tensor.dtype], tuple(tensor.shape), tensor.data_ptr())

    @torch.inference_mode()
    def step(self, noisy, recycled, token_cond, frame_cond, t, aug, cache: PingPongCache, advance: bool = True):
        plan = plan_step(cache, self.generator.rotary, full_mask=True)
        frame = {"noisy": noisy, "recycled": recycled, "token_cond": token_cond, "frame_cond": frame_cond, "t": t,
                 "aug": aug}
        binding = self.step_binding
        # Bound by address: the tensors must outlive the run (`.to`/`.contiguous` may return new ones).
        inputs = {name: frame[name].to(self.device, self.dtype).contiguous() for name in self.frame_inputs}
        inputs.update({name: getattr(plan, name).to(self.device).contiguous() for name in self.plan_inputs})
        for name, tensor in inputs.items():
            self._bind(binding, name, tensor)
        for name, tensor in zip(self.cache_inputs, [*cache.k, *cache.v, *cache.sink_k]):
            self._bind(binding, name, tensor)
        self._bind(binding, "velocity", self.velocity, output=True)
        for name, tensor in zip(self.cache_outputs, [*cache.next_k, *cache.next_v, *cache.next_sink_k]):
            self._bind(binding, name, tensor, output=True)
        self.step_session.run_with_iobinding(binding)
        cache.swap()
        if advance:
            cache.position += 1
        return self.velocity

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.device, self.dtype).contiguous()  # kept alive until the run is done
        self._bind(self.decoder_binding, "latent", latents)
        self._bind(self.decoder_binding, "frames", self.frames, output=True)
        self.decoder_session.run_with_iobinding(self.decoder_binding)
        return self.frames

    def describe(self) -> dict:
        return {**super().describe(), "onnx_dir": str(self.onnx_dir),
                "providers": self.step_session.get_providers()}

    def close(self) -> None:
        cleanup = getattr(self, "_cleanup", None)
        if cleanup is not None:
            cleanup()


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
