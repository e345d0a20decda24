"""Checkpoints: a directory with `*.safetensors` weights, `config.yaml` and a README model card.

    generator.safetensors   the generator (what plays)
    vae.safetensors         the VAE (encoder for first frames and training, decoder for play)
    start_frames.safetensors optional: a few real first frames (uint8) so a player can start without an engine
    config.yaml             generator / vae / encoding / sampling configs, scheme name, provenance, metrics
    README.md               the model card

Loading never unpickles (only safetensors are read) and checks every file, shape and config before building the
models: the weights' names and shapes come from the safetensors headers and are compared with a model built on the
meta device (no memory), so a config.yaml that asks for gigabytes fails before anything is allocated, with one clear
message. Saving writes a new directory and swaps it in with renames, so an interrupted save never leaves a
half-written checkpoint where a good one was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from worldsim import files
from worldsim.conditioning.encodings import EncodingConfig
from worldsim.conditioning.scheme import parse_encoding
from worldsim.config import MAX_SAMPLING_STEPS, ConfigError, from_dict, load_yaml, rng, to_dict
from worldsim.errors import WorldsimError
from worldsim.models.generator import Generator, GeneratorConfig
from worldsim.models.vae import VAE, VAEConfig

FORMAT = "worldsim-checkpoint"
VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
MAX_FPS = 1000.0
MAX_IMAGE_SIDE = 4096  # pixels; AAPT plays 736x416
# Tables a model computes from its config at build time (rotary angles), beyond its weights: a few MB for any real
# model, so more means a config whose sizes were not meant (latents of millions of tokens).
MAX_DERIVED_BYTES = 256 << 20


class CheckpointError(WorldsimError):
    pass


@dataclass(frozen=True)
class SamplingConfig:
    # network evaluations per frame at play time (1 for the AAPT generator)
    steps: int = field(default=1, metadata=rng(1, MAX_SAMPLING_STEPS))
    # time shift of the multi-step sampler (the diffusion stage's training shift; AAPT trains with 24)
    shift: float = field(default=1.0, metadata=rng(0.01, 1000.0))
    # noise level of the recycled frame the generator sees at play time, told to it (worldsim/rollout.py); 0: off
    context_noise: float = field(default=0.0, metadata=rng(0.0, 1.0))


@dataclass(frozen=True)
class CheckpointConfig:
    generator: GeneratorConfig
    vae: VAEConfig
    encoding: dict  # the encoding the generator was trained with (a scheme must match it)
    scheme: str = "camera"  # the scheme to play it with by default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # the frame rate of the recorded data (ViZDoom at 35 tics/s, frame skip 2); recordings are written at it
    fps: float = field(default=17.5, metadata=rng(0.1, MAX_FPS))
    stage: str = "random"  # which training stage produced it (random = untrained, for tests)
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION

    def encoding_config(self) -> EncodingConfig:
        return parse_encoding(self.encoding)


@dataclass
class Checkpoint:
    config: CheckpointConfig
    generator: Generator
    vae: VAE
    start_frames: torch.Tensor | None = None  # (N, H, W, 3) uint8
    path: Path | None = None
    extra: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # other weight files, by stem


def build_models(config: CheckpointConfig) -> tuple[Generator, VAE]:
    return Generator(config.generator), VAE(config.vae)


def _check_config(config: CheckpointConfig, where: Path | None) -> None:
    g, v = config.generator, config.vae
    if not all(1 <= side <= MAX_IMAGE_SIDE for side in v.image_size):
        raise ConfigError(where, "vae.image_size", "out of range", list(v.image_size),
                          f"1 to {MAX_IMAGE_SIDE} pixels a side")
    if g.latent_channels != v.latent_channels or tuple(g.latent_size) != tuple(v.latent_size):
        raise ConfigError(where, "generator", "generator latent shape does not match the VAE",
                          f"{g.latent_channels}x{list(g.latent_size)}",
                          f"{v.latent_channels}x{list(v.latent_size)} (the VAE's)")
    from worldsim.conditioning.encodings import ENCODINGS

    encoding = ENCODINGS[config.encoding_config().type][1](config.encoding_config())
    if (encoding.frame_dim, encoding.token_channels) != (g.frame_cond_dim, g.token_cond_channels):
        raise ConfigError(where, "generator", "condition sizes do not match the encoding",
                          f"frame_cond_dim={g.frame_cond_dim}, token_cond_channels={g.token_cond_channels}",
                          f"frame_cond_dim={encoding.frame_dim}, token_cond_channels={encoding.token_channels}")


def load_config(path: Path) -> CheckpointConfig:
    data = load_yaml(path / "config.yaml")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(path / "config.yaml", "format", "not a worldsim checkpoint config",
                          data.get("format") if isinstance(data, dict) else data, repr(FORMAT))
    config = from_dict(CheckpointConfig, data, file=path / "config.yaml")
    if config.version > VERSION:
        raise ConfigError(path / "config.yaml", "version", "checkpoint is newer than this worldsim", config.version,
                          f"<= {VERSION}")
    parse_encoding(config.encoding, path / "config.yaml", "encoding")
    _check_config(config, path / "config.yaml")
    return config


def _check_file(file: Path) -> None:
    """A weights file must exist and be a regular file: a FIFO would block the reader, a device never end."""
    try:
        files.check_regular(file)
    except files.FileProblem as err:
        if err.problem == "file not found":
            raise CheckpointError(f"{file}: missing weights file") from None
        raise CheckpointError(str(err)) from None


def read_shapes(file: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name -> (dtype, shape) of each tensor in a safetensors file, from its header alone: no data is read, but
    the header is checked to cover the file exactly (a truncated file fails here)."""
    _check_file(file)
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{file}: not a readable safetensors file ({err}); is it truncated?") from None


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing, special or damaged file is a CheckpointError naming it."""
    _check_file(file)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{file}: not a readable safetensors file ({err}); is it truncated?") from None


def _check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], file: Path) -> None:
    """The weights in `file` (name -> shape) are exactly those the config's model has."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{file}: weights do not match config.yaml ({detail}"
                              f"{', ...' if len(missing) + len(unexpected) > 3 else ''})")
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise CheckpointError(f"{file}: '{name}' has shape {list(found[name])}, config.yaml implies "
                                  f"{list(shape)}")


