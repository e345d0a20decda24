"""Play worldsim's shipped world: `python run_game.py` is `worldsim play` (`--help` lists the options)."""

import sys

from worldsim.cli import main

if __name__ == "__main__":
    sys.exit(main(["play", *sys.argv[1:]]))
