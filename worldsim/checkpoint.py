"""Checkpoints: a directory with `*.safetensors` weights, `config.yaml` and a README model card.

    generator.safetensors   the generator (what plays)
    vae.safetensors         the VAE (encoder for first frames and training, decoder for play)
    start_frames.safetensors optional: a few real first frames (uint8) so a player can start without an engine
    movement.safetensors    optional: the learned movement and walkable map (worldsim/world), and the start poses
    memory.safetensors      optional: the posed keyframe memory (config `memory.keyframes` > 0)
    config.yaml             generator / vae / encoding / sampling configs, scheme name, provenance, metrics
    README.md               the model card

Any weight file may be split into shards of at most a given size (`save_checkpoint(..., shard_mib=N)`), for
transfers that limit file sizes: `generator-00001-of-00003.safetensors` ... `generator-00003-of-00003.safetensors`
instead of `generator.safetensors`. Loading reads shards transparently and refuses an incomplete set, naming the
missing file.

Loading never unpickles (only safetensors are read) and checks every file, shape and config before building the
models: the weights' names and shapes come from the safetensors headers and are compared with a model built on the
meta device (no memory), so a config.yaml that asks for gigabytes fails before anything is allocated, with one clear
message. Saving writes a new directory and swaps it in with renames, so an interrupted save never leaves a
half-written checkpoint where a good one was.
"""

from __future__ import annotations

import os
import re
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
from worldsim.world.memory import KeyframeMemory, MemoryConfig
from worldsim.world.movement import MovementModel

FORMAT = "worldsim-checkpoint"
VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
MAX_FPS = 1000.0
MAX_IMAGE_SIDE = 4096  # pixels; AAPT plays 736x416
# Tables a model computes from its config at build time (rotary angles), beyond its weights: a few MB for any real
# model, so more means a config whose sizes were not meant (latents of millions of tokens).
MAX_DERIVED_BYTES = 256 << 20
SHARD_FILE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.safetensors$")
# Bytes a tensor adds to a safetensors header besides its name (dtype, shape, offsets as JSON), rounded up: a shard
# stays within its size limit header included.
HEADER_BYTES_PER_TENSOR = 96


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
    # while the player's pose does not change (standing, or stopped by a wall) the generator's input noise is held,
    # not drawn afresh: the one-step generator then has nothing new to draw, and a still world stays still
    hold_still: bool = False
    # before each step the recycled latent is warped by this share of the player's move (its translation: the
    # generator's yaw reprojection turns it) with depth from the map's walls (worldsim/world/warp.py); 0: off
    warp_move: float = field(default=0.0, metadata=rng(0.0, 2.0))


@dataclass(frozen=True)
class CheckpointConfig:
    generator: GeneratorConfig
    vae: VAEConfig
    encoding: dict  # the encoding the generator was trained with (a scheme must match it)
    scheme: str = "camera"  # the scheme to play it with by default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # the frame rate of the recorded data (ViZDoom at 35 tics/s, frame skip 2); recordings are written at it
    fps: float = field(default=17.5, metadata=rng(0.1, MAX_FPS))
    # the posed keyframe memory the generator is conditioned on (its token condition carries the anchor); off: 0
    memory: MemoryConfig = field(default_factory=MemoryConfig)
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
    movement: MovementModel | None = None  # the player's learned movement (movement.safetensors)
    memory: KeyframeMemory | None = None  # the posed keyframe memory (memory.safetensors)
    start_poses: torch.Tensor | None = None  # (N, 3) float64 x, y, heading of the start frames, when recorded


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
    anchor = config.memory.anchor_channels(g.latent_channels, g.patch)
    if (encoding.frame_dim, encoding.token_channels + anchor) != (g.frame_cond_dim, g.token_cond_channels):
        memory = f" + {anchor} of the keyframe memory" if anchor else ""
        raise ConfigError(where, "generator", "condition sizes do not match the encoding",
                          f"frame_cond_dim={g.frame_cond_dim}, token_cond_channels={g.token_cond_channels}",
                          f"frame_cond_dim={encoding.frame_dim}, token_cond_channels={encoding.token_channels}"
                          f"{memory}")
    attended = config.memory.attended_channels(g.latent_channels, g.patch)
    if g.memory_channels != attended:
        raise ConfigError(where, "generator.memory_channels", "the generator's attended keyframe view does not match "
                          "the memory's `attend` setting", g.memory_channels,
                          f"{attended} (memory.attend: {config.memory.attend})")


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


