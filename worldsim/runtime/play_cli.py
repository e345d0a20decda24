"""`worldsim play` (and `python run_game.py`): play a world in a window, or headless to a recording.

    worldsim play                                    the shipped world, keyboard/mouse/gamepad, in a window
    worldsim play --checkpoint DIR --scheme keys     another world, other controls
    worldsim play --checkpoint DIR --headless --frames 240 --input scripted:FILE --record out.mp4 \
                  --stats stats.json                 record a scripted run
    worldsim play --checkpoint DIR --headless --input replay:out.actions.jsonl   the same frames, checked
    worldsim play --kiosk                            full screen, attract mode, logs only (see `worldsim kiosk`)

Everything is checked before the window opens (files, names, checkpoint, scheme against the checkpoint,
profile keys against the scheme), so a mistake is one line naming what is wrong, never a traceback. Running
out of memory while the world is built falls back to a smaller dtype, then to the CPU, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from pathlib import Path

from worldsim.config import CHECKPOINTS_DIR
from worldsim.errors import WorldsimError

DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "doom-camera"
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_THREADS = 1  # measured: 2 threads on 2 cores fall to ~2 fps when another process runs
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _keys_epilog()
    add_world_arguments(parser)
    kiosk = parser.add_argument_group("kiosk")
    kiosk.add_argument("--kiosk", action="store_true",
                       help="kiosk mode: the kiosk profile (full screen, hidden cursor), attract mode when idle, "
                            "a fresh world per player, quit only with the profile's key combination, no console "
                            "output (logs in --log-dir)")
    kiosk.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                       help="kiosk logs (default: the profile's kiosk.log_dir)")
    kiosk.add_argument("--heartbeat", type=Path, default=None, metavar="FILE",
                       help="touch FILE from the game loop every kiosk.heartbeat_s (worldsim kiosk watches it)")


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """What to play and how: shared with `worldsim kiosk`, which forwards them to its player."""
    parser.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                        help="checkpoint directory, or a training run folder (`worldsim train --out`: its latest "
                             f"stage's checkpoint) (default: {_shown(DEFAULT_CHECKPOINT)})")
    parser.add_argument("--scheme", default=None, metavar="NAME|PATH",
                        help="controls to play with (default: the checkpoint's); its encoding must match")
    parser.add_argument("--input", default=None, metavar="SPEC",
                        help="keyboard (keys + mouse), gamepad (keys + mouse + pads, hot-plug), scripted, "
                             "scripted:NAME|FILE, replay:FILE (default: gamepad; headless: scripted)")
    parser.add_argument("--headless", action="store_true", help="no window (SDL dummy driver); same loop")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N generated frames")
    parser.add_argument("--record", type=Path, default=None, metavar="OUT.mp4",
                        help="record the world frames to OUT.mp4 and the actions to OUT.actions.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recording or --stats file")
    parser.add_argument("--stats", type=Path, default=None, metavar="FILE",
                        help="write fps, latency and per-stage times as JSON at the end")
    parser.add_argument("--seed", type=int, default=None,
                        help="noise seed (default 0; a replay uses its log's)")
    parser.add_argument("--fps", type=float, default=None,
                        help="target frame rate (default: the profile's, else the checkpoint's data rate; "
                             "headless: unthrottled)")
    parser.add_argument("--profile", default=None, metavar="NAME|PATH",
                        help="runtime profile: window, HUD, system keys (default: desktop; kiosk with --kiosk)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="model precision")
    parser.add_argument("--backend", default=None,
                        help="eager, compile, onnx or onnx+int8 (default: $WORLDSIM_BACKEND, else eager)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps per frame (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch CPU threads (default: {DEFAULT_THREADS}; more threads collapse when another "
                             "process holds a core, and one already plays the shipped world above 30 fps)")


def _keys_epilog() -> str:
    """The keys of the desktop profile and the camera scheme (the shipped world's), for `--help`."""
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.runtime.help import help_text
    from worldsim.runtime.profile import DEFAULT_PROFILE, load_profile

    try:
        keys = help_text(load_profile(DEFAULT_PROFILE), load_scheme("camera"))
    except WorldsimError as err:  # a broken profile is reported when it is played, not by --help
        keys = f"(the keys cannot be shown: {err})"
    return (f"{keys}\n\nThe keys are shown over the world at start (F1 shows them again);\n"
            "--profile and --scheme change them (assets/profiles/, assets/schemes/).")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def missing_world_message(path: Path) -> str:
    return (f"worldsim play: no world to play yet: {_shown(path)} does not exist (the shipped world has not "
            "been trained on this machine).\n"
            "  train it:        worldsim train --help   (the shipped recipe trains on a CPU in hours)\n"
            "  or play another: worldsim play --checkpoint DIR")


def run(args: argparse.Namespace) -> int:
    # 1. everything that needs no model: arguments, output paths, the input source's files
    from worldsim.input.sources import parse_input_spec

    args.profile = args.profile or ("kiosk" if args.kiosk else "desktop")
    input_spec = args.input or ("scripted" if args.headless else "gamepad")
    kind, _ = parse_input_spec(input_spec)
    _check_numbers(args)
    if args.record is not None:
        from worldsim.input.replay import log_path_for
        from worldsim.runtime.recorder import refuse_existing

        if args.record.suffix.lower() != ".mp4":
            raise WorldsimError(f"--record {args.record}: recordings are MP4 files; "
                                "use a name ending in .mp4")
        refuse_existing([args.record, log_path_for(args.record)], args.overwrite)
    if args.stats is not None:
        from worldsim.runtime.recorder import refuse_existing

        refuse_existing([args.stats], args.overwrite)
    checkpoint_dir = args.checkpoint
    if checkpoint_dir is not None:
        from worldsim.checkpoint import find_checkpoint

        checkpoint_dir = find_checkpoint(checkpoint_dir)
        if checkpoint_dir != args.checkpoint:
            print(f"worldsim play: {args.checkpoint} is a training run; playing its latest stage, {checkpoint_dir}",
                  file=sys.stderr)
    if checkpoint_dir is None:
        if not DEFAULT_CHECKPOINT.is_dir():
            print(missing_world_message(DEFAULT_CHECKPOINT), file=sys.stderr)
            return 2
        checkpoint_dir = DEFAULT_CHECKPOINT
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame opens a display
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # the game makes no sound; don't probe sound cards
    if not args.headless:
        from worldsim.runtime.display import require_display

        require_display()  # no display (over SSH): say so now, not after loading the world, nor play invisibly

    from worldsim.input.sources import open_source
    from worldsim.runtime.profile import load_profile, profile_path

    profile = load_profile(args.profile)
    with _kiosk_logging(args, profile) if args.kiosk else contextlib.nullcontext():
        source = open_source(input_spec)
        try:
            return _play(args, source, kind, checkpoint_dir, profile, profile_path(args.profile))
        finally:
            source.close()


@contextlib.contextmanager
def _kiosk_logging(args: argparse.Namespace, profile):
    """Kiosk mode: everything worldsim logs or prints goes to a rotating log file, nothing to the console.

    An error still leaves through the exception (the CLI prints it, `worldsim kiosk` logs the child's stderr),
    after it has been written to the log too.
    """
    import logging

    from worldsim.runtime.kiosk import PLAYER_LOG_NAME
    from worldsim.runtime.logs import LogStream, close_log, open_log

    config = profile.kiosk
    log_dir = args.log_dir or Path(config.log_dir)
    logger = open_log("worldsim", log_dir / PLAYER_LOG_NAME, config.log_max_bytes, config.log_backups)
    logger.info("kiosk player starting (pid %d): profile %s, checkpoint %s", os.getpid(), args.profile,
                args.checkpoint or DEFAULT_CHECKPOINT)
    try:
        with contextlib.redirect_stdout(LogStream(logger)), \
                contextlib.redirect_stderr(LogStream(logger, logging.WARNING)):
            yield
        logger.info("kiosk player done")
    except WorldsimError as err:
        logger.error("%s", err)
        raise
    except BaseException:
        logger.exception("kiosk player crashed")
        raise
    finally:
        close_log(logger)


def _check_numbers(args: argparse.Namespace) -> None:
    from worldsim.config import MAX_SAMPLING_STEPS

    for name in ("frames", "steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise WorldsimError(f"--{name} must be at least 1, got {value}")
    if args.steps is not None and args.steps > MAX_SAMPLING_STEPS:
        raise WorldsimError(f"--steps must be at most {MAX_SAMPLING_STEPS}, got {args.steps}")
    if args.fps is not None and not 0 < args.fps <= 1000:
        raise WorldsimError(f"--fps must be in (0, 1000], got {args.fps}")


def _play(args, source, kind: str, checkpoint_dir: Path, profile, profile_file: Path) -> int:
    import torch

    from worldsim import __version__
    from worldsim.checkpoint import load_checkpoint
    from worldsim.conditioning.scheme import load_scheme
    from worldsim.input.replay import ActionLogHeader
    from worldsim.runtime.heartbeat import Heartbeat
    from worldsim.runtime.loop import GameLoop
    from worldsim.runtime.profile import check_bindings
    from worldsim.runtime.recorder import checkpoint_fingerprint, write_json_atomic

    # 2. a replay brings its own seed, scheme, steps and thread count (floating-point sums depend on threads)
    replayed: ActionLogHeader | None = getattr(source, "header", None) if kind == "replay" else None
    seed = args.seed if args.seed is not None else (replayed.seed if replayed else 0)
    scheme_spec = args.scheme or (replayed.scheme if replayed else None)
    steps = args.steps or (replayed.steps if replayed else None)
    threads = args.threads or (replayed.threads if replayed and replayed.threads else DEFAULT_THREADS)
    torch.set_num_threads(threads)
    device, dtype = _device(args.device), getattr(torch, args.dtype)

    # 3. the world: checkpoint, scheme (checked against the checkpoint by the session), profile keys vs scheme
    checkpoint = load_checkpoint(checkpoint_dir)
    scheme = load_scheme(scheme_spec) if scheme_spec else None
    if checkpoint.start_frames is None or len(checkpoint.start_frames) == 0:
        raise WorldsimError(f"{checkpoint_dir}: this checkpoint has no start frames "
                            "(start_frames.safetensors), so there is nothing to start playing from")
    session = open_session(checkpoint, scheme, device, dtype, seed, steps, args.backend)
    device, dtype_name = session.device, str(session.dtype).removeprefix("torch.")
    check_bindings(profile, session.scheme, profile_file)
    if args.headless and args.frames is None and source.length is None:
        raise WorldsimError(f"--headless with --input {kind} never ends by itself; "
                            "pass --frames N")
    fingerprint = checkpoint_fingerprint(checkpoint.path)
    if replayed and replayed.checkpoint != fingerprint:
        print(f"worldsim play: note: {source.log.path} was recorded with checkpoint {replayed.checkpoint}, "
              f"this is {fingerprint}: frames will differ from the recording", file=sys.stderr)

    # 4. play
    data_fps = checkpoint.config.fps
    fps = args.fps or (None if args.headless else profile.target_fps or data_fps)
    header = ActionLogHeader(
        scheme=scheme_spec or checkpoint.config.scheme, encoding=session.scheme.encoding_dict(), seed=seed,
        steps=session.steps, checkpoint=fingerprint, checkpoint_path=str(checkpoint_dir), device=str(device),
        dtype=dtype_name, threads=torch.get_num_threads(), fps=fps or data_fps, worldsim=__version__,
        torch=torch.__version__)
    heartbeat = Heartbeat(args.heartbeat, profile.kiosk.heartbeat_s) if args.heartbeat else None
    loop = GameLoop(session, source, profile, header, fps=fps, max_frames=args.frames,
                    record_path=args.record, overwrite=args.overwrite,
                    video_fps=args.fps or profile.target_fps or data_fps,
                    title=f"worldsim - {Path(checkpoint_dir).name}",
                    kiosk=profile.kiosk if args.kiosk else None, heartbeat=heartbeat)
    stats = loop.run()
    stats.update(checkpoint=str(checkpoint_dir), checkpoint_id=fingerprint, scheme=session.scheme.name,
                 seed=seed, steps=session.steps, device=str(device), dtype=dtype_name,
                 threads=torch.get_num_threads(), headless=bool(args.headless))
    if args.stats is not None:
        write_json_atomic(args.stats, stats)
    return _report(stats)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError is a RuntimeError; the CPU allocator raises RuntimeError or MemoryError."""
    if isinstance(err, MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in OUT_OF_MEMORY_MESSAGES)


def memory_fallbacks(device, dtype) -> list:
    """(device, dtype) to try in order: as asked, then half precision, then the CPU."""
    import torch

    half = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        half = torch.float16
    tries = [(device, dtype)]
    if dtype == torch.float32:
        tries.append((device, half))
    if device.type != "cpu":
        tries.append((torch.device("cpu"), torch.float32))
    return tries


def open_session(checkpoint, scheme, device, dtype, seed: int, steps: int | None, backend: str | None = None):
    """A WorldSession that has played one frame; out of memory, the next smaller (device, dtype) is tried."""
    import torch

    from worldsim.checkpoint import load_checkpoint

    tries = memory_fallbacks(device, dtype)
    for attempt, (try_device, try_dtype) in enumerate(tries):
        if attempt:
            # The failed attempt converted the models in place (maybe to half precision): start from the files.
            checkpoint = load_checkpoint(checkpoint.path)
        try:
            return _warm_session(checkpoint, scheme, try_device, try_dtype, seed, steps, backend)
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
        # Out of the except block: the traceback, and the half-built session it holds, are gone now.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tried = f"{try_device} ({str(try_dtype).removeprefix('torch.')})"
        if attempt + 1 < len(tries):
            next_device, next_dtype = tries[attempt + 1]
            print(f"worldsim play: out of memory on {tried}; trying {next_device} "
                  f"({str(next_dtype).removeprefix('torch.')})", file=sys.stderr)
    raise WorldsimError(f"out of memory while building the world on {tried}; close other programs using the "
                        "memory, pass --dtype bfloat16 (half the memory) or --device cpu, or play a smaller "
                        "checkpoint")


def _warm_session(checkpoint, scheme, device, dtype, seed: int, steps: int | None, backend: str | None = None):
    from worldsim.input.state import ControllerState
    from worldsim.runtime.session import WorldSession

    session = WorldSession(checkpoint, scheme, device=device, dtype=dtype, seed=seed, steps=steps, backend=backend)
    # The first step allocates the activations: out of memory shows here, not in the constructor.
    session.reset()
    session.step(session.scheme.encode(ControllerState(), session.grid))
    return session


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise WorldsimError(f"--device {name!r}: not a torch device; "
                            "allowed: cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WorldsimError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def _report(stats: dict) -> int:
    """One summary line (plus recordings and the replay check); exit 1 when a replay was not bit-exact."""
    print(f"worldsim play: {stats['frames']} frames, {stats['fps']:.1f} fps, latency p50 "
          f"{stats['latency_ms']['p50']:.1f} ms / p95 {stats['latency_ms']['p95']:.1f} ms "
          f"(generate {stats['stage_ms']['generate']:.1f} ms, decode {stats['stage_ms']['decode']:.1f} ms)")
    for path in stats["recordings"]:
        print(f"worldsim play: recorded {path}")
    faults = stats.get("faults", {})
    if faults.get("faults"):
        print(f"worldsim play: {faults['faults']} non-finite frames were never shown: {faults['restored']} "
              f"rewound to a snapshot, {faults['reset']} reset the world")
    replay = stats.get("replay")
    if replay is None:
        return 0
    if replay["bit_exact"]:
        checked = replay["frames_checked"]
        print(f"worldsim play: replay bit-exact: {checked} of {checked} frames identical to the recording")
        return 0
    print(f"worldsim play: replay differs: {replay['mismatches']} of {replay['frames_checked']} frames, "
          f"from frame {replay['first_mismatch']} (identical frames need the same checkpoint, seed, device "
          "and thread count)", file=sys.stderr)
    return 1