def _check_against_weights(config: CheckpointConfig, path: Path) -> None:
    """The config's models, built on the meta device (shapes only, no memory), against the weight files' headers:
    a config.yaml that does not fit its weights fails here, before any model is allocated."""
    with torch.device("meta"):
        models = dict(zip(("generator", "vae"), build_models(config)))
    for name, module in models.items():
        state = module.state_dict()
        derived = sum(b.numel() * b.element_size() for n, b in module.named_buffers() if n not in state)
        if derived > MAX_DERIVED_BYTES:
            raise ConfigError(path / "config.yaml", name, f"the {name} would compute {derived / 2 ** 20:.0f} MB of "
                              "tables from its sizes", allowed=f"at most {MAX_DERIVED_BYTES >> 20} MB")
        file = path / f"{name}.safetensors"
        shapes = {k: shape for k, (_, shape) in read_shapes(file).items()}
        _check_shapes({k: tuple(v.shape) for k, v in state.items()}, shapes, file)
    file = path / "start_frames.safetensors"
    if file.exists():
        h, w = config.vae.image_size
        dtype, shape = read_shapes(file).get("frames", (None, ()))
        if dtype != "U8" or len(shape) != 4 or tuple(shape[1:]) != (h, w, 3):
            raise CheckpointError(f"{file}: expected 'frames' uint8 (N, {h}, {w}, 3)")


