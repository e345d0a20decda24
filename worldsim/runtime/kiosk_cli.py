"""`worldsim kiosk`: run `worldsim play --kiosk` under a supervisor that restarts it after a crash or a hang.

    worldsim kiosk                                   the shipped world, kiosk profile, logs in ./logs
    worldsim kiosk --checkpoint DIR --fps 12         play options are passed on to the player
    worldsim kiosk --log-dir /var/log/worldsim       where the rotating logs and the heartbeat file go

The supervisor ends when the player quits cleanly (the quit combination held), when the player refuses its
configuration at start-up (the reason is printed), or on SIGTERM / ctrl+C (the player is stopped first).
Supervisor settings (heartbeat timeout, back-off) are the profile's `supervisor:` section.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from worldsim.errors import WorldsimError
from worldsim.runtime import play_cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    play_cli.add_world_arguments(parser)
    group = parser.add_argument_group("supervisor")
    group.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                       help="logs (supervisor and player, rotated) and the heartbeat file "
                            "(default: the profile's kiosk.log_dir)")
    group.add_argument("--max-restarts", type=int, default=None, metavar="N",
                       help="give up after N restarts (default: the profile's supervisor.max_restarts; 0: never)")


def player_arguments(args: argparse.Namespace) -> list[str]:
    """The `worldsim play` options the user gave, as command-line words for the player."""
    parser = argparse.ArgumentParser(add_help=False)
    play_cli.add_world_arguments(parser)
    words: list[str] = []
    for action in parser._actions:  # argparse has no public list of a parser's options
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value == action.default:
            continue
        flag = action.option_strings[-1]  # the long form
        words += [flag] if action.nargs == 0 else [flag, str(value)]
    return words


def player_command(args: argparse.Namespace, log_dir: Path, heartbeat: Path) -> list[str]:
    return [sys.executable, "-m", "worldsim", "play", "--kiosk", "--log-dir", str(log_dir),
            "--heartbeat", str(heartbeat), *player_arguments(args)]


def run(args: argparse.Namespace) -> int:
    from worldsim.runtime.kiosk import HEARTBEAT_NAME, SUPERVISOR_LOG_NAME
    from worldsim.runtime.logs import close_log, open_log
    from worldsim.runtime.profile import load_profile
    from worldsim.runtime.supervisor import Supervisor

    # 1. what can be checked here is checked before anything starts: the profile and the log directory
    args.profile = args.profile or "kiosk"
    profile = load_profile(args.profile)
    if args.max_restarts is not None and args.max_restarts < 0:
        raise WorldsimError(f"--max-restarts must be 0 (never give up) or more, got {args.max_restarts}")
    config = profile.supervisor
    if args.max_restarts is not None:
        config = dataclasses.replace(config, max_restarts=args.max_restarts)
    log_dir = (args.log_dir or Path(profile.kiosk.log_dir)).absolute()
    log = open_log("worldsim.kiosk", log_dir / SUPERVISOR_LOG_NAME, profile.kiosk.log_max_bytes,
                   profile.kiosk.log_backups)
    # 2. supervise until a clean quit; SIGTERM (systemd stop, kill) stops the player first
    command = player_command(args, log_dir, log_dir / HEARTBEAT_NAME)
    supervisor = Supervisor(command, log_dir / HEARTBEAT_NAME, config, log)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: supervisor.stop())
    print(f"worldsim kiosk: supervising the player; logs in {log_dir}", file=sys.stderr)
    log.info("supervisor started: profile %s, %s", args.profile, config)
    try:
        code = supervisor.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        close_log(log)
    if code == 2:
        reason = supervisor.last_output[-1] if supervisor.last_output else "see the log"
        raise WorldsimError(f"the player refused to start: {reason} (log: {log_dir / SUPERVISOR_LOG_NAME})")
    return code
