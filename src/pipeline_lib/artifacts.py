"""Atomic, pickle-free reading and writing of the pipeline's artifacts (npz, json)."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(ValueError):
    """An input file is missing, unreadable or holds arrays of the wrong kind."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` that is renamed onto it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed npz atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_npz(path: str | Path, required: Mapping[str, str] | None = None,
             only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Read an npz (all arrays, or `only` those) without unpickling; `required` maps names to dtype kinds."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if only is None or k in only}
    except ValueError as e:
        raise ArtifactError(f"{path}: holds object arrays, refused (allow_pickle=False): {e}") from None
    except Exception as e:  # zipfile / OSError / corrupt header
        raise ArtifactError(f"{path}: not a readable npz archive ({e})") from None
    for name, kind in (required or {}).items():
        if name not in arrays:
            raise ArtifactError(f"{path}: missing array '{name}' (has: {', '.join(sorted(arrays)) or 'none'})")
        if arrays[name].dtype.kind not in kind:
            raise ArtifactError(f"{path}: array '{name}' has dtype {arrays[name].dtype}, expected kind '{kind}'")
    return arrays


def save_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, indented and key-sorted for stable diffs."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())
