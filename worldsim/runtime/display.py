"""The window and what is drawn in it: the world frame scaled to fit, and the HUDs and overlays over it.

`Window` owns the pygame display (resizable, sized to the screen, optional fullscreen; the SDL dummy driver makes
the same code run headless). Drawing is free functions over plain data: `draw_world`, the player's one-line
`draw_status`, the developer's `draw_hud`, `draw_notice`, `draw_help` and `draw_overlay`, so what the player sees
is a function of the frame and a `HudView` and nothing else.

Costs per frame (128x96 world, 4x window, 2-core CPU): about 0.1 ms to convert and smooth-scale the frame,
well under 1 ms for the HUD, because HUD text is re-rendered only when it changes (a few times a second).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from worldsim.errors import WorldsimError

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame prints a banner on import otherwise
import pygame  # noqa: E402

BACKGROUND = (0, 0, 0)
HUD_TEXT = (235, 235, 235)
HUD_PANEL = (0, 0, 0, 150)  # translucent, so the world stays visible under the numbers
HUD_BAR = (90, 200, 255)
HUD_BAR_TRACK = (60, 60, 60)
HUD_RECORDING = (255, 70, 70)
HUD_MARGIN = 6
BAR_WIDTH = 90
TEXT_CACHE_LIMIT = 256  # distinct strings kept rendered; the HUD cycles through far fewer
SCREEN_FRACTION = 0.8  # a window sized to the screen leaves room for the desktop's bars and decorations
FALLBACK_SCALE = 4  # the window's multiple of the frame when SDL reports no desktop size
NOTICE_LINES = 3  # a long notice is wrapped onto at most this many lines, the rest shortened with an ellipsis
ELLIPSIS = "..."
Measure = Callable[[str], int]  # the width of a text in pixels (a font's)
# SDL drivers that draw nowhere. Asked for (SDL_VIDEODRIVER=dummy: --headless, tests) they are the headless mode;
# chosen by SDL on its own (pygame-ce falls back to "offscreen" when no display answers, e.g. over SSH) the game
# would play on invisibly until Ctrl-C.
INVISIBLE_DRIVERS = frozenset({"dummy", "offscreen"})
NO_DISPLAY_HINT = "run with --headless (and --frames N --record out.mp4) to play without a window"


class NoDisplayError(WorldsimError):
    pass


def require_display(hint: str = NO_DISPLAY_HINT) -> None:
    """Start SDL's video; refuse, in one line ending with `hint`, a display nobody can see that was not asked for."""
    asked = os.environ.get("SDL_VIDEODRIVER")
    unset = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and unset and not asked:
        # Said before SDL probes (it would print its own errors, then fall back to an invisible driver).
        raise NoDisplayError("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset: over SSH?); "
                             f"{hint} (a console without a display server: SDL_VIDEODRIVER=kmsdrm)")
    try:
        pygame.display.init()
    except pygame.error as err:
        raise NoDisplayError(f"no display to open a window on ({err}); {hint}") from None
    driver = pygame.display.get_driver()
    if driver in INVISIBLE_DRIVERS and asked != driver:
        pygame.display.quit()
        raise NoDisplayError(f"no display to open a window on (SDL fell back to its invisible '{driver}' driver); "
                             f"{hint}")