def _load_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], file: Path) -> None:
    expected = module.state_dict()
    _check_shapes({k: tuple(v.shape) for k, v in expected.items()}, {k: tuple(v.shape) for k, v in weights.items()},
                  file)
    for name in expected:
        if not torch.isfinite(weights[name].float()).all():
            raise CheckpointError(f"{file}: '{name}' contains NaN or inf")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()})


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint directory; every problem is a CheckpointError/ConfigError saying what is wrong."""
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path}: pickle checkpoints are refused (they can run arbitrary code); "
                                  "worldsim loads only a checkpoint directory with .safetensors weights")
        raise CheckpointError(f"{path}: expected a checkpoint directory (config.yaml + *.safetensors)")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if not (path / "config.yaml").exists():
        hint = f" (found {pickles[0]}: pickle files are refused, only .safetensors is loaded)" if pickles else ""
        raise CheckpointError(f"{path}: missing config.yaml; not a worldsim checkpoint{hint}")
    # 1. the config, then the config against the weights' headers: nothing is built yet
    config = load_config(path)
    _check_against_weights(config, path)
    # 2. the models, and the weights into them
    generator, vae = build_models(config)
    _load_into(generator, read_weights(path / "generator.safetensors"), path / "generator.safetensors")
    _load_into(vae, read_weights(path / "vae.safetensors"), path / "vae.safetensors")
    start = None
    if (path / "start_frames.safetensors").exists():
        start = read_weights(path / "start_frames.safetensors").get("frames")
        h, w = config.vae.image_size
        if start is None or start.dtype != torch.uint8 or start.dim() != 4 or tuple(start.shape[1:]) != (h, w, 3):
            raise CheckpointError(f"{path / 'start_frames.safetensors'}: expected 'frames' uint8 (N, {h}, {w}, 3)")
    extra = {p.stem: read_weights(p) for p in sorted(path.glob("*.safetensors"))
             if p.stem not in ("generator", "vae", "start_frames")}
    return Checkpoint(config, generator.eval(), vae.eval(), start, path, extra)


def save_checkpoint(path: str | Path, config: CheckpointConfig, generator: torch.nn.Module, vae: torch.nn.Module,
                    start_frames: torch.Tensor | None = None, extra: dict[str, dict[str, torch.Tensor]] | None = None,
                    dtype: torch.dtype | None = None, card: str | None = None,
                    files: dict[str, str] | None = None) -> Path:
    """Write a checkpoint directory atomically (a new directory renamed into place). `dtype` halves the size for
    shipping (fp16/bf16); `extra` holds further weight files (training state, discriminator...) and `files` further
    text files (e.g. trainer.json), all swapped in together."""
    path = Path(path)
    _check_config(config, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
            state = module.state_dict()
            return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
                    for k, v in state.items()}

        save_file(weights(generator), str(tmp / "generator.safetensors"))
        save_file(weights(vae), str(tmp / "vae.safetensors"))
        if start_frames is not None:
            save_file({"frames": start_frames.to(torch.uint8).contiguous().cpu()},
                      str(tmp / "start_frames.safetensors"))
        for stem, tensors in (extra or {}).items():
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp / f"{stem}.safetensors"))
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        (tmp / "README.md").write_text(card if card is not None else default_card(config))
        for file in tmp.iterdir():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        swap_in_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def swap_in_directory(new: Path, path: Path) -> None:
    """Replace `path` by `new` with renames; the old directory is removed only once the new one is in place."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)


def default_card(config: CheckpointConfig) -> str:
    g = config.generator
    return (f"# worldsim checkpoint\n\nStage: {config.stage}. Encoding: {config.encoding.get('type')} "
            f"(play with scheme '{config.scheme}').\nGenerator: dim {g.dim}, depth {g.depth}, "
            f"{g.tokens} tokens per frame, window {g.window}, sink {g.sink}.\n"
            f"VAE: {list(config.vae.image_size)} pixels, {config.vae.compression}x compression, "
            f"{config.vae.latent_channels} latent channels.\n")


def provenance(**fields: Any) -> dict:
    """Where a checkpoint came from: the git commit of the code, plus whatever the caller adds."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"git_commit": commit or "unknown", **fields}
