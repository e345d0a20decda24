"""A person plays the real engine in a window while it records: pygame keyboard/mouse -> the scheme's action.

Event handling is a pure state update (`KeyboardMouse.handle`), drawing is a free function (`draw_frame`), and
`KeyboardPolicy.act` is one turn of the loop: draw the current frame -> flip -> tick -> events -> action. It
works headless under SDL_VIDEODRIVER=dummy, which is how the tests drive it with synthetic events.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pygame

from worldsim.conditioning import Scheme
from worldsim.data.policies import StopRecording
from worldsim.input.state import ControllerState
from worldsim.runtime.display import require_display

MOUSE_BUTTON_NAMES = {1: "left", 2: "middle", 3: "right"}
QUIT_KEYS = frozenset({"escape"})
DEFAULT_WINDOW_SCALE = 4


class KeyboardMouse:
    """Held keys, held mouse buttons and mouse motion since the last frame, from pygame events."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.mouse_buttons: set[str] = set()
        self.mouse_dx = 0.0
        self.mouse_dy = 0.0
        self.quit = False

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.quit = True
        elif event.type == pygame.KEYDOWN:
            name = pygame.key.name(event.key)
            self.quit |= name in QUIT_KEYS
            self.keys.add(name)
        elif event.type == pygame.KEYUP:
            self.keys.discard(pygame.key.name(event.key))
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button in MOUSE_BUTTON_NAMES:
            self.mouse_buttons.add(MOUSE_BUTTON_NAMES[event.button])
        elif event.type == pygame.MOUSEBUTTONUP and event.button in MOUSE_BUTTON_NAMES:
            self.mouse_buttons.discard(MOUSE_BUTTON_NAMES[event.button])
        elif event.type == pygame.MOUSEMOTION:
            self.mouse_dx += event.rel[0]
            self.mouse_dy += event.rel[1]
        elif event.type == pygame.WINDOWFOCUSLOST:  # key-ups go to another window: do not walk on forever
            self.keys.clear()
            self.mouse_buttons.clear()

    def take_state(self) -> ControllerState:
        """This frame's ControllerState; mouse motion is consumed (it is relative to the previous frame)."""
        state = ControllerState(keys=frozenset(self.keys), mouse_dx=self.mouse_dx, mouse_dy=self.mouse_dy,
                                mouse_buttons=frozenset(self.mouse_buttons))
        self.mouse_dx = self.mouse_dy = 0.0
        return state


def draw_frame(screen: pygame.Surface, frame: np.ndarray) -> None:
    """Blit an (H, W, 3) uint8 RGB frame scaled to fill the window."""
    height, width = frame.shape[:2]
    image = pygame.image.frombuffer(np.ascontiguousarray(frame).tobytes(), (width, height), "RGB")
    screen.blit(pygame.transform.scale(image, screen.get_size()), (0, 0))


class KeyboardPolicy:
    """The player at the keyboard as a `Policy`: shows each frame and returns `scheme.action(state)`."""

    name = "keyboard"

    def __init__(self, scheme: Scheme, resolution: tuple[int, int], fps: float | None,
                 scale: int = DEFAULT_WINDOW_SCALE):
        self.scheme = scheme
        self.fps = fps  # the engine's real-time rate (35 tics/s / frame skip); None runs as fast as possible
        # no display (over SSH): one line saying so, not a recording nobody can see
        require_display("record with the scripted explorer instead (--input policy)")
        self.screen = pygame.display.set_mode((resolution[0] * scale, resolution[1] * scale))
        pygame.display.set_caption("worldsim record - Esc or close the window to stop")
        self.clock = pygame.time.Clock()
        self.input = KeyboardMouse()

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "fps": self.fps}

    def reset(self, seed: int) -> None:
        self.input.mouse_dx = self.input.mouse_dy = 0.0

    def act(self, frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
        draw_frame(self.screen, frame)
        pygame.display.flip()
        if self.fps:
            self.clock.tick(self.fps)
        for event in pygame.event.get():
            self.input.handle(event)
        if self.input.quit:
            raise StopRecording
        return self.scheme.action(self.input.take_state())

    def close(self) -> None:
        pygame.display.quit()
