"""Dotted config overrides and strict dict -> dataclass loading, for any config dataclass.

Light on purpose (no area configs imported): `python -m lightcoder.train` and the CLI's stages use it
without loading the whole RunConfig.

    apply_overrides(cfg, {"train.lr": "3e-4"})          # typed by the field annotation, re-validated
    parse_override_args(["--train.lr", "3e-4"])          # -> {"train.lr": "3e-4"}
    config_from_dict(TrainConfig, {"lr": 3e-4})          # unknown keys are ConfigErrors
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from argparse import ArgumentTypeError
from typing import Any


class ConfigError(ValueError):
    """A config key or value the user gave is wrong; the message says which and how to fix it."""


# ----------------------------------------------------------------------------- dict <-> dataclass


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type, values: dict, *, where: str = "") -> Any:
    """Build `cls` from a dict, recursing into nested dataclasses; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}{key}"
        if key not in names:
            raise ConfigError(_unknown_key_message(dotted, [f"{where}{n}" for n in names]))
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            kwargs[key] = config_from_dict(kind, value, where=f"{dotted}.")
        else:
            kwargs[key] = _coerce_value(value, kind, dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where.rstrip('.') or cls.__name__}: {exc}") from exc


# ----------------------------------------------------------------------------- dotted overrides


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Set dotted fields in place, parsing strings by the field's annotation; re-validates each area.

    Example: apply_overrides(cfg, {"train.lr": "3e-4"}) sets cfg.train.lr = 0.0003
    """
    touched: dict[int, tuple[Any, str]] = {}
    for dotted, raw in overrides.items():
        parent, name = _resolve_parent(cfg, dotted)
        kind = typing.get_type_hints(type(parent))[name]
        if dataclasses.is_dataclass(kind):
            raise ConfigError(f"--{dotted} is a section, not a value: set one of its fields, e.g. "
                              f"--{dotted}.{dataclasses.fields(kind)[0].name}")
        setattr(parent, name, _coerce_value(raw, kind, dotted))
        touched[id(parent)] = (parent, dotted.rsplit(".", 1)[0] if "." in dotted else "")
    for parent, section in touched.values():  # re-run __post_init__ validation of every touched area
        post_init = getattr(parent, "__post_init__", None)
        if post_init is not None:
            try:
                post_init()
            except ValueError as exc:
                raise ConfigError(f"{section or 'config'}: {exc}") from exc
    return cfg


def parse_override_args(args: list[str]) -> dict[str, str]:
    """`["--train.lr", "3e-4", "--data.seed=1"]` -> {"train.lr": "3e-4", "data.seed": "1"}."""
    overrides: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise ConfigError(f"unexpected argument {arg!r}: config overrides look like --section.field VALUE")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            value = args[i + 1]
            i += 1
        overrides[key] = value
        i += 1
    return overrides


def _resolve_parent(cfg: Any, dotted: str) -> tuple[Any, str]:
    parts = dotted.split(".")
    node, path = cfg, ""
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            raise ConfigError(_unknown_key_message(dotted, _all_keys(cfg)))
        node, path = getattr(node, part), f"{path}{part}."
    if not dataclasses.is_dataclass(node) or parts[-1] not in {f.name for f in dataclasses.fields(node)}:
        raise ConfigError(_unknown_key_message(dotted, _all_keys(cfg)))
    return node, parts[-1]


def _all_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += _all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key_message(dotted: str, known: list[str]) -> str:
    close = difflib.get_close_matches(dotted, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join('--' + k for k in close)}?" if close else \
        "; run `lightcoder config` to list every key"
    return f"unknown config key --{dotted}{hint}"


def _coerce_value(value: Any, kind: Any, dotted: str) -> Any:
    """Parse a CLI string (or check a JSON value) against a field annotation."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce_value(value, arg, dotted)
            except ConfigError:
                continue
        raise ConfigError(f"--{dotted}: cannot read {value!r} as {kind}")
    if origin in (list, tuple):
        items = value
        if isinstance(value, str):
            items = [v for v in (s.strip() for s in value.split(",")) if v] if value.strip() else []
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"--{dotted}: expected a list, got {value!r}")
        item_kind = args[0] if args else str
        out = [_coerce_value(v, item_kind, dotted) for v in items]
        return tuple(out) if origin is tuple else out
    if origin is dict or kind is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"--{dotted}: expected a JSON object, got {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"--{dotted}: expected a JSON object, got {value!r}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{dotted}: expected true/false, got {value!r}")
    if kind in (int, float, str):
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"--{dotted}: expected an integer, got {value!r}")
        try:
            if kind is int and isinstance(value, str):
                number = float(value)  # accept "1e6"
                if not number.is_integer():
                    raise ValueError
                return int(number)
            coerced = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"--{dotted}: expected {kind.__name__}, got {value!r}") from None
        if kind is float and not math.isfinite(coerced):  # float("nan") parses; no setting means it
            raise ConfigError(f"--{dotted}: expected a finite number, got {value!r}")
        return coerced
    return value  # Any / unannotated


def positive_minutes(text: str) -> float:
    """argparse type: a finite number of minutes > 0 ("nan", "0" and "-1" are usage errors)."""
    try:
        minutes = float(text)
    except ValueError:
        raise ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not (math.isfinite(minutes) and minutes > 0):
        raise ArgumentTypeError(f"expected a number of minutes > 0, got {text!r}")
    return minutes
