"""Fuzzing every user-written input: schemes, profiles, scripted programs (YAML) and action logs (JSON lines).

Whatever the bytes, loading either succeeds or raises a WorldsimError (ConfigError, ActionLogError) whose message
the CLI prints; any other exception would reach the user as a traceback. Inputs come three ways: random text,
random YAML/JSON-like data trees, and mutations of real files (a value swapped for another of any type, a key
renamed), which get past the parser and reach the validators.
"""

import json
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worldsim.conditioning.scheme import SCHEMES_DIR, scheme_from_dict
from worldsim.config import parse_yaml
from worldsim.errors import WorldsimError
from worldsim.input.program import PROGRAMS_DIR, program_from_data
from worldsim.input.replay import read_action_log
from worldsim.runtime.profile import PROFILES_DIR, profile_from_data

EXAMPLES = int(os.environ.get("WORLDSIM_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                              HealthCheck.function_scoped_fixture])

# ---- strategies --------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["w", "left ctrl", "right_x", "a", "explore", "multi_hot", "camera_delta", "linear", "start",
                     "forward", "yaw", "keys", "frames", "segments", "", "-1", "1e999"]),
)
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=10), scalars), inner, max_size=4)),
    max_leaves=20)
yaml_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from(list("abc:-[]{}!&*#|>'\"\n\t ,.?%@`0123456789")), max_size=200),
)


def shipped(directory) -> list:
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]


def paths(data, prefix=()):
    """Every (path to a value) inside nested dicts and lists."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from paths(value, (*prefix, i))


def replaced(data, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {**data, head: replaced(data[head], rest, value)}
    copy = list(data)
    copy[head] = replaced(copy[head], rest, value)
    return copy


def renamed(data, path, name):
    """The key at `path` renamed (a typo), or `data` unchanged when the path ends in a list."""
    if not path or not isinstance(data, dict):
        return data
    head, rest = path[0], path[1:]
    if rest:
        return {**data, head: renamed(data[head], rest, name)} if isinstance(data[head], (dict, list)) else data
    return {(name if k == head else k): v for k, v in data.items()}


@st.composite
def mutations(draw, originals: list):
    data = draw(st.sampled_from(originals))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(data))))
        if draw(st.booleans()):
            data = replaced(data, path, draw(trees))
        else:
            data = renamed(data, path, draw(st.text(max_size=8)))
    return data


def only_worldsim_errors(load, data) -> None:
    try:
        load(data)
    except WorldsimError:
        pass


def test_encoding_type_of_the_wrong_type_is_a_config_error():  # found by the fuzzer
    with pytest.raises(WorldsimError, match="encoding.type"):
        scheme_from_dict({"encoding": {"type": []}}, "fuzz.yaml")


# ---- schemes, profiles, scripted programs: YAML text, then loaded data -----------------------------------------

LOADERS = {"scheme": (scheme_from_dict, shipped(SCHEMES_DIR)),
           "profile": (profile_from_data, shipped(PROFILES_DIR)),
           "program": (program_from_data, shipped(PROGRAMS_DIR))}


@pytest.mark.parametrize("kind", LOADERS)
@FUZZ
@given(text=yaml_text)
def test_yaml_text(kind, text):
    load, _ = LOADERS[kind]
    only_worldsim_errors(lambda t: load(parse_yaml(t, "fuzz.yaml"), "fuzz.yaml"), text)


@pytest.mark.parametrize("kind", LOADERS)
@FUZZ
@given(data=st.data())
def test_loaded_data(kind, data):
    load, originals = LOADERS[kind]
    only_worldsim_errors(lambda d: load(d, "fuzz.yaml"), data.draw(st.one_of(trees, mutations(originals))))


# ---- action logs --------------------------------------------------------------------------------------------

HEADER = {"format": "worldsim-actions", "version": 1, "scheme": "camera", "encoding": {"type": "camera_delta"},
          "seed": 0, "steps": 1, "checkpoint": "abc"}
FRAME = {"frame": 1, "state": {"keys": ["w"], "mouse": [1.0, 0.0], "mouse_buttons": [], "axes": {"right_x": 0.5},
                               "buttons": [], "gamepad": True}, "sha256": "0" * 64}
LOG = [HEADER, {"reset": True}, FRAME]


def json_line(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


@pytest.fixture
def log_file(tmp_path):
    return tmp_path / "fuzz.actions.jsonl"


@FUZZ
@given(st.one_of(
    st.binary(max_size=300).map(lambda b: ("bytes", b)),
    st.lists(st.one_of(trees.map(json_line), st.text(max_size=40)), max_size=5).map(lambda ls: ("lines", ls)),
    mutations([LOG]).map(lambda entries: ("lines", [json_line(e) for e in entries]
                                          if isinstance(entries, list) else [json_line(entries)])),
))
def test_action_log(log_file, case):
    kind, content = case
    if kind == "bytes":
        log_file.write_bytes(content)
    else:
        log_file.write_text("\n".join(content) + "\n", encoding="utf-8", errors="surrogatepass")
    only_worldsim_errors(read_action_log, log_file)


ALIAS_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                       + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]) + "\n"


def test_yaml_alias_bomb_is_refused_quickly():  # found by the fuzzer
    """A 300-byte 'billion laughs' file must fail fast (a ConfigError), not hang the loader."""
    import subprocess
    import sys

    code = ("import sys; from worldsim.config import parse_yaml, ConfigError\n"
            "try:\n    parse_yaml(sys.stdin.read())\nexcept ConfigError:\n    sys.exit(0)\nsys.exit(1)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], input=ALIAS_BOMB, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("parse_yaml still walking the alias bomb after 10 s")
    assert done.returncode == 0
