"""Runtime profiles: shipped ones fit every shipped scheme; a profile stealing a control key is refused."""

import pytest

from worldsim.cli import main
from worldsim.conditioning.scheme import load_scheme, shipped_schemes
from worldsim.config import ConfigError
from worldsim.input.sources import Command
from worldsim.runtime.profile import check_bindings, command_table, load_profile, shipped_profiles


@pytest.mark.parametrize("profile", sorted(shipped_profiles()))
@pytest.mark.parametrize("scheme", sorted(shipped_schemes()))
def test_shipped_profiles_fit_shipped_schemes(profile, scheme):
    check_bindings(load_profile(profile), load_scheme(scheme))


def test_desktop_keys():
    keys, buttons = command_table(load_profile("desktop"))
    assert keys["p"] is Command.PAUSE and keys["n"] is Command.STEP and keys["escape"] is Command.QUIT
    assert keys["r"] is keys["backspace"] is Command.RESET and keys["f5"] is Command.RECORD
    assert keys["f1"] is Command.HELP and keys["h"] is Command.HUD and keys["f3"] is Command.DEV_HUD
    assert keys["tab"] is keys["page down"] is Command.NEXT_START and buttons["start"] is Command.PAUSE
    assert load_profile("desktop").window_scale is None  # sized to the screen


def write(tmp_path, text):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_profile_binding_a_scheme_key_is_refused(tmp_path):
    path = write(tmp_path, "name: mine\nkeys:\n  pause: [w]\n")
    with pytest.raises(ConfigError) as err:
        check_bindings(load_profile(path), load_scheme("camera"), path)
    message = str(err.value)
    assert "'w'" in message and "pause" in message and "scheme 'camera'" in message and "forward" in message
    assert str(path) in message and "'keys.pause'" in message


def test_profile_binding_a_scheme_pad_button_is_refused(tmp_path):
    path = write(tmp_path, "buttons:\n  reset: [a]\n")
    message = r"'a' is a system key here \(reset\) but scheme 'keys' uses it for use"
    with pytest.raises(ConfigError, match=message):
        check_bindings(load_profile(path), load_scheme("keys"), path)


@pytest.mark.parametrize("text,message", [
    ("keys:\n  pause: [pp]\n", "'keys.pause': unknown name"),
    ("keys:\n  pause: [x]\n  reset: [x]\n", "'x' is already bound to pause"),
    ("window_scale: 0\n", "'window_scale': out of range"),
    ("keys:\n  jump: [j]\n", "'keys.jump': unknown key"),
    ("target_fps: fast\n", "'target_fps': wrong type"),
])
def test_malformed_profiles(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        load_profile(write(tmp_path, text))


def test_play_refuses_the_profile_before_opening_a_window(tiny_checkpoint, tmp_path, capsys):
    path = write(tmp_path, "keys:\n  quit: [escape, d]\n")
    rc = main(["play", "--headless", "--checkpoint", str(tiny_checkpoint), "--frames", "2",
               "--profile", str(path)])
    assert rc == 2 and "'d' is a system key here (quit) but scheme 'camera' uses it for strafe" in \
        capsys.readouterr().err
