"""YAML -> frozen dataclasses, with validation that names the file, the key path, the bad value and what is allowed.

Every config in worldsim is a frozen dataclass; YAML only fills it. `from_dict` walks the dataclass fields and checks
types, ranges (`field(metadata={"range": (lo, hi)})`) and choices (`Literal[...]`), so a bad value fails at load time
with a message a designer can act on, never with a traceback from deep inside the model.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from worldsim import files
from worldsim.errors import WorldsimError

T = TypeVar("T")

PACKAGE_DIR = Path(__file__).resolve().parent
# What worldsim ships besides code: assets/ (schemes, profiles, recipes, programs) and checkpoints/ (the shipped
# world). A checkout or an editable install reads the repository's top-level folders; a wheel carries copies in
# worldsim/_data (build_hooks.py), because a wheel installs files only inside its packages.
SHIPPED_DIR = PACKAGE_DIR / "_data" if (PACKAGE_DIR / "_data").is_dir() else PACKAGE_DIR.parent
ASSETS_DIR = Path(os.environ.get("WORLDSIM_ASSETS", SHIPPED_DIR / "assets"))
CHECKPOINTS_DIR = SHIPPED_DIR / "checkpoints"
MAX_YAML_BYTES = 1_000_000  # a scheme or recipe is a few KB; anything this large is a mistake or hostile
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000  # values after YAML aliases are expanded: stops "billion laughs" alias bombs
MAX_NUMBER = 1e12  # no config value is meaningfully larger; huge numbers are refused before they allocate memory
# Sampler steps per frame, wherever they come from (a checkpoint, an action log, --steps): the sampler preallocates
# per step, and AAPT plays with 1 (the diffusion stage's teacher with tens), so more is a mistake, not a setting.
MAX_SAMPLING_STEPS = 1000


class ConfigError(WorldsimError, ValueError):
    """A config value is wrong. The message says where (file, key path), what (the value) and what is allowed."""

    def __init__(self, file: str | Path | None, path: str, problem: str, value: Any = None, allowed: str = ""):
        self.file, self.path, self.problem, self.value, self.allowed = file, path, problem, value, allowed
        where = f"{file}: " if file else ""
        key = f"'{path}'" if path else "top level"
        msg = f"{where}{key}: {problem}"
        if value is not None:
            msg += f" (got {_short(value)})"
        if allowed:
            msg += f"; allowed: {allowed}"
        super().__init__(msg)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class _StrictLoader(yaml.SafeLoader):
    """Safe loading only: no Python tags, no custom constructors; duplicate keys are an error, not silently lost."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, file: str | Path | None = None) -> Any:
    """Parse YAML text safely; any syntax problem, unknown tag or absurd size becomes a ConfigError."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(file, "", "file too large", f"{len(text)} bytes", f"at most {MAX_YAML_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader derives from SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(file, "", f"invalid YAML at {where}{problem}") from None
    except RecursionError:
        raise ConfigError(file, "", "YAML nested too deeply", allowed=f"at most {MAX_YAML_DEPTH} levels") from None
    except ValueError as err:  # a constructor's int() or date(): too many digits, month 13, ...
        if "integer string conversion" in str(err):
            raise ConfigError(file, "", "a number has too many digits",
                              allowed=f"at most {sys.get_int_max_str_digits()} digits") from None
        raise ConfigError(file, "", f"invalid value: {err}") from None
    _check_size(data, file)
    return data


def parse_json(text: str, file: str | Path | None = None) -> Any:
    """Parse JSON text (a program, a manifest) with the same limits as YAML; any problem becomes a ConfigError."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(file, "", "file too large", f"{len(text)} bytes", f"at most {MAX_YAML_BYTES} bytes")
    try:
        data = files.parse_json(text)
    except ValueError as err:
        raise ConfigError(file, "", str(err)) from None
    _check_size(data, file)
    return data


