"""Remap the controls of a world without retraining: write a scheme YAML, load it, check it fits the checkpoint.

Only `controls` changes; the `encoding` must stay the one the checkpoint was trained with (a mismatch is refused
with a message naming the difference). Play it with `worldsim play --scheme my_scheme.yaml`.
"""

from pathlib import Path

import yaml

from worldsim.conditioning import load_scheme
from worldsim.config import ASSETS_DIR
from worldsim.input import ControllerState

base = yaml.safe_load((ASSETS_DIR / "schemes" / "camera.yaml").read_text())  # works from any folder
base["name"] = "arrows-and-stick"
base["controls"] = {
    "keys": {"up": {"forward": 1.0}, "down": {"forward": -1.0}, "left": {"yaw": -1.0}, "right": {"yaw": 1.0},
             "z": {"strafe": -1.0}, "x": {"strafe": 1.0}, "return": {"use": 1.0}},
    # a softer turn on the right stick: cubic response, generous dead-zone
    "axes": {"right_x": {"control": "yaw", "dead_zone": 0.2, "curve": "cubic"},
             "left_y": {"control": "forward", "scale": -1.0, "dead_zone": 0.2}},
}
Path("my_scheme.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
print(f"wrote {Path('my_scheme.yaml').resolve()}; play it with: worldsim play --scheme my_scheme.yaml")

scheme = load_scheme("my_scheme.yaml")
state = ControllerState(keys=frozenset({"up"}), axes={"right_x": 0.6}, gamepad_connected=True)
print(dict(zip(scheme.control_names, scheme.action(state).round(3))))  # forward 1.0, yaw 0.5**3 = 0.125
scheme.check_matches(load_scheme("camera").encoding_dict())  # same encoding as the camera worlds: accepted