def weight_files(path: Path, stem: str) -> list[Path]:
    """The files holding one weight set of a checkpoint: `stem.safetensors`, or every shard of it
    (`stem-00001-of-0000N.safetensors` ...). A set with a shard missing, or both forms, is a CheckpointError
    naming the file; no file at all is an empty list."""
    whole = path / f"{stem}.safetensors"
    shards = sorted(p for p in path.glob(f"{glob_escape(stem)}-*-of-*.safetensors")
                    if (m := SHARD_FILE.match(p.name)) and m["stem"] == stem)
    if not shards:
        return [whole] if whole.exists() or whole.is_symlink() else []
    if whole.exists():
        raise CheckpointError(f"{whole}: the checkpoint holds both this file and its shards ({shards[0].name}, ...); "
                              "keep one of them")
    counts = {int(SHARD_FILE.match(p.name)["count"]) for p in shards}
    count = max(counts)
    expected = [path / shard_name(stem, i, count) for i in range(1, count + 1)]
    for file in expected:
        if file not in shards:
            raise CheckpointError(f"{file}: missing shard ({len(shards)} of the {count} shards of '{stem}' are "
                                  "there); copy the whole checkpoint again")
    if len(counts) > 1:
        stray = next(p for p in shards if p not in expected)
        raise CheckpointError(f"{stray}: a shard of another save ({count} shards of '{stem}' are there too)")
    return expected


def shard_name(stem: str, index: int, count: int) -> str:
    return f"{stem}-{index:05d}-of-{count:05d}.safetensors"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def weight_stems(path: Path) -> list[str]:
    """The names of the weight sets in a checkpoint directory (a sharded set counts once)."""
    stems = set()
    for file in path.glob("*.safetensors"):
        match = SHARD_FILE.match(file.name)
        stems.add(match["stem"] if match else file.stem)
    return sorted(stems)


def _set_shapes(path: Path, stem: str) -> tuple[Path, dict[str, tuple[str, tuple[int, ...]]]]:
    """(the file to name in errors, name -> (dtype, shape)) of one weight set, from its headers alone."""
    found = weight_files(path, stem)
    if not found:
        raise CheckpointError(f"{path / f'{stem}.safetensors'}: missing weights file")
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in found:
        for name, entry in read_shapes(file).items():
            if name in shapes:
                raise CheckpointError(f"{file}: '{name}' is also in another shard of '{stem}'")
            shapes[name] = entry
    return found[0] if len(found) == 1 else path / f"{stem}-*.safetensors", shapes


def read_weight_set(path: Path, stem: str) -> dict[str, torch.Tensor]:
    """The tensors of one weight set of a checkpoint, whole or sharded (see `weight_files`)."""
    found = weight_files(path, stem)
    if not found:
        raise CheckpointError(f"{path / f'{stem}.safetensors'}: missing weights file")
    weights: dict[str, torch.Tensor] = {}
    for file in found:
        weights.update(read_weights(file))
    return weights


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
        file, found = _set_shapes(path, name)
        _check_shapes({k: tuple(v.shape) for k, v in state.items()}, {k: s for k, (_, s) in found.items()}, file)
    if weight_files(path, "start_frames"):
        file, found = _set_shapes(path, "start_frames")
        h, w = config.vae.image_size
        dtype, shape = found.get("frames", (None, ()))
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


def find_checkpoint(path: str | Path) -> Path:
    """`path` when it is a checkpoint directory (or nothing to look into); for a training run folder (what
    `worldsim train --out` fills: RUN/<stage>/checkpoint), the checkpoint of its latest stage in pipeline order,
    so `--checkpoint RUN` plays what the run made last."""
    from worldsim.training.recipe import STAGES  # the stage order; recipe.py imports nothing heavy

    path = Path(path)
    if not path.is_dir() or (path / "config.yaml").exists():
        return path
    for stage in reversed(STAGES):
        candidate = path / stage / "checkpoint"
        if (candidate / "config.yaml").is_file():
            return candidate
    return path


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
        found = find_checkpoint(path)
        if found != path:
            raise CheckpointError(f"{path}: a training run folder, not a checkpoint; its latest stage's checkpoint "
                                  f"is {found}")
        hint = f" (found {pickles[0]}: pickle files are refused, only .safetensors is loaded)" if pickles else ""
        raise CheckpointError(f"{path}: missing config.yaml; not a worldsim checkpoint{hint}")
    # 1. the config, then the config against the weights' headers: nothing is built yet
    config = load_config(path)
    _check_against_weights(config, path)
    # 2. the models, and the weights into them
    generator, vae = build_models(config)
    _load_into(generator, read_weight_set(path, "generator"), path / "generator.safetensors")
    _load_into(vae, read_weight_set(path, "vae"), path / "vae.safetensors")
    start = None
    if weight_files(path, "start_frames"):
        start = read_weight_set(path, "start_frames").get("frames")
        h, w = config.vae.image_size
        if start is None or start.dtype != torch.uint8 or start.dim() != 4 or tuple(start.shape[1:]) != (h, w, 3):
            raise CheckpointError(f"{path / 'start_frames.safetensors'}: expected 'frames' uint8 (N, {h}, {w}, 3)")
    extra = {stem: read_weight_set(path, stem) for stem in weight_stems(path)
             if stem not in ("generator", "vae", "start_frames")}
    movement, memory, start_poses = _world_state(config, extra, path)
    return Checkpoint(config, generator.eval(), vae.eval(), start, path, extra, movement, memory, start_poses)


