"""A normal (non-editable) install carries the shipped world and the assets: the wheel holds them under
worldsim/_data, and an unpacked wheel finds them there (.ci/run also plays from a wheel installed in a venv)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("setup.cfg", "pyproject.toml", "build_hooks.py", "MANIFEST.in", "README.md", "LICENSE")
PROJECT_DIRS = ("worldsim", "assets", "checkpoints/doom-camera")
SHIPPED_WORLD = ("config.yaml", "generator.safetensors", "vae.safetensors", "start_frames.safetensors", "README.md")


def build_wheel(tmp_path: Path) -> Path:
    """pip wheel over a copy of the project, so the build writes nothing into the checkout (about 3 s)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "_data", "*.egg-info")
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                             "--no-index", "-q", "-w", str(tmp_path / "dist")],
                            cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return next((tmp_path / "dist").glob("worldsim-*.whl"))


def test_the_wheel_carries_the_shipped_world_and_the_assets(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"worldsim/_data/checkpoints/doom-camera/{name}" for name in SHIPPED_WORLD} <= names
    recipes = {path.name for path in (REPO / "assets" / "recipes").glob("*.yaml")}
    assert recipes and {f"worldsim/_data/assets/recipes/{name}" for name in recipes} <= names
    assert {"worldsim/_data/assets/profiles/desktop.yaml", "worldsim/_data/assets/schemes/camera.yaml"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)

    # unpacked (as pip installs it) and imported from elsewhere, worldsim reads its own copies
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("from worldsim.config import ASSETS_DIR, CHECKPOINTS_DIR\n"
             "from worldsim.training.recipe import recipe_path\n"
             "from worldsim.runtime.play_cli import DEFAULT_CHECKPOINT\n"
             "print(ASSETS_DIR, recipe_path('smoke'), DEFAULT_CHECKPOINT, sep='\\n')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "SDL_VIDEODRIVER": "dummy"})
    assert result.returncode == 0, result.stderr[-3000:]
    assets, smoke, checkpoint = (Path(line) for line in result.stdout.split())
    data = site / "worldsim" / "_data"
    assert assets == data / "assets" and smoke == data / "assets" / "recipes" / "smoke.yaml"
    assert checkpoint == data / "checkpoints" / "doom-camera" and (checkpoint / "generator.safetensors").is_file()
