"""`worldsim <command>`: one entry point for players, designers and researchers (also `python -m worldsim`).

Each command lives in its own module with `add_arguments(parser)` and `run(args) -> int`; only the chosen one is
imported, so `worldsim play` does not pay for the training stack. User errors print one clear line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from worldsim.errors import WorldsimError

COMMANDS = {
    "play": ("worldsim.runtime.play_cli", "play a world in a window (or headless)"),
    "record": ("worldsim.data.record_cli", "record gameplay from a real engine (ViZDoom)"),
    "train": ("worldsim.training.cli", "train a world with an AAPT recipe"),
    "eval": ("worldsim.eval.cli", "evaluate a world against the real engine"),
    "bench": ("worldsim.bench", "measure per-frame speed with ratios"),
    "export": ("worldsim.backends.export_cli", "export a checkpoint to ONNX"),
    "kiosk": ("worldsim.runtime.kiosk_cli", "run the player under a supervisor that restarts it"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless the help already says it or there is none to show; descriptions
    and epilogs keep their line breaks (the keys table of `worldsim play --help`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldsim", description="Real-time interactive world models.",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except WorldsimError as err:
        print(f"worldsim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"worldsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