def _check_size(data: Any, file: str | Path | None) -> None:
    """Depth and expanded size, walked with an explicit stack and a node budget: aliases that share one list
    many times over (an "alias bomb") are refused after MAX_YAML_NODES values, not walked exponentially."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_YAML_NODES:
            raise ConfigError(file, "", "YAML too large once its aliases are expanded",
                              allowed=f"at most {MAX_YAML_NODES} values")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(file, path, "YAML nested too deeply", allowed=f"at most {MAX_YAML_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, _join(path, str(k)), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, _join(path, i), depth + 1) for i, v in enumerate(value))


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing, unreadable or special file is a ConfigError naming it."""
    path = Path(path)
    return parse_yaml(_read_config_text(path), path)


def load_json(path: str | Path) -> Any:
    """Read and parse a JSON file with the YAML loader's limits; any problem is a ConfigError naming it."""
    path = Path(path)
    return parse_json(_read_config_text(path), path)


def _read_config_text(path: Path) -> str:
    """A regular UTF-8 file of at most MAX_YAML_BYTES: a FIFO or /dev/zero is refused before it is read."""
    try:
        return files.read_text(path, MAX_YAML_BYTES)
    except files.FileProblem as err:
        raise ConfigError(path, "", err.problem) from None


def from_dict(cls: type[T], data: Any, *, file: str | Path | None = None, path: str = "") -> T:
    """Build the frozen dataclass `cls` from plain YAML data, validating every field."""
    return _convert(cls, data, file, path)


def load(cls: type[T], path: str | Path, key: str | None = None) -> T:
    """Load a YAML file (optionally one top-level section of it) into `cls`."""
    data = load_yaml(path)
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            raise ConfigError(path, key, "missing section")
        data = data[key]
    return from_dict(cls, data, file=path, path=key or "")


def to_dict(obj: Any) -> Any:
    """A dataclass (or nested containers of them) as plain YAML-safe data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def replace(obj: T, **changes: Any) -> T:
    return dataclasses.replace(obj, **changes)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, file: Any, path: str, field: dataclasses.Field | None = None) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, file, path)
    if origin in (types.UnionType, typing.Union):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, file, path, field)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(file, path, "wrong type", value, _type_name(tp))
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(file, path, "unknown value", value, ", ".join(repr(c) for c in choices))
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(file, path, "expected a list", value, _type_name(tp))
        args = get_args(tp)
        if origin is tuple and len(args) >= 1 and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(file, path, f"expected a list of {len(args)} items", value)
            items = [_convert(a, v, file, _join(path, i), field) for i, (a, v) in enumerate(zip(args, value))]
        else:
            inner = args[0] if args else Any
            items = [_convert(inner, v, file, _join(path, i), field) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, path, "expected a mapping", value)
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {
            _convert(key_tp, k, file, _join(path, str(k))): _convert(val_tp, v, file, _join(path, str(k)), field)
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp in (dict, list):  # free-form data (provenance, metrics): only the container type is checked
        if not isinstance(value, tp):
            raise ConfigError(file, path, "wrong type", value, "a mapping" if tp is dict else "a list")
        return value
    return _convert_scalar(tp, value, file, path, field)


def _convert_scalar(tp: Any, value: Any, file: Any, path: str, field: dataclasses.Field | None) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, path, "wrong type", value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, path, "wrong type", value, "an integer")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(file, path, "wrong type", value, "a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(file, path, "not a finite number", value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, path, "wrong type", value, "a string")
        return value
    else:
        raise TypeError(f"unsupported config field type {tp!r} at {path}")
    lo, hi = (field.metadata.get("range", (-MAX_NUMBER, MAX_NUMBER)) if field else (-MAX_NUMBER, MAX_NUMBER))
    if not lo <= value <= hi:
        raise ConfigError(file, path, "out of range", value, f"{lo} to {hi}")
    return value


def _convert_dataclass(cls: Any, value: Any, file: Any, path: str) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(file, path, "expected a mapping", value, _type_name(cls))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = get_type_hints(cls)
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise ConfigError(file, _join(path, str(unknown[0])), "unknown key", None, ", ".join(fields))
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], file, _join(path, name), f)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(file, _join(path, name), "missing required key", allowed=_type_name(hints[name]))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # __post_init__ cross-field checks raise ValueError with their own message
        raise ConfigError(file, path, str(err)) from None


def rng(lo: float, hi: float) -> dict:
    """Field metadata for a numeric range: `x: int = field(default=4, metadata=rng(1, 64))`."""
    return {"range": (lo, hi)}
