"""Config blocks into the frozen dataclasses that hold a recipe's or a method's hyperparameters: the dataclass
is the one place a key's default, bounds and meaning are written; its JSON schema is made from it."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
# False inside `prevalidated()`
_SCHEMA_CHECK: ContextVar[bool] = ContextVar("schema_check", default=True)

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
# bounds of size-like keys, far beyond any real experiment: a larger value would only exhaust the memory or time
# of its job, so planning refuses it by key. Published batches are at most a few thousand images (65,536 32x32
# colour images are 0.8 GB as floats); optimisation steps at most a few hundred thousand.
MAX_BATCH = 65_536
MAX_STEPS = 10_000_000


def key(default: Any = dataclasses.MISSING, help: str = "", **bounds: Any) -> Any:
    """A config key of a method's dataclass: its default (none: the key is required), one line of help and JSON
    Schema bounds (minimum, exclusiveMinimum, maximum, exclusiveMaximum, enum)."""
    if isinstance(default, (list, dict)):
        raise TypeError("a key's default must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds})


def _type_schema(hint: Any) -> dict[str, Any]:
    """The JSON schema of a field's type: int, float, bool, str, tuple[x, ...], dict, and unions (None left out:
    a config block leaves an optional key out rather than writing null)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # None is only ever a default (the key left out), never a value
        options = [_type_schema(a) for a in args if a is not type(None)]
        return {"anyOf": options} if len(options) > 1 else options[0]
    if origin is tuple:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"no JSON schema for a config key of type {hint}")


def json_schema(cls: type, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of a block of the dataclass `cls`: its fields' types and bounds, those without a default
    required, nothing else allowed; `fixed` adds keys the block carries beside the fields (e.g. `method`)."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = dict(fixed or {})
    required = list(fixed or {})
    for f in dataclasses.fields(cls):
        schema = _type_schema(hints[f.name]) | f.metadata.get("bounds", {})
        if f.metadata.get("help"):
            schema["description"] = f.metadata["help"]
        properties[f.name] = schema
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "object", "additionalProperties": False, "required": required, "properties": properties}


def defaults(cls: type) -> dict[str, Any]:
    """The keys of `cls` that have defaults, with them."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


class BlockError(ValueError):
    """A config block does not fit its dataclass; `key` names the offending key (empty: the block)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"key '{key}': {message}" if key else message)
        self.key, self.message = key, message


@contextmanager
def prevalidated() -> Iterator[None]:
    """Within the block, config blocks are built without their JSON schema check (their own __post_init__ still
    runs): for blocks validated before they travelled to a machine without jsonschema (the GPU check's bundle)."""
    token = _SCHEMA_CHECK.set(False)
    try:
        yield
    finally:
        _SCHEMA_CHECK.reset(token)


def schema_errors(schema: dict[str, Any], block: dict[str, Any]) -> list[Any]:
    """jsonschema's errors of a block, by path (none inside `prevalidated()`)."""
    if not _SCHEMA_CHECK.get():
        return []
    from jsonschema import Draft202012Validator

    return sorted(Draft202012Validator(schema).iter_errors(block), key=lambda e: list(e.absolute_path))


def _integral(hint: Any, value: Any) -> Any:
    """A value with the integers JSON Schema takes as floats (64.0, 1e3) made ints where the field's type is int."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and isinstance(value, tuple):
        return tuple(_integral(args[0], v) for v in value)
    ints = hint is int or (int in args and float not in args)
    return int(value) if ints and isinstance(value, float) and value.is_integer() else value


def from_block(cls: type[T], block: dict[str, Any], what: str) -> T:
    """An instance of the dataclass `cls` from a config block, checked against its JSON schema (unknown and
    missing keys, types and bounds refused by name) and its own __post_init__; YAML lists become tuples."""
    schema = json_schema(cls)
    for err in schema_errors(schema, block):
        if err.validator == "additionalProperties":
            names = ", ".join(schema["properties"]) or "none"
            for extra in sorted(set(block) - set(schema["properties"])):
                raise BlockError(extra, f"not a key of {what} (its keys: {names})")
        if err.validator == "required":
            missing = [k for k in schema["required"] if k not in block]
            raise BlockError(missing[0], f"missing ({what} needs it)")
        path = ".".join(str(p) for p in err.absolute_path)
        raise BlockError(path, " ".join(err.message.split())[:300])
    hints = typing.get_type_hints(cls)
    try:
        return cls(**{k: _integral(hints.get(k), tuple(v) if isinstance(v, list) else v) for k, v in block.items()})
    except BlockError:
        raise
    except ValueError as e:
        raise BlockError("", f"{what}: {e}") from None