def _world_state(config: CheckpointConfig, extra: dict[str, dict[str, torch.Tensor]], path: Path
                 ) -> tuple[MovementModel | None, KeyframeMemory | None, torch.Tensor | None]:
    """The learned movement, the keyframe memory and the start poses from their weight sets, checked."""
    from worldsim.conditioning.encodings import ENCODINGS

    movement = memory = start_poses = None
    if "movement" in extra:
        controls = ENCODINGS[config.encoding_config().type][1](config.encoding_config()).control_names
        try:
            movement = MovementModel.from_tensors(extra["movement"], tuple(controls))
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path / 'movement.safetensors'}: not a learned movement model ({err})") from None
        start_poses = extra["movement"].get("start_poses")
        if start_poses is not None and (start_poses.dim() != 2 or start_poses.shape[1] != 3):
            raise CheckpointError(f"{path / 'movement.safetensors'}: 'start_poses' must be (N, 3) x, y, heading, got "
                                  f"{list(start_poses.shape)}")
    if config.memory.enabled:
        if "memory" not in extra or movement is None:
            missing = "memory.safetensors" if "memory" not in extra else "movement.safetensors"
            raise CheckpointError(f"{path}: config.yaml asks for a keyframe memory (memory.keyframes = "
                                  f"{config.memory.keyframes}) but {missing} is missing")
        try:
            memory = KeyframeMemory.from_tensors(config.memory, extra["memory"])
        except ValueError as err:
            raise CheckpointError(f"{path / 'memory.safetensors'}: {err}") from None
        g = config.generator
        if tuple(memory.latents.shape[1:]) != (g.latent_channels, *g.latent_size):
            raise CheckpointError(f"{path / 'memory.safetensors'}: keyframe latents {list(memory.latents.shape[1:])}"
                                  f", the generator's latents are {[g.latent_channels, *g.latent_size]}")
    return movement, memory, start_poses


def save_checkpoint(path: str | Path, config: CheckpointConfig, generator: torch.nn.Module, vae: torch.nn.Module,
                    start_frames: torch.Tensor | None = None, extra: dict[str, dict[str, torch.Tensor]] | None = None,
                    dtype: torch.dtype | None = None, card: str | None = None,
                    files: dict[str, str] | None = None, shard_mib: float | None = None) -> Path:
    """Write a checkpoint directory atomically (a new directory renamed into place). `dtype` halves the size for
    shipping (fp16/bf16); `extra` holds further weight files (training state, discriminator...) and `files` further
    text files (e.g. trainer.json), all swapped in together. `shard_mib` splits every weight file larger than that
    into shards of at most that size (a single tensor larger than it gets a shard of its own)."""
    if shard_mib is not None and shard_mib <= 0:
        raise CheckpointError(f"shard size must be positive, got {shard_mib} MiB")
    path = Path(path)
    _check_config(config, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
            state = module.state_dict()
            return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
                    for k, v in state.items()}

        limit = None if shard_mib is None else int(shard_mib * 2 ** 20)
        save_weight_set(tmp, "generator", weights(generator), limit)
        save_weight_set(tmp, "vae", weights(vae), limit)
        if start_frames is not None:
            save_weight_set(tmp, "start_frames", {"frames": start_frames.to(torch.uint8).contiguous().cpu()}, limit)
        for stem, tensors in (extra or {}).items():
            save_weight_set(tmp, stem, {k: v.contiguous().cpu() for k, v in tensors.items()}, limit)
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


def save_weight_set(folder: Path, stem: str, tensors: dict[str, torch.Tensor], limit: int | None) -> list[Path]:
    """`stem.safetensors`, or (over `limit` bytes) shards `stem-0000i-of-0000N.safetensors` of at most `limit` bytes
    each, tensors kept whole and in order."""
    cost = {k: v.numel() * v.element_size() + len(k.encode()) + HEADER_BYTES_PER_TENSOR for k, v in tensors.items()}
    if limit is None or sum(cost.values()) + 8 <= limit:
        groups = [list(tensors)]
    else:
        groups, size = [[]], 8  # 8: the header-length prefix of a safetensors file
        for name in tensors:
            if groups[-1] and size + cost[name] > limit:
                groups.append([])
                size = 8
            groups[-1].append(name)
            size += cost[name]
    names = ([f"{stem}.safetensors"] if len(groups) == 1
             else [shard_name(stem, i + 1, len(groups)) for i in range(len(groups))])
    for name, group in zip(names, groups):
        save_file({k: tensors[k] for k in group}, str(folder / name))
    return [folder / name for name in names]


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
