"""Reading user files: special files are refused before they are opened, sizes are capped, JSON fails clearly."""

import json
import sys

import pytest

from worldsim.files import FileProblem, check_regular, parse_json, read_bytes, read_text


def test_special_files_are_refused_without_reading(make_special, tmp_path):
    path = make_special(tmp_path / "config.yaml")
    with pytest.raises(FileProblem, match=f"is {make_special.kind}, not a regular file; allowed: a regular file"):
        read_bytes(path, 1000)


def test_folders_missing_and_large_files(tmp_path):
    with pytest.raises(FileProblem, match="is a folder"):
        check_regular(tmp_path)
    with pytest.raises(FileProblem, match="file not found"):
        read_text(tmp_path / "nope", 10)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(FileProblem, match=r"file too large \(11 bytes\); allowed: at most 10 bytes"):
        read_bytes(tmp_path / "big", 10)
    assert read_bytes(tmp_path / "big", 11) == b"x" * 11
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    with pytest.raises(FileProblem, match="not UTF-8 text"):
        read_text(tmp_path / "latin1", 10)


@pytest.mark.parametrize("text,message", [
    ("1" * 5000, f"too many digits; allowed: at most {sys.get_int_max_str_digits()} digits"),
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    ('{"a": 1,}', "invalid JSON at column 9"),
    ('{\n"a": }', "invalid JSON at line 2, column 6"),
])
def test_json_problems_are_one_line_value_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_json(text)
    assert parse_json(json.dumps({"a": [1, 2]})) == {"a": [1, 2]}
