"""Atomic, pickle-free reading and writing of the pipeline's artifacts (npz, json)."""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import stat
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np


class ArtifactError(ValueError):
    """An input file is missing, unreadable or holds arrays of the wrong kind."""


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path `.<name>.tmp` beside `path`, renamed onto it only if the block succeeds.

    The name is fixed, so a job killed mid-write leaves at most one temp file, which its rerun overwrites
    and renames away; files are created as the umask says (Snakemake never runs two jobs on one output).
    The data is fsynced before the rename and the folder after it, so a power loss or a lost node leaves
    either the old state or the whole new file, never a renamed but empty one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if e.filename is None:  # name the file in the one-line error (a full disk, a read-only folder)
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed npz atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def readable_file(path: str | Path) -> Path:
    """The path, if it names a regular file that can be opened; otherwise an ArtifactError saying what it is
    (checked before opening, so a FIFO never blocks the reader)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ArtifactError(f"{path}: " + ("a symbolic link to a missing file" if path.is_symlink()
                                           else "file not found")) from None
    except OSError as e:  # a symlink loop, a name too long, no permission on a folder
        raise ArtifactError(f"{path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ArtifactError(f"{path}: is a directory, expected a file")
    if not stat.S_ISREG(mode):
        raise ArtifactError(f"{path}: is not a regular file (a pipe, socket or device), refused")
    if not os.access(path, os.R_OK):
        raise ArtifactError(f"{path}: cannot be read (permission denied)")
    return path


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array of an npz archive, read from the array headers alone (nothing decompressed
    beyond them), so sizes can be checked before an array is loaded."""
    path = readable_file(path)
    with open(path, "rb") as f:
        return _headers(f, path)


def _headers(f: BinaryIO, path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """npz_headers of an open archive."""
    if f.read(4) != b"PK\x03\x04":
        raise ArtifactError(f"{path}: not an npz archive (no zip signature)")
    out = {}
    try:
        with zipfile.ZipFile(f) as zf:
            for name in zf.namelist():
                with zf.open(name) as member:
                    major, _ = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                out[name.removesuffix(".npy")] = (tuple(shape), dtype)
    except Exception as e:  # a truncated or corrupt zip, an encrypted member, a member that is not an array
        raise ArtifactError(f"{path}: not a readable npz archive ({_first_line(e)})") from None
    return out


def memory_bytes() -> int:
    """This machine's physical memory: no archive may promise arrays that would not fit in it."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _first_line(e: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def load_npz(path: str | Path, required: Mapping[str, str] | None = None, only: Collection[str] | None = None,
             shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Read an npz (all arrays, or `only` those) without unpickling. Nothing is decompressed before the array headers
    show that the `required` arrays exist with their dtype kinds, that arrays named in `shapes` have exactly those
    shapes, and that the arrays read fit in this machine's memory (a small archive can promise terabytes)."""
    path = readable_file(path)
    with open(path, "rb") as f:
        headers = {k: v for k, v in _headers(f, path).items() if only is None or k in only}
        for name in [*(required or {}), *(shapes or {})]:
            if name not in headers:
                raise ArtifactError(f"{path}: missing array '{name}' (has: {', '.join(sorted(headers)) or 'none'})")
        for name, kind in (required or {}).items():
            if headers[name][1].kind not in kind:
                raise ArtifactError(f"{path}: array '{name}' has dtype {headers[name][1]}, expected kind '{kind}'")
        if any(dtype.hasobject for _, dtype in headers.values()):
            raise ArtifactError(f"{path}: holds object arrays, refused (allow_pickle=False)")
        for name, shape in (shapes or {}).items():
            if headers[name][0] != tuple(shape):
                raise ArtifactError(f"{path}: array '{name}' has shape {headers[name][0]}, expected {tuple(shape)}")
        size = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
        if size > memory_bytes():
            raise ArtifactError(f"{path}: its arrays would take {size / 2 ** 30:,.1f} GiB once decompressed, more than "
                                f"this machine's {memory_bytes() / 2 ** 30:,.1f} GiB of memory")
        f.seek(0)
        try:  # the file checked above, never one swapped in since
            with np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in headers}
        except Exception as e:  # zipfile / OSError / corrupt or truncated data
            raise ArtifactError(f"{path}: not a readable npz archive ({_first_line(e)})") from None


class DivergedError(ArithmeticError):
    """Training produced a non-finite loss or weight; its model is never saved or reported."""


def non_finite(obj: Any, key: str = "") -> str | None:
    """The key of the first floating-point tensor (in nested dicts and lists) holding a NaN or infinity, else None."""
    import torch

    if isinstance(obj, torch.Tensor):
        return key if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return next((bad for k, v in items if (bad := non_finite(v, f"{key}.{k}" if key else str(k)))), None)


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save a dict of tensors atomically; the bytes depend only on the contents, not on the file name.
    Weights with a NaN or infinity (a diverged training) raise DivergedError and write nothing."""
    import torch  # only the training stages write weights

    bad = non_finite(obj)
    if bad is not None:
        raise DivergedError(f"{path}: training diverged, tensor '{bad}' holds NaN or infinite values (is a learning "
                            "rate or weight decay too large?); nothing saved")
    buf = io.BytesIO()  # a file path would be recorded inside the archive
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


T = TypeVar("T")


def load_torch(path: str | Path, build: Callable[[dict[str, Any]], T]) -> T:
    """torch.load a file with the weights-only unpickler and build an object from its dict; a file that is not
    such a dict, or whose tensors do not fit what `build` makes, raises one ArtifactError naming the file."""
    import torch

    path = readable_file(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        what = ("holds objects other than tensors and plain containers, refused (weights-only loading)"
                if isinstance(e, pickle.UnpicklingError) else f"not a readable torch file ({_first_line(e)})")
        raise ArtifactError(f"{path}: {what}") from None
    if not isinstance(blob, dict):
        raise ArtifactError(f"{path}: holds a {type(blob).__name__}, expected the dict this pipeline writes")
    try:
        return build(blob)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        raise ArtifactError(f"{path}: does not hold what this pipeline writes there ({type(e).__name__}: "
                            f"{_first_line(e)})") from None


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
