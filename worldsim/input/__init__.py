"""Input: physical controls -> ControllerState (keyboard, mouse, gamepad, scripted programs, replayed logs)."""

from worldsim.input.state import ControllerState

__all__ = ["ControllerState"]
