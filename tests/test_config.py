"""Every YAML mistake names the file, the key path, the bad value and what is allowed - never a traceback."""

import pytest

from worldsim.conditioning import load_scheme
from worldsim.config import MAX_YAML_BYTES, ConfigError, load_json, load_yaml, parse_yaml
from worldsim.training.recipe import load_recipe

GOOD_CAMERA = """
name: mine
encoding: {type: camera, forward_speed: 10.0, strafe_speed: 8.0, yaw_speed: 4.0, fov: 90.0}
controls:
  keys: {w: {forward: 1.0}}
  axes: {right_x: {control: yaw, dead_zone: 0.1, curve: cubic}}
"""


def write(tmp_path, text, name="scheme.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("old,new,fragments", [
    ("controls:\n", "controls:\n  bogus: 1\n", ["'controls.bogus'", "unknown key", "keys, mouse_buttons"]),
    ("forward_speed: 10.0", "forward_speed: fast", ["'encoding.forward_speed'", "wrong type", "'fast'", "a number"]),
    ("yaw_speed: 4.0", "yaw_speed: 1.0e+300", ["'encoding.yaw_speed'", "out of range", "0.01 to 90.0"]),
    ("{w: {forward", "{wasd: {forward", ["'controls.keys.wasd'", "unknown input name", "'wasd'"]),
    ("right_x:", "right_z:", ["'controls.axes.right_z'", "unknown axis", "right_x"]),
    ("control: yaw", "control: jump", ["'controls.axes.right_x.control'", "unknown control", "forward, strafe"]),
    ("curve: cubic", "curve: wobbly", ["'controls.axes.right_x.curve'", "'wobbly'", "'linear', 'quadratic'"]),
    ("type: camera", "type: telepathy", ["'encoding.type'", "unknown encoding", "keys, camera"]),
    ("dead_zone: 0.1", "dead_zone: [1]", ["'controls.axes.right_x.dead_zone'", "wrong type"]),
])
def test_scheme_errors_name_file_path_value_and_allowed(tmp_path, old, new, fragments):
    path = write(tmp_path, GOOD_CAMERA.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_scheme(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_good_scheme_loads(tmp_path):
    assert load_scheme(write(tmp_path, GOOD_CAMERA)).name == "mine"


@pytest.mark.parametrize("text,fragment", [
    ("a: [1, 2", "invalid YAML at line"),
    ("!!python/object:os.system {}", "invalid YAML"),
    ("a: 1\na: 2\n", "duplicate key"),
    ("x: " + "[" * 200 + "]" * 200, "nested too deeply"),
])
def test_hostile_yaml_is_refused_safely(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_yaml(text, "bad.yaml")


def test_missing_scheme_file_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="camera, keys"):
        load_scheme("no-such-scheme")


def test_recipe_errors_are_clear(tmp_path):
    path = write(tmp_path, "name: x\ndiffusion: {shift: -3}\n", "recipe.yaml")
    with pytest.raises(ConfigError, match=r"'diffusion.shift': out of range"):
        load_recipe(path)
    path = write(tmp_path, "name: x\nadversarial: {forcing: sideways}\n", "recipe2.yaml")
    with pytest.raises(ConfigError, match="'student' | 'teacher'"):
        load_recipe(path)


def test_scheme_encoding_mismatch_names_the_difference():
    camera = load_scheme("camera")
    keys = load_scheme("keys")
    with pytest.raises(ConfigError, match="type: scheme has 'camera', checkpoint has 'keys'"):
        camera.check_matches(keys.encoding_dict(), "the checkpoint")
    other = dict(camera.encoding_dict(), yaw_speed=9.0)
    with pytest.raises(ConfigError, match="yaw_speed: scheme has 4.0, checkpoint has 9.0"):
        camera.check_matches(other, "the checkpoint")


def test_cli_prints_one_line_not_a_traceback(tmp_path, capsys):
    from worldsim.cli import main

    path = write(tmp_path, "name: x\nvae: {steps: many}\n", "recipe.yaml")
    assert main(["train", "--recipe", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'vae.steps': wrong type" in err


@pytest.mark.parametrize("text,fragment", [
    ("seed: " + "1" * 5000 + "\n", "a number has too many digits; allowed: at most"),
    ("when: 2020-13-45\n", "invalid value: month must be in 1..12"),
])
def test_values_python_cannot_convert_are_config_errors(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_yaml(text, "bad.yaml")


def test_special_files_are_refused_before_reading(make_special, tmp_path):
    """A FIFO would block the loader forever, /dev/zero fill the memory: both fail at once, naming the file."""
    path = make_special(tmp_path / "scheme.yaml")
    with pytest.raises(ConfigError, match=f"scheme.yaml: top level: is {make_special.kind}, not a regular file"):
        load_scheme(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_yaml(path)


def test_json_configs_have_the_yaml_limits(tmp_path):
    path = write(tmp_path, "[" * 5000 + "]" * 5000, "deep.json")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_json(path)
    path = write(tmp_path, " " * (MAX_YAML_BYTES + 1), "big.json")
    with pytest.raises(ConfigError, match="file too large"):
        load_json(path)
