"""The contract every shipped conditioning scheme keeps (run over the whole registry, `shipped_schemes()`).

- the neutral controller state (nothing held) encodes to the no-op,
- every control of the encoding is reachable from some binding of the scheme's controls,
- conditions have the shapes and dtypes the generator expects and are finite, for any controller state.
"""

from functools import lru_cache
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldsim.conditioning.scheme import Scheme, load_scheme, shipped_schemes
from worldsim.input.state import GAMEPAD_AXES, GAMEPAD_BUTTONS, KEY_NAMES, MOUSE_BUTTONS, ControllerState

GRIDS = [(6, 8), (2, 3)]
SCHEMES = sorted(shipped_schemes())


@lru_cache
def cached_scheme(name: str) -> Scheme:
    return load_scheme(name)


@pytest.fixture(params=SCHEMES)
def scheme(request) -> Scheme:
    return load_scheme(request.param)


def test_registry_is_not_empty():
    assert {"camera", "keys"} <= set(SCHEMES)


@pytest.mark.parametrize("grid", GRIDS)
def test_neutral_state_is_the_no_op(scheme, grid):
    condition = scheme.encode(ControllerState(), grid)
    assert not condition.action.any()  # every control at rest
    frame, tokens = scheme.encode_actions(np.zeros(len(scheme.control_names), np.float32), grid)
    np.testing.assert_array_equal(condition.frame, frame)
    np.testing.assert_array_equal(condition.tokens, tokens)
    if scheme.encoding_config.type == "keys":
        assert condition.frame[-1] == 1.0 and not condition.frame[:-1].any()  # the explicit no-op bit


def single_input_states(scheme: Scheme) -> list[tuple[str, ControllerState]]:
    """One state per binding of the scheme, with just that input active at full strength."""
    controls = scheme.controls.config
    states = [(f"key {k}", ControllerState(keys=frozenset({k}))) for k in controls.keys]
    states += [(f"mouse button {b}", ControllerState(mouse_buttons=frozenset({b})))
               for b in controls.mouse_buttons]
    states += [(f"button {b}", ControllerState(buttons=frozenset({b}), gamepad_connected=True))
               for b in controls.buttons]
    for axis in controls.mouse:
        for sign in (1.0, -1.0):
            dx, dy = (sign * 1000.0, 0.0) if axis == "x" else (0.0, sign * 1000.0)
            states.append((f"mouse {axis}{sign:+}", ControllerState(mouse_dx=dx, mouse_dy=dy)))
    for axis in controls.axes:
        name = axis.rstrip("+-")
        for sign in (1.0, -1.0):
            value = abs(sign) if name.startswith("trigger") else sign
            states.append((f"axis {axis}{sign:+}", ControllerState(axes=MappingProxyType({name: value}),
                                                                      gamepad_connected=True)))
    return states


def test_every_control_is_reachable(scheme):
    reached: dict[str, list[str]] = {name: [] for name in scheme.control_names}
    for label, state in single_input_states(scheme):
        for name, value in zip(scheme.control_names, scheme.action(state)):
            if value != 0.0:
                reached[name].append(label)
    unreachable = [name for name, sources in reached.items() if not sources]
    assert not unreachable, f"scheme {scheme.name}: no binding drives {unreachable}"


def test_bindings_only_reach_named_inputs(scheme):
    controls = scheme.controls.config
    assert set(controls.keys) <= KEY_NAMES
    assert set(controls.mouse_buttons) <= MOUSE_BUTTONS
    assert set(controls.buttons) <= set(GAMEPAD_BUTTONS)
    assert {a.rstrip("+-") for a in controls.axes} <= set(GAMEPAD_AXES)


controller_states = st.builds(
    ControllerState,
    keys=st.frozensets(st.sampled_from(sorted(KEY_NAMES)), max_size=6),
    mouse_dx=st.floats(-1e4, 1e4), mouse_dy=st.floats(-1e4, 1e4),
    mouse_buttons=st.frozensets(st.sampled_from(sorted(MOUSE_BUTTONS))),
    axes=st.dictionaries(st.sampled_from(GAMEPAD_AXES), st.floats(-1.0, 1.0), max_size=6)
    .map(MappingProxyType),
    buttons=st.frozensets(st.sampled_from(GAMEPAD_BUTTONS), max_size=6),
    gamepad_connected=st.booleans(),
)


@pytest.mark.parametrize("name", SCHEMES)
@settings(max_examples=60, deadline=None)
@given(state=controller_states, grid=st.sampled_from(GRIDS))
def test_conditions_have_the_right_shapes_dtypes_and_are_finite(name, state, grid):
    scheme = cached_scheme(name)
    encoding = scheme.encoding
    condition = scheme.encode(state, grid)
    assert condition.action.shape == (len(scheme.control_names),) and condition.action.dtype == np.float32
    assert condition.frame.shape == (encoding.frame_dim,) and condition.frame.dtype == np.float32
    assert condition.tokens.shape == (encoding.token_channels, *grid) and condition.tokens.dtype == np.float32
    for part in (condition.action, condition.frame, condition.tokens):
        assert np.isfinite(part).all()
    low = np.array([encoding.ranges[n][0] for n in scheme.control_names])
    high = np.array([encoding.ranges[n][1] for n in scheme.control_names])
    assert (condition.action >= low).all() and (condition.action <= high).all()


def test_scheme_matches_its_own_encoding(scheme):
    scheme.check_matches(scheme.encoding_dict())


def test_the_world_encoding_fills_its_pose_maps_from_poses_only():
    scheme = load_scheme("world")
    encoding = scheme.encoding
    action = np.array([1.0, 0.0, 0.5, 0.0], np.float32)
    _, bare = scheme.encode_actions(action, (6, 8))
    assert not bare[-encoding.pose_channels:].any()  # at play time the session fills these from its pose
    _, camera_tokens = load_scheme("camera").encode_actions(action, (6, 8))
    np.testing.assert_array_equal(bare[:6], camera_tokens)  # the relative part is the camera scheme's
    poses = np.array([[512.0, -1024.0, 90.0]])
    _, posed = scheme.encode_actions(action[None], (6, 8), poses)
    maps = posed[0, -encoding.pose_channels:]
    np.testing.assert_allclose(maps[:3, 0, 0], [0.5, -1.0, 0.0])  # the camera's position, scaled
    centre_ray = maps[3:, :, 3:5].mean(axis=(1, 2))  # the middle columns look along the heading (+y at 90 degrees)
    assert centre_ray[1] > 0.9 and abs(centre_ray[0]) < 0.2


def test_world_and_camera_schemes_share_an_action_space_but_not_a_checkpoint():
    from worldsim.config import ConfigError

    world, camera = load_scheme("world"), load_scheme("camera")
    assert world.action_space() == camera.action_space()
    with pytest.raises(ConfigError, match="type: scheme has 'world', checkpoint has 'camera'"):
        world.check_matches(camera.encoding_dict())
