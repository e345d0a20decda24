"""Download and slim the wheels `scripts/train_on_gpu.sh` installs on a GPU machine that has no network.

    python3 scripts/prepare_gpu_wheels.py [--dir .whl]

The GPU machine has Python 3.12 with torch, numpy, pyyaml, safetensors, imageio, tqdm, onnx(runtime), pytest and
hypothesis, but not ViZDoom (recording, evaluation) nor pygame-ce (evaluation charts, the bench's game loop). Their
cp312 manylinux wheels travel with the working tree in the git-ignored `.whl/` folder, whose size counts against
the transfer limit, so each is rewritten without what worldsim never loads:
  - vizdoom: freedoom1.wad (the world is freedoom2), the scenario WADs and configs, the gymnasium wrapper;
  - pygame-ce: its examples, docs and tests.
Each dropped file leaves the wheel's RECORD too, so pip installs the slim wheel as it would the original.
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
import zipfile
from pathlib import Path

WHEELS = {  # requirement -> file patterns (inside the wheel) to drop
    "vizdoom==1.3.2": ["vizdoom/freedoom1.wad", "vizdoom/scenarios/*.wad", "vizdoom/scenarios/*.cfg",
                       "vizdoom/gymnasium_wrapper/*"],
    "pygame-ce==2.5.8": ["pygame/examples/*", "pygame/docs/*", "pygame/tests/*"],
}
# vizdoom lists its scenarios folder at import: its README stays, so the folder exists.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download(requirement: str, folder: Path) -> Path:
    name = requirement.split("==")[0].replace("-", "_")
    for old in folder.glob(f"{name}-*.whl"):
        old.unlink()
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder),
                    requirement], check=True)
    (wheel,) = folder.glob(f"{name}-*.whl")
    return wheel


def slim(wheel: Path, drop: list[str]) -> tuple[int, int, int]:
    """Rewrite `wheel` in place without the files matching `drop`; returns (files dropped, bytes before, after)."""
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".tmp")
    dropped = 0
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        gone = {info.filename for info in src.infolist() if any(fnmatch.fnmatch(info.filename, p) for p in drop)}
        for info in src.infolist():
            if info.filename in gone:
                dropped += 1
                continue
            data = src.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if line.split(",", 1)[0] not in gone).encode()
            out = zipfile.ZipInfo(info.filename, info.date_time)
            out.external_attr = info.external_attr  # keeps the engine binary executable
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, data, compresslevel=9)
    tmp.replace(wheel)
    return dropped, before, wheel.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent.parent / ".whl",
                        help="where the wheels go (default: .whl/ at the repository root, git-ignored)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for requirement, drop in WHEELS.items():
        wheel = download(requirement, args.dir)
        dropped, before, after = slim(wheel, drop)
        print(f"{wheel.name}: dropped {dropped} files, {before / 2 ** 20:.1f} -> {after / 2 ** 20:.1f} MiB")
    total = sum(p.stat().st_size for p in args.dir.glob("*.whl"))
    print(f"{args.dir}: {total / 2 ** 20:.1f} MiB of wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
