"""Dataclass configs from YAML: defaults, then the file, then ``--set key.path=value`` overrides.

Used by every stage command and ``mede2 run``. A config is a tree of dataclasses. Loading starts
from the dataclass defaults as a plain dict, deep-merges the YAML mapping over it (a list given in
YAML replaces the default list), applies the overrides, and builds the dataclasses again, checking
every key: an unknown key is an error naming the file and the key path.

A dataclass may take over its own part of this with two hooks (``BackendConfig`` does):
``from_config(data)`` (a classmethod) builds it from its mapping, and ``config_plain()`` gives the
mapping it is written as (e.g. only the fields that differ from what follows from another one).
A field whose ``metadata`` has ``defaults`` (a mapping) is None until given; what is given is built
over those defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclasses; names file and key."""


def to_plain(value: Any) -> Any:
    """Dataclasses (nested) -> dicts and lists, for merging, YAML dumps and manifests
    (a dataclass with a ``config_plain()`` hook gives its own mapping)."""
    if hasattr(value, "config_plain") and not isinstance(value, type):
        return to_plain(value.config_plain())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def deep_merge(base: Any, update: Any) -> Any:
    """``update`` over ``base``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return update


def set_path(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.0.c=value`` override in place; the value is read as YAML (``4``, ``null``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE")
    path, raw = assignment.split("=", 1)
    parts = [p for p in path.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key path")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {path}: {where!r} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"--set {path}: {'.'.join(parts[:depth])!r} is not a mapping or list")


def _strip_optional(kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def build(cls: type[T], data: Any, where: str = "config", path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively; unknown keys raise :class:`ConfigError`."""
    label = path or cls.__name__
    if hasattr(cls, "from_config"):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: {label} must be a mapping of {cls.__name__} fields")
        try:
            return cls.from_config(data)  # type: ignore[attr-defined]
        except ValueError as err:
            raise ConfigError(f"{where}: {label}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {label} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(f'{path}.{k}'.lstrip('.') for k in unknown)}; "
                          f"{label} knows: {', '.join(fields)}")
    values = {name: _value(hints[name], value, where, f"{path}.{name}".lstrip("."), fields[name].metadata)
              for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {label}: {err}") from None


def _value(kind: Any, value: Any, where: str, path: str, metadata: Any = None) -> Any:
    if value is None:
        return None
    kind = _strip_optional(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        defaults = (metadata or {}).get("defaults")
        if defaults and isinstance(value, dict):
            value = {**defaults, **value}
        return build(kind, value, where, path)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (Any,)
        item = _strip_optional(item)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {path} must be a list, got {type(value).__name__}")
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return [build(item, v, where, f"{path}.{i}") for i, v in enumerate(value)]
    if typing.get_origin(kind) is dict:
        _, item = typing.get_args(kind) or (Any, Any)
        item = _strip_optional(item)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {path} must be a mapping, got {type(value).__name__}")
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return {str(k): build(item, v or {}, where, f"{path}.{k}") for k, v in value.items()}
    return value


def load_config(cls: type[T], source: str | Path | dict[str, Any] | None = None,
                overrides: Iterable[str] = (), section: str | None = None,
                prepare: Callable[[dict[str, Any]], None] | None = None) -> T:
    """A ``cls`` config: its defaults, then ``source`` (YAML file or dict), then ``overrides``.

    Args:
        cls: the top-level config dataclass (every field must have a default).
        source: a YAML file, a dict, or None for the defaults alone.
        overrides: ``key.path=value`` strings (values parsed as YAML).
        section: read the mapping under this top-level key of the file when it is there (so one
            pipeline YAML can hold ``curate:`` and ``distill:`` sections).
        prepare: changes the merged mapping in place before the dataclasses are built.
    """
    where = "config"
    data: dict[str, Any] = {}
    if isinstance(source, (str, Path)):
        where = str(source)
        try:
            with open(source, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle)
        except OSError as err:
            raise ConfigError(f"{where}: cannot read the config file ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}: not valid YAML ({err})") from None
        data = loaded or {}
    elif isinstance(source, dict):
        data = source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    if section and isinstance(data.get(section), dict):
        data = data[section]
    merged = deep_merge(to_plain(cls()), data)
    for assignment in overrides:
        set_path(merged, assignment)
    if prepare is not None:
        prepare(merged)
    return build(cls, merged, where)


def dump_config(config: Any) -> str:
    """YAML text of a config (holds no secret: backends name only their key's variable)."""
    return yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True)
