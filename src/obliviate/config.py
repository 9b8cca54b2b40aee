"""Frozen config dataclasses <-> plain dicts / YAML, with dotted overrides and unknown-key errors.

A config class is any frozen ``@dataclass``; validation lives in its ``__post_init__`` and raises
:class:`~obliviate.errors.ObliviateError`. :func:`from_dict` checks keys (did-you-mean on typos) and types
recursively, so a config is valid as soon as it exists.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from obliviate.errors import ObliviateError, unknown_name_error

C = TypeVar("C")


def from_dict(cls: type[C], data: Mapping[str, Any] | None, path: str = "") -> C:
    """Build config ``cls`` from ``data``; unknown keys and wrong types raise ``ObliviateError`` naming ``path``."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ObliviateError(f"config {path or cls.__name__!r} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise unknown_name_error(f"config key in {path or cls.__name__!r}", str(key), fields)
        kwargs[key] = _coerce(hints[key], value, _join(path, key))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ObliviateError(f"config {path or cls.__name__!r}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain, YAML/JSON-friendly structure of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ObliviateError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ObliviateError(f"config file {str(p)!r} must hold a mapping at the top level")
    return data


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"method.ratio=0.05"`` -> (["method", "ratio"], 0.05); values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ObliviateError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ObliviateError(f"override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key.sub=value`` override set (intermediate mappings are created)."""
    out = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ObliviateError(f"override {text!r}: {'.'.join(parts[: i + 1])!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values in ``update`` win; nested mappings merge."""
    out = _deep_copy(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = _deep_copy(v)
    return out


def _deep_copy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ObliviateError as exc:
                errors.append(str(exc))
        raise ObliviateError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is Literal:
        valid = get_args(tp)
        if value not in valid:
            raise unknown_name_error(f"value for {path!r}", str(value), [str(v) for v in valid])
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ObliviateError(f"{path}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ObliviateError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ObliviateError(f"{path}: expected a mapping, got {value!r}")
        args = get_args(tp)
        if args:
            return {str(k): _coerce(args[1], v, _join(path, str(k))) for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ObliviateError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ObliviateError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ObliviateError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ObliviateError(f"{path}: expected a string, got {value!r}")
    return value
