"""The keys a player is told about: built from the profile and the scheme, the same in the overlay, `--help` and
the README."""

import re
from pathlib import Path

from worldsim.cli import main
from worldsim.conditioning.scheme import load_scheme
from worldsim.runtime.help import controls_help, key_label, system_help
from worldsim.runtime.profile import load_profile

README = Path(__file__).resolve().parents[2] / "README.md"


def test_key_labels():
    assert [key_label(k) for k in ("w", "escape", "f11", "page down", "left", "left shift")] == [
        "W", "Esc", "F11", "PgDn", "Left", "Left Shift"]


def test_controls_help_groups_keys_by_what_they_do():
    camera = dict(controls_help(load_scheme("camera")))
    assert camera["W / Up"] == "forward" and camera["S / Down"] == "back" and camera["Left / Q"] == "turn left"
    assert camera["Space / right mouse"] == "use" and camera["mouse left/right"] == "turn"
    keys = dict(controls_help(load_scheme("keys")))
    assert keys["A"] == "strafe left" and keys["Right"] == "turn right"  # one-sided controls keep their names


def test_system_help_lists_every_bound_command_with_its_pad_buttons():
    lines = dict(system_help(load_profile("desktop")))
    assert lines["P / pad Start"] == "pause / resume" and lines["F1"] == "show these keys"
    assert len(lines) == 11
    kiosk = dict(system_help(load_profile("kiosk")))
    assert "Esc" not in kiosk and kiosk["F1"].startswith("developer HUD")  # nothing a visitor could quit with


def test_readme_lists_the_desktop_keys():
    text = README.read_text()
    section = text[text.index("### Controls"):text.index("\n## ", text.index("### Controls"))]
    rows = re.findall(r"^\| ([^|]+?) \| [^|]+ \|$", section, re.MULTILINE)[2:]  # after the header rows
    expected = [", ".join(keys.split(" / ")) for keys, _ in system_help(load_profile("desktop"))]
    assert rows == expected


def test_play_help_shows_the_keys_and_the_defaults(capsys):
    try:
        main(["play", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "game keys (profile 'desktop')" in out and "next start point" in out and "W / Up" in out
    assert "(default: float32)" in out and "(default: cpu)" in out
