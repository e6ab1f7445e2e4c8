"""Atomic, pickle-free reading and writing of the pipeline's artifacts (npz, json)."""
from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(ValueError):
    """An input file is missing, unreadable or holds arrays of the wrong kind."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path `.<name>.tmp` beside `path`, renamed onto it only if the block succeeds.

    The name is fixed, so a job killed mid-write leaves at most one temp file, which its rerun overwrites
    and renames away; files are created as the umask says (Snakemake never runs two jobs on one output)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save a dict of tensors atomically; the bytes depend only on the contents, not on the file name."""
    import torch  # only the training stages write weights

    buf = io.BytesIO()  # a file path would be recorded inside the archive
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _strict(obj: Any) -> Any:
    """NaN and infinities (a metric over no images) as null, recursively, so the JSON stays strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def save_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON atomically (non-finite numbers as null), indented and key-sorted for stable diffs."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def load_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())
