"""Input: physical controls -> ControllerState (keyboard, mouse, gamepad, scripted programs, replayed logs).

Read in this order: `state` (the data every source produces), `events` (the pure per-event update and the
code -> name tables), `sources` (the protocol, `Command` and `--input` specs), then the sources: `devices`
(live keyboard, mouse and gamepads with hot-plug), `program` (scripted action programs), `replay` (recorded
action logs). Only `state` is imported here: the conditioning schemes (and so training) need it, not pygame.
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame prints a banner on import otherwise

from worldsim.input.state import ControllerState  # noqa: E402

__all__ = ["ControllerState"]
