"""What an evaluation leaves in its out folder: metrics.json, one PNG chart per metric over time, and a
side-by-side MP4 (engine | model) with the commanded action drawn under it. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.conditioning.scheme import Scheme
from worldsim.data.storage import atomic_write
from worldsim.eval.plot import line_chart, save_png

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

METRICS_FILE = "metrics.json"
VIDEO_FILE = "engine_vs_model.mp4"
VIDEO_WIDTH = 384  # pixels per side: small worlds are scaled up by whole factors to about this width
LABEL_COLOR = (235, 235, 235)
FONT_SIZE = 20


# ---- metrics.json ------------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """Plain JSON: numpy scalars/arrays to Python, non-finite floats to null (JSON has no NaN or inf)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return round(value, 5) if math.isfinite(value) else None
    return value


def write_metrics(out: Path, summary: dict) -> Path:
    path = out / METRICS_FILE
    text = json.dumps(json_safe(summary), indent=1).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))
    return path


# ---- charts ------------------------------------------------------------------------------------------------

# metric key in the summary -> (chart title, y label); per-frame curves and per-window values are drawn alike
PER_FRAME_CHARTS = {"psnr": ("PSNR vs engine, mean over episodes", "dB"),
                    "ssim": ("SSIM vs engine, mean over episodes", "SSIM")}
PER_WINDOW_CHARTS = {
    "psnr": ("PSNR vs engine per window", "dB"),
    "action_agreement": ("action agreement (IDM, all three axes) per window", "fraction of frames"),
    "frechet": ("Frechet distance in IDM feature space per window", "distance"),
    "sharpness_ratio": ("sharpness ratio (Laplacian variance / engine) per window", "ratio"),
    "color_histogram_distance": ("colour histogram distance (total variation) per window", "distance"),
}


def write_plots(out: Path, summary: dict) -> list[str]:
    """One PNG per metric over time; returns the file names."""
    names = []
    frames = np.arange(1, summary["frames"] + 1)
    ends = np.array([end for _, end in summary["windows"]])
    for key, (title, unit) in PER_FRAME_CHARTS.items():
        series = {c: (frames, np.array(v, float)) for c, v in summary["per_frame"][key].items()}
        names.append(_chart(out, f"{key}_per_frame.png", series, title, unit))
    for key, (title, unit) in PER_WINDOW_CHARTS.items():
        table = summary.get(key)
        if not table:
            continue  # action agreement and Fréchet need an IDM
        series = {name: (ends, np.array([w["all"] if isinstance(w, dict) else w for w in entry["windows"]]))
                  for name, entry in table.items()}
        names.append(_chart(out, f"{key}_per_window.png", series, title, unit, "frame (end of window)"))
    return names


def _chart(out: Path, name: str, series: dict, title: str, unit: str, x_label: str = "frame") -> str:
    save_png(line_chart(series, title, x_label, unit), out / name)
    return name


# ---- video -------------------------------------------------------------------------------------------------


class SideBySide:
    """The layout of one video frame: labels, engine | model scaled up by a whole factor, the HUD strip under
    them with text lines and one bar per control (the runtime's own `draw_hud`)."""

    def __init__(self, image_size: tuple[int, int], scheme: Scheme):
        import pygame

        from worldsim.runtime.display import HudAssets

        pygame.font.init()
        self.h, self.w = image_size
        self.scale = max(1, VIDEO_WIDTH // self.w)
        self.assets = HudAssets(FONT_SIZE)
        self.names = scheme.control_names
        self.low = np.array([scheme.encoding.ranges[n][0] for n in self.names], np.float32)
        self.high = np.array([scheme.encoding.ranges[n][1] for n in self.names], np.float32)
        self.title_h = self.assets.line_height + 4
        self.gap = 2 * self.scale
        width = 2 * self.w * self.scale + self.gap
        height = self.title_h + self.h * self.scale + self.assets.line_height * (2 + len(self.names)) + 16
        self.canvas = pygame.Surface((width + width % 2, height + height % 2))  # H.264 wants even sizes
        top = self.title_h + self.h * self.scale
        width, height = self.canvas.get_size()
        self.hud = self.canvas.subsurface(pygame.Rect(0, top, width, height - top))
        self.frame = pygame.Surface((self.w, self.h))

    def render(self, engine: np.ndarray, model: np.ndarray, action: np.ndarray,
               lines: list[str]) -> np.ndarray:
        """uint8 (h, w, 3) frames and the action (A,) -> the video frame, uint8 (H, W, 3)."""
        import pygame

        from worldsim.runtime.display import HudView, draw_hud

        self.canvas.fill((0, 0, 0))
        for k, (label, image) in enumerate((("engine", engine), ("model", model))):
            x = k * (self.w * self.scale + self.gap)
            pygame.surfarray.blit_array(self.frame, np.ascontiguousarray(image.transpose(1, 0, 2)))
            self.canvas.blit(pygame.transform.scale(self.frame, (self.w * self.scale, self.h * self.scale)),
                             (x, self.title_h))
            self.canvas.blit(self.assets.text(label, LABEL_COLOR), (x + 4, 2))
        view = HudView(lines=lines, controls=self.names, values=action, low=self.low, high=self.high)
        draw_hud(self.hud, view, self.assets)
        return pygame.surfarray.array3d(self.canvas).transpose(1, 0, 2)


def write_video(path: Path, engine: np.ndarray, model: np.ndarray, actions: np.ndarray, scheme: Scheme,
                fps: float, psnr: np.ndarray) -> Path:
    """engine, model: uint8 (F + 1, h, w, 3), frame 0 being the shared start; actions (F + 1, A) as recorded
    (actions[t] produced frame t); psnr (F,) of model frames 1..F. Frames stream to the encoder: a minute of
    video never sits in memory."""
    import imageio.v2 as imageio

    layout = SideBySide(engine.shape[1:3], scheme)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio.get_writer(tmp, fps=fps, macro_block_size=1)
    try:
        for t in range(len(engine)):
            quality = f"PSNR {psnr[t - 1]:.1f} dB" if t else "start frame (real)"
            writer.append_data(layout.render(engine[t], model[t], actions[t],
                                             [f"frame {t}/{len(engine) - 1}", quality]))
        writer.close()
        tmp.replace(path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path
