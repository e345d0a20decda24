"""Input: physical controls -> ControllerState (keyboard, mouse, gamepad, scripted programs, replayed logs).

Read in this order: `state` (the data every source produces), `events` (the pure per-event update and the code
-> name tables), `sources` (the protocol and `--input` specs), then the sources: `devices` (live keyboard,
mouse and gamepads with hot-plug), `program` (scripted action programs), `replay` (recorded action logs).
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame prints a banner on import otherwise

from worldsim.input.events import next_frame, release_gamepad, update
from worldsim.input.sources import Command, InputSource, open_source, parse_input_spec
from worldsim.input.state import ControllerState

__all__ = ["Command", "ControllerState", "InputSource", "next_frame", "open_source", "parse_input_spec",
           "release_gamepad", "update"]
