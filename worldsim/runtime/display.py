"""The window and what is drawn in it: the world frame scaled to fit, and the HUD over it.

`Window` owns the pygame display (resizable, optional fullscreen; the SDL dummy driver makes the same code run
headless). Drawing is two free functions over plain data, `draw_world` and `draw_hud`, so what the player sees
is a function of the frame and a `HudView` and nothing else.

Costs per frame (128x96 world, 4x window, 2-core CPU): about 0.1 ms to convert and smooth-scale the frame,
well under 1 ms for the HUD, because HUD text is re-rendered only when it changes (a few times a second).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

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


class Window:
    """The pygame display: a letterboxed area the world frame is scaled into, recomputed on window changes.

    `layout()` follows a resize; `recover()` re-creates the display surfaces after the display itself changed
    (moved to another monitor, resolution changed, GPU device reset); `refocus()` re-applies the fullscreen
    mode and the hidden cursor when the window gets focus back (some window managers drop both on focus loss).
    """

    def __init__(self, image_size: tuple[int, int], scale: int, fullscreen: bool = False,
                 title: str = "worldsim", capture_mouse: bool = False, hide_cursor: bool = False):
        pygame.display.init()
        pygame.font.init()
        height, width = image_size
        self.image_size = image_size
        self.windowed_size = (width * scale, height * scale)
        self.headless = os.environ.get("SDL_VIDEODRIVER") == "dummy"
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

    lines: list[str] = field(default_factory=list)  # stats text
    controls: tuple[str, ...] = ()  # the scheme's control names
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # this frame's control values
    low: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # each control's range
    high: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    badges: list[str] = field(default_factory=list)  # PAUSED, REC
    notice: str = ""  # a passing message: gamepad plugged in, recording saved


class HudAssets:
    """The font and everything rendered with it, kept between frames (text rendering is the HUD's cost)."""

    def __init__(self, font_size: int):
        self.font = pygame.font.Font(None, font_size)
        self.line_height = self.font.get_linesize()
        self._text: dict[tuple[str, tuple[int, ...]], pygame.Surface] = {}
        self._panels: dict[tuple[int, int], pygame.Surface] = {}

    def text(self, text: str, color: tuple[int, ...] = HUD_TEXT) -> pygame.Surface:
        key = (text, color)
        surface = self._text.get(key)
        if surface is None:
            if len(self._text) >= TEXT_CACHE_LIMIT:
                self._text.clear()
            surface = self._text[key] = self.font.render(text, True, color)
        return surface

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
    """Stats text and one bar per control (top left), badges (top right), the notice (bottom)."""
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
    x = surface.get_width() - HUD_MARGIN
    for badge in view.badges:
        text = assets.text(badge, HUD_RECORDING if badge.startswith("REC") else HUD_TEXT)
        x -= text.get_width()
        surface.blit(assets.panel(text.get_width() + 2 * HUD_MARGIN, step + HUD_MARGIN), (x - HUD_MARGIN, 0))
        surface.blit(text, (x, HUD_MARGIN // 2))
        x -= 3 * HUD_MARGIN
    draw_notice(surface, view.notice, assets)


def draw_notice(surface: pygame.Surface, notice: str, assets: HudAssets) -> None:
    """A passing message centred at the bottom (drawn with the HUD, or alone when the HUD is hidden)."""
    if not notice:
        return
    step = assets.line_height
    text = assets.text(notice)
    x = (surface.get_width() - text.get_width()) // 2
    y = surface.get_height() - step - 2 * HUD_MARGIN
    surface.blit(assets.panel(text.get_width() + 2 * HUD_MARGIN, step + HUD_MARGIN), (x - HUD_MARGIN, y))
    surface.blit(text, (x, y + HUD_MARGIN // 2))


def draw_overlay(surface: pygame.Surface, text: str, assets: HudAssets) -> None:
    """The attract-mode invitation: large text on a translucent band across the lower third."""
    rendered = assets.text(text)
    pad = assets.line_height // 2
    width, height = surface.get_width(), rendered.get_height() + 2 * pad
    y = surface.get_height() * 2 // 3 - height // 2
    surface.blit(assets.panel(width, height), (0, y))
    surface.blit(rendered, ((width - rendered.get_width()) // 2, y + pad))
