"""Line charts as PNG, drawn with pygame on an off-screen Surface (no display, no matplotlib dependency).

Enough for evaluation reports: one or more series over a shared x axis, a title, axis labels, five ticks per
axis, a legend. Non-finite values break a line instead of drawing to infinity.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

SIZE = (720, 420)
MARGIN = (70, 40, 190, 50)  # left, top, right (legend), bottom
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127)]  # a colour-blind-friendly cycle (matplotlib's tab10)
TICKS = 5
FONT_SIZE = 18
MARKER_POINTS = 50  # series this short get a dot per point


def _font() -> pygame.font.Font:
    if not pygame.font.get_init():
        pygame.font.init()
    return pygame.font.Font(None, FONT_SIZE)


def nice_ticks(lo: float, hi: float, count: int = TICKS) -> tuple[np.ndarray, int]:
    """About `count` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi], and the
    decimals their labels need."""
    if not hi > lo:
        return np.array([lo]), 3
    raw = (hi - lo) / (count + 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    decimals = max(0, -math.floor(math.log10(step)) + (1 if step / magnitude == 2.5 else 0))
    multiples = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)
    return np.round(multiples * step, decimals + 3), decimals


def line_chart(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str, x_label: str,
               y_label: str) -> np.ndarray:
    """Draw `series` (name -> (x, y)) and return the chart as uint8 (H, W, 3)."""
    font = _font()
    surface = pygame.Surface(SIZE)
    surface.fill(BACKGROUND)
    left, top, right, bottom = MARGIN
    plot = pygame.Rect(left, top, SIZE[0] - left - right, SIZE[1] - top - bottom)
    # 1. data ranges over every finite point
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()] or [np.zeros(1)])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()] or [np.zeros(1)])
    finite = np.isfinite(xs) & np.isfinite(ys)
    x0, x1 = (xs[finite].min(), xs[finite].max()) if finite.any() else (0.0, 1.0)
    y0, y1 = (ys[finite].min(), ys[finite].max()) if finite.any() else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.05 or max(abs(y0) * 0.05, 1e-3)
    y0, y1 = y0 - pad, y1 + pad

    def to_screen(x: float, y: float) -> tuple[float, float]:
        return (plot.left + (x - x0) / (x1 - x0) * plot.width,
                plot.bottom - (y - y0) / (y1 - y0) * plot.height)

    # 2. grid, ticks, labels
    for axis in ("x", "y"):
        ticks, decimals = nice_ticks(*((x0, x1) if axis == "x" else (y0, y1)))
        for value in ticks:
            text = font.render(f"{value:.{decimals}f}", True, INK)
            if axis == "x":
                sx = to_screen(value, y0)[0]
                pygame.draw.line(surface, GRID, (sx, plot.top), (sx, plot.bottom))
                surface.blit(text, (sx - text.get_width() // 2, plot.bottom + 6))
            else:
                sy = to_screen(x0, value)[1]
                pygame.draw.line(surface, GRID, (plot.left, sy), (plot.right, sy))
                surface.blit(text, (plot.left - text.get_width() - 6, sy - text.get_height() // 2))
    pygame.draw.rect(surface, INK, plot, 1)
    text = font.render(title, True, INK)
    surface.blit(text, ((SIZE[0] - text.get_width()) // 2, 12))
    text = font.render(x_label, True, INK)
    surface.blit(text, (plot.centerx - text.get_width() // 2, SIZE[1] - 22))
    text = pygame.transform.rotate(font.render(y_label, True, INK), 90)
    surface.blit(text, (8, plot.centery - text.get_height() // 2))
    # 3. lines (broken at non-finite values; a lone point is a dot) and the legend
    for k, (name, (x, y)) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        points = [to_screen(a, b) if math.isfinite(a) and math.isfinite(b) else None
                  for a, b in zip(np.asarray(x, float), np.asarray(y, float))]
        if len(points) <= MARKER_POINTS:  # few points (per-window values): mark each one
            for point in points:
                if point is not None:
                    pygame.draw.circle(surface, color, point, 3)
        run: list[tuple[float, float]] = []
        for point in [*points, None]:
            if point is not None:
                run.append(point)
                continue
            if len(run) > 1:
                pygame.draw.lines(surface, color, False, run, 2)
            elif run:
                pygame.draw.circle(surface, color, run[0], 3)
            run = []
        ly = plot.top + 4 + k * (FONT_SIZE + 4)
        pygame.draw.line(surface, color, (plot.right + 12, ly + 7), (plot.right + 36, ly + 7), 3)
        surface.blit(font.render(name, True, INK), (plot.right + 42, ly))
    return pygame.surfarray.array3d(surface).transpose(1, 0, 2).copy()


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write uint8 (H, W, 3) as PNG atomically (temporary file, then rename)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    imageio.imwrite(tmp, image)
    tmp.replace(path)
