"""The README's figures from one `worldsim eval` output folder: a strip of engine|model frames at chosen frame
numbers (half size, stacked) and copies of the evaluation's plots.

    python benchmarks/readme_figures.py --eval runs/ablation-dc3/aapt-one-step-1step --out assets/readme \
        --frames 1 8 24 96 480 1440
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

PLOTS = ("psnr_per_frame.png", "action_agreement_per_window.png")


def strip(video: Path, frames: list[int], scale: int = 2) -> np.ndarray:
    """Frames of the side-by-side video (frame 0 is the shared start frame), downscaled, stacked vertically."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    try:
        count = reader.count_frames()
        bad = [f for f in frames if not 0 <= f < count]
        if bad:
            raise SystemExit(f"--frames {bad}: the video has frames 0..{count - 1}")
        rows = [reader.get_data(f)[::scale, ::scale] for f in frames]
    finally:
        reader.close()
    return np.concatenate(rows, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, required=True, help="a `worldsim eval` output folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 8, 24, 96, 480, 1440])
    args = parser.parse_args()
    import imageio.v2 as imageio

    video = args.eval / "engine_vs_model.mp4"
    if not video.exists():
        raise SystemExit(f"{video} does not exist: run `worldsim eval` without --no-video first")
    args.out.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(args.out / "engine_vs_model.png", strip(video, args.frames))
    for name in PLOTS:
        shutil.copyfile(args.eval / name, args.out / name)
    print(f"wrote {args.out / 'engine_vs_model.png'} and {', '.join(PLOTS)}")


if __name__ == "__main__":
    main()
