"""setuptools build hook: a wheel carries the shipped world and the assets inside the package.

The repository keeps `assets/` and `checkpoints/` at its top level, where a checkout and an editable install read
them (worldsim/config.py). A wheel installs files only inside its packages, so `build_py` copies them into
`worldsim/_data/` of the build; worldsim/config.py looks there first. setup.cfg names this class as `build_py`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# What `worldsim play` and `worldsim train --recipe NAME` need: schemes, profiles, programs, recipes, engine configs,
# and the shipped world (other checkpoints/ folders are local training output, never packaged).
SHIPPED = ("assets", "checkpoints/doom-camera")
DATA_DIR = Path("worldsim") / "_data"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the repository's folders in place
            return
        for folder in SHIPPED:
            shutil.copytree(ROOT / folder, Path(self.build_lib) / DATA_DIR / folder, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".*"))
