"""Config blocks into the frozen dataclasses that hold a recipe's hyperparameters."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_block(cls: type[T], block: dict[str, Any], what: str) -> T:
    """An instance of the dataclass `cls` from a config block: unknown keys refused by name, YAML lists
    turned into the tuples the frozen fields hold."""
    unknown = sorted(set(block) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} key(s): {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in block.items()})