class Window:
    """The pygame display: a letterboxed area the world frame is scaled into, recomputed on window changes.

    `layout()` follows a resize; `recover()` re-creates the display surfaces after the display itself changed
    (moved to another monitor, resolution changed, GPU device reset); `refocus()` re-applies the fullscreen
    mode and the hidden cursor when the window gets focus back (some window managers drop both on focus loss).
    """

    def __init__(self, image_size: tuple[int, int], scale: int | None = None, fullscreen: bool = False,
                 title: str = "worldsim", capture_mouse: bool = False, hide_cursor: bool = False):
        require_display()
        pygame.font.init()
        height, width = image_size
        self.image_size = image_size
        if scale is None:  # the largest whole multiple of the frame that fits the screen: crisp, and not tiny
            scale = fit_scale(image_size, pygame.display.get_desktop_sizes())
        self.windowed_size = (width * scale, height * scale)
        self.headless = os.environ.get("SDL_VIDEODRIVER") in INVISIBLE_DRIVERS
        self.fullscreen = fullscreen
        self.capture_mouse = capture_mouse
        self.hide_cursor = hide_cursor or capture_mouse
        self.recoveries = 0  # display re-creations, for the stats
        pygame.display.set_caption(title)
        self.surface = self._open()
        self._make_native()
        self.layout()
        self._apply_pointer()

    def _open(self) -> pygame.Surface:
        if self.fullscreen:
            return pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
        return pygame.display.set_mode(self.windowed_size, pygame.RESIZABLE)

    def _make_native(self) -> None:
        # A frame-sized surface in the display's pixel format: each frame is blitted into it once, then
        # scaled, so scaling never converts pixel formats. A new display may have a new format.
        height, width = self.image_size
        self.native = pygame.Surface((width, height), 0, self.surface)

    def _apply_pointer(self) -> None:
        if self.headless:
            return
        if self.capture_mouse:
            pygame.event.set_grab(True)
        if self.hide_cursor:
            pygame.mouse.set_visible(False)

    def layout(self) -> None:
        """Fit the frame into the window keeping its aspect ratio (black bars where the window is longer)."""
        self.surface = pygame.display.get_surface()
        win_w, win_h = self.surface.get_size()
        height, width = self.image_size
        scale = min(win_w / width, win_h / height)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        self.rect = pygame.Rect((win_w - w) // 2, (win_h - h) // 2, w, h)
        # The bars around the frame are repainted every frame: the HUD draws over them too.
        frame = self.rect
        bars = (pygame.Rect(0, 0, win_w, frame.top),
                pygame.Rect(0, frame.bottom, win_w, win_h - frame.bottom),
                pygame.Rect(0, 0, frame.left, win_h),
                pygame.Rect(frame.right, 0, win_w - frame.right, win_h))
        self.bars = [bar for bar in bars if bar.w > 0 and bar.h > 0]
        self.target = self.surface.subsurface(self.rect)

    def recover(self) -> None:
        """Re-create the display and every surface derived from it, then re-centre the frame.

        In fullscreen the mode is set again at (0, 0), which SDL reads as the current display's desktop size:
        the window follows a monitor swap or a resolution change. Raises pygame.error while no display works.
        """
        if not self.fullscreen:  # keep the size the player gave the window
            try:
                self.windowed_size = self.surface.get_size()
            except pygame.error:  # the old surface died with the old display
                pass
        self.surface = self._open()
        self._make_native()
        self.layout()
        self._apply_pointer()
        self.recoveries += 1

    def refocus(self) -> None:
        """Focus is back: hide the cursor again and, in fullscreen, refill the screen if the window shrank."""
        self._apply_pointer()
        if self.fullscreen and not self.headless:
            desktop = pygame.display.get_desktop_sizes()
            if desktop and self.surface.get_size() not in desktop:
                self.recover()

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        self._open()
        self.layout()

    def close(self) -> None:
        pygame.display.quit()


def fit_scale(image_size: tuple[int, int], desktops: list[tuple[int, int]],
              fraction: float = SCREEN_FRACTION) -> int:
    """The largest whole multiple of an (H, W) frame that fits `fraction` of the first desktop (at least 1)."""
    if not desktops:
        return FALLBACK_SCALE
    height, width = image_size
    desktop_w, desktop_h = desktops[0]
    return max(1, min(int(desktop_w * fraction) // width, int(desktop_h * fraction) // height))


def draw_world(window: Window, frame: np.ndarray, smooth: bool = True) -> None:
    """Show a uint8 (H, W, 3) C-contiguous frame scaled to the window's frame area."""
    height, width = window.image_size
    for bar in window.bars:
        window.surface.fill(BACKGROUND, bar)
    window.native.blit(pygame.image.frombuffer(frame, (width, height), "RGB"), (0, 0))
    scale = pygame.transform.smoothscale if smooth else pygame.transform.scale
    scale(window.native, window.rect.size, window.target)


@dataclass
class HudView:
    """What the HUD shows: the loop updates it (text a few times a second, values every frame)."""

    lines: list[str] = field(default_factory=list)  # the developer's HUD: stats text
    controls: tuple[str, ...] = ()  # the scheme's control names
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # this frame's control values
    low: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # each control's range
    high: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    badges: list[str] = field(default_factory=list)  # PAUSED, REC
    notice: str = ""  # a passing message: gamepad plugged in, recording saved
    status: str = ""  # the player's HUD: one line, fps (or "paused") and what is pressed


class HudAssets:
    """The font and everything rendered with it, kept between frames (text rendering is the HUD's cost)."""

    def __init__(self, font_size: int):
        self.font = pygame.font.Font(None, font_size)
        self.line_height = self.font.get_linesize()
        self._text: dict[tuple[str, tuple[int, ...]], pygame.Surface] = {}
        self._panels: dict[tuple[int, int], pygame.Surface] = {}
        self._wrapped: dict[tuple[str, int], list[str]] = {}

    def text(self, text: str, color: tuple[int, ...] = HUD_TEXT) -> pygame.Surface:
        key = (text, color)
        surface = self._text.get(key)
        if surface is None:
            if len(self._text) >= TEXT_CACHE_LIMIT:
                self._text.clear()
            surface = self._text[key] = self.font.render(text, True, color)
        return surface

    def wrapped(self, text: str, width: int, max_lines: int = NOTICE_LINES) -> list[str]:
        """`text` as lines that each fit `width` pixels (measured once per text and width)."""
        key = (text, width)
        lines = self._wrapped.get(key)
        if lines is None:
            if len(self._wrapped) >= TEXT_CACHE_LIMIT:
                self._wrapped.clear()
            lines = self._wrapped[key] = wrap_text(text, width, lambda t: self.font.size(t)[0], max_lines)
        return lines

    def panel(self, width: int, height: int) -> pygame.Surface:
        size = (width, height)
        surface = self._panels.get(size)
        if surface is None:
            if len(self._panels) >= TEXT_CACHE_LIMIT:
                self._panels.clear()
            surface = self._panels[size] = pygame.Surface(size, pygame.SRCALPHA)
            surface.fill(HUD_PANEL)
        return surface


def draw_hud(surface: pygame.Surface, view: HudView, assets: HudAssets) -> None:
    """The developer's HUD: stats text and one bar per control (top left), badges (top right), the notice."""
    # 1. text and control labels, measured so the translucent panel fits them
    lines = [assets.text(line) for line in view.lines]
    labels = [assets.text(name) for name in view.controls]
    label_width = max((s.get_width() for s in labels), default=0)
    step = assets.line_height
    width = max([s.get_width() for s in lines] + [label_width + BAR_WIDTH + HUD_MARGIN]) + 2 * HUD_MARGIN
    height = step * (len(lines) + len(labels)) + 2 * HUD_MARGIN
    surface.blit(assets.panel(width, height), (0, 0))
    y = HUD_MARGIN
    for line in lines:
        surface.blit(line, (HUD_MARGIN, y))
        y += step
    # 2. control bars: bipolar controls fill from the middle, one-sided ones from the left
    bar_x = HUD_MARGIN + label_width + HUD_MARGIN
    bar_h = max(2, step // 2)
    for i, label in enumerate(labels):
        surface.blit(label, (HUD_MARGIN, y))
        track = pygame.Rect(bar_x, y + (step - bar_h) // 2, BAR_WIDTH, bar_h)
        pygame.draw.rect(surface, HUD_BAR_TRACK, track)
        low, high = float(view.low[i]), float(view.high[i])
        zero = track.x + round(BAR_WIDTH * (0.0 - low) / (high - low))
        end = track.x + round(BAR_WIDTH * (min(max(float(view.values[i]), low), high) - low) / (high - low))
        if end != zero:
            pygame.draw.rect(surface, HUD_BAR, (min(zero, end), track.y, abs(end - zero), bar_h))
        y += step
    # 3. badges and notice
    _draw_badges(surface, view.badges, assets)
    draw_notice(surface, view.notice, assets)


def _draw_badges(surface: pygame.Surface, badges: list[str], assets: HudAssets) -> None:
    """PAUSED, REC: right to left from the top right corner."""
    step = assets.line_height
    x = surface.get_width() - HUD_MARGIN
    for badge in badges:
        text = assets.text(badge, HUD_RECORDING if badge.startswith("REC") else HUD_TEXT)
        x -= text.get_width()
        surface.blit(assets.panel(text.get_width() + 2 * HUD_MARGIN, step + HUD_MARGIN), (x - HUD_MARGIN, 0))
        surface.blit(text, (x, HUD_MARGIN // 2))
        x -= 3 * HUD_MARGIN


def draw_notice(surface: pygame.Surface, notice: str, assets: HudAssets) -> None:
    """A passing message centred at the bottom (drawn with either HUD, or alone when they are hidden); a long one
    (a recording's path) is wrapped, and a word wider than the window shortened in its middle, never clipped."""
    if not notice:
        return
    step = assets.line_height
    lines = [assets.text(line) for line in assets.wrapped(notice, surface.get_width() - 4 * HUD_MARGIN)]
    width = max(line.get_width() for line in lines)
    x = (surface.get_width() - width) // 2
    y = surface.get_height() - step * len(lines) - 2 * HUD_MARGIN
    surface.blit(assets.panel(width + 2 * HUD_MARGIN, step * len(lines) + HUD_MARGIN), (x - HUD_MARGIN, y))
    for i, line in enumerate(lines):
        surface.blit(line, ((surface.get_width() - line.get_width()) // 2, y + HUD_MARGIN // 2 + i * step))


def draw_status(surface: pygame.Surface, view: HudView, assets: HudAssets) -> None:
    """The player's HUD: one line in the top left corner, the REC badge top right, the notice at the bottom."""
    step = assets.line_height
    if view.status:
        text = assets.text(view.status)
        surface.blit(assets.panel(text.get_width() + 2 * HUD_MARGIN, step + HUD_MARGIN), (0, 0))
        surface.blit(text, (HUD_MARGIN, HUD_MARGIN // 2))
    _draw_badges(surface, [badge for badge in view.badges if badge.startswith("REC")], assets)
    draw_notice(surface, view.notice, assets)


def draw_help(surface: pygame.Surface, title: str, lines: list[tuple[str, str]], assets: HudAssets) -> None:
    """The keys overlay: a title, then "keys   what they do" in two columns on a translucent panel, centred."""
    keys = [assets.text(k) for k, _ in lines]
    effects = [assets.text(e) for _, e in lines]
    heading = assets.text(title)
    key_width = max((k.get_width() for k in keys), default=0)
    gap = 3 * HUD_MARGIN
    width = max([heading.get_width()] + [key_width + gap + e.get_width() for e in effects]) + 4 * HUD_MARGIN
    step = assets.line_height
    height = step * (len(lines) + 2) + 2 * HUD_MARGIN
    x, y = (surface.get_width() - width) // 2, (surface.get_height() - height) // 2
    surface.blit(assets.panel(width, height), (x, y))
    surface.blit(heading, (x + 2 * HUD_MARGIN, y + HUD_MARGIN))
    y += HUD_MARGIN + 2 * step
    for key, effect in zip(keys, effects):
        surface.blit(key, (x + 2 * HUD_MARGIN + key_width - key.get_width(), y))
        surface.blit(effect, (x + 2 * HUD_MARGIN + key_width + gap, y))
        y += step


def wrap_text(text: str, width: int, measure: Measure, max_lines: int = NOTICE_LINES) -> list[str]:
    """Words onto lines of at most `width` (as `measure(text)` counts it) and at most `max_lines` lines; a word
    longer than a line (a path) keeps its start and its end around an ellipsis."""
    lines: list[str] = []
    for word in text.split():
        if measure(word) > width:
            word = shorten_middle(word, width, measure)
        if lines and measure(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = shorten_end(lines[-1] + " " + ELLIPSIS, width, measure)
    return lines or [""]


def shorten_middle(text: str, width: int, measure: Measure) -> str:
    """`text` with characters taken out of its middle, an ellipsis in their place, until it fits `width`: a path
    keeps the folder it starts with and the file name it ends with."""
    for keep in range(len(text) - 1, -1, -1):
        candidate = text[: (keep + 1) // 2] + ELLIPSIS + text[len(text) - keep // 2:]
        if measure(candidate) <= width:
            return candidate
    return ELLIPSIS


def shorten_end(text: str, width: int, measure: Measure) -> str:
    """`text` cut at its end, an ellipsis in place of what was cut, until it fits `width`."""
    while len(text) > len(ELLIPSIS) and measure(text) > width:
        text = text[: -len(ELLIPSIS) - 1] + ELLIPSIS
    return text


def draw_overlay(surface: pygame.Surface, text: str, assets: HudAssets) -> None:
    """The attract-mode invitation: large text on a translucent band across the lower third."""
    rendered = assets.text(text)
    pad = assets.line_height // 2
    width, height = surface.get_width(), rendered.get_height() + 2 * pad
    y = surface.get_height() * 2 // 3 - height // 2
    surface.blit(assets.panel(width, height), (0, y))
    surface.blit(rendered, ((width - rendered.get_width()) // 2, y + pad))
