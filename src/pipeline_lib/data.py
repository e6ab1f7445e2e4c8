"""Dataset registry: every source is reduced to one canonical uint8 NHWC npz with labels and class names."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from .artifacts import ArtifactError, load_npz, npz_headers, readable_file, save_npz

# CIFAR-100 fine label -> one of its 20 coarse superclasses (the dataset's published grouping).
CIFAR100_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
])
CIFAR100_SUPERCLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
]
NPZ_ARRAYS = {"x_train": "u", "y_train": "iu", "x_test": "u", "y_test": "iu"}
# sanity caps on an archive, checked from its array headers before anything is decompressed: ImageNet-21k has 14M
# images in 21,841 classes; a label or a header beyond these is a broken or hostile file
MAX_IMAGES = 20_000_000
MAX_CLASSES = 100_000
MAX_IMAGE_SIDE = 1024


@dataclass(frozen=True)
class Dataset:
    """Train/test images (uint8, NHWC) with integer labels and class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def validate(ds: Dataset, origin: str) -> Dataset:
    """Check shapes, dtypes and label ranges; raise ArtifactError naming the offending array."""
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if len(x) == 0:
            raise ArtifactError(f"{origin}: x_{split} is empty (no {split} images)")
        if x.dtype != np.uint8:
            raise ArtifactError(f"{origin}: x_{split} has dtype {x.dtype}, expected uint8 (0..255)")
        if x.ndim != 4 or x.shape[3] not in (1, 3):
            raise ArtifactError(f"{origin}: x_{split} has shape {x.shape}, expected (N, H, W, C) with C in (1, 3)")
        if y.ndim != 1 or len(y) != len(x):
            raise ArtifactError(f"{origin}: y_{split} has shape {y.shape}, expected ({len(x)},) to match x_{split}")
        if len(y) and (y.min() < 0 or y.max() >= ds.num_classes):
            raise ArtifactError(f"{origin}: y_{split} has labels outside 0..{ds.num_classes - 1}")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise ArtifactError(f"{origin}: x_train images {ds.x_train.shape[1:]} differ from x_test {ds.x_test.shape[1:]}")
    return ds


def _from_arrays(x_tr: np.ndarray, y_tr: ArrayLike, x_te: np.ndarray, y_te: ArrayLike,
                 classes: Iterable[object]) -> Dataset:
    """Build a Dataset with canonical dtypes."""
    return Dataset(np.ascontiguousarray(x_tr, dtype=np.uint8), np.asarray(y_tr, dtype=np.int64),
                   np.ascontiguousarray(x_te, dtype=np.uint8), np.asarray(y_te, dtype=np.int64),
                   tuple(str(c) for c in classes))


def load_digits(root: Path) -> Dataset:
    """scikit-learn's bundled 8x8 digits, scaled to 0..255, split 75/25 per class with a fixed seed."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.25, stratify=d.target, random_state=0)
    return _from_arrays(x_tr, y_tr, x_te, y_te, [str(i) for i in range(10)])


def _torchvision(cls_name: str, root: Path) -> tuple:
    """Download (md5-verified by torchvision) and return both splits of a torchvision dataset."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        tr, te = cls(root, train=True, download=True), cls(root, train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise ArtifactError(f"{cls_name}: download into {root} failed ({e}); "
                            f"without network, use an 'npz:<path>' source") from None
    return tr, te


def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 through torchvision."""
    tr, te = _torchvision("CIFAR10", root)
    return _from_arrays(tr.data, tr.targets, te.data, te.targets, tr.classes)


def load_cifar100(root: Path) -> Dataset:
    """CIFAR-100 with its 100 fine labels through torchvision."""
    tr, te = _torchvision("CIFAR100", root)
    return _from_arrays(tr.data, tr.targets, te.data, te.targets, tr.classes)


def load_cifar100_coarse(root: Path) -> Dataset:
    """CIFAR-100 relabelled to its 20 superclasses (the thesis's DP pretraining set)."""
    tr, te = _torchvision("CIFAR100", root)
    return _from_arrays(tr.data, CIFAR100_COARSE[np.asarray(tr.targets)], te.data,
                        CIFAR100_COARSE[np.asarray(te.targets)], CIFAR100_SUPERCLASSES)


def load_mnist(root: Path) -> Dataset:
    """MNIST through torchvision, as 28x28x1."""
    tr, te = _torchvision("MNIST", root)
    return _from_arrays(tr.data.numpy()[..., None], tr.targets.numpy(), te.data.numpy()[..., None],
                        te.targets.numpy(), [str(i) for i in range(10)])


def load_cinic10_imagenet(root: Path) -> Dataset:
    """CINIC-10's ImageNet-derived images, its train and test splits, from the official archive (downloaded into
    `root` and md5-checked on first use), labelled as CIFAR-10's classes."""
    from . import cinic10

    splits = cinic10.imagenet_images(cinic10.download(root))
    return _from_arrays(*splits["train"], *splits["test"], cinic10.CLASSES)


def _class_names(z: dict[str, np.ndarray], origin: str) -> list[str]:
    """An archive's `classes` array, else 0..k for the largest label of either split (at most MAX_CLASSES)."""
    if "classes" in z:
        return [str(c) for c in z["classes"]]
    top = max((int(z[k].max()) for k in ("y_train", "y_test") if z[k].size), default=-1)
    if top >= MAX_CLASSES:
        raise ArtifactError(f"{origin}: label {top} implies more than {MAX_CLASSES} classes; give class names in a "
                            "'classes' array and labels 0..len(classes)-1")
    return [str(i) for i in range(top + 1)]


def check_npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """An archive's array headers, refusing (from them alone) arrays that are missing, of the wrong kind (images
    not uint8) or beyond the sanity caps, an empty split, label and image counts that differ, or train and test
    images of different sizes: nothing is decompressed before this passes."""
    headers = npz_headers(path)
    for name, kind in NPZ_ARRAYS.items():
        if name not in headers:
            raise ArtifactError(f"{path}: missing array '{name}' (has: {', '.join(sorted(headers)) or 'none'})")
        shape, dtype = headers[name]
        if name.startswith("x_") and dtype != np.uint8:  # refuse, never wrap, images that do not fit 8 bits
            raise ArtifactError(f"{path}: array '{name}' has dtype {dtype}, expected uint8 (0..255); rescale the "
                                "images to 8 bits first")
        if dtype.kind not in kind or dtype.itemsize > 8:
            raise ArtifactError(f"{path}: array '{name}' has dtype {dtype}, expected kind '{kind}'")
        if shape and shape[0] > MAX_IMAGES:
            raise ArtifactError(f"{path}: array '{name}' has {shape[0]} rows, more than the {MAX_IMAGES} allowed")
    for split in ("train", "test"):
        (xs, _), (ys, _) = headers[f"x_{split}"], headers[f"y_{split}"]
        if len(ys) != 1 or not xs or ys[0] != xs[0]:
            raise ArtifactError(f"{path}: y_{split} has shape {ys}, expected ({xs[0] if xs else '?'},) to match "
                                f"x_{split} {xs}")
        if len(xs) not in (3, 4) or max(xs[1:3]) > MAX_IMAGE_SIDE or (len(xs) == 4 and xs[3] not in (1, 3)):
            raise ArtifactError(f"{path}: x_{split} has shape {xs}, expected (N, H, W) or (N, H, W, C) with C in "
                                f"(1, 3) and sides of at most {MAX_IMAGE_SIDE}")
        if xs[0] == 0:
            raise ArtifactError(f"{path}: x_{split} is empty (no {split} images)")
    train, test = (image_shape(headers[f"x_{split}"][0]) for split in ("train", "test"))
    if train != test:
        raise ArtifactError(f"{path}: x_train images {train} differ from x_test {test}")
    if "classes" in headers:
        shape, dtype = headers["classes"]
        if len(shape) != 1 or shape[0] > MAX_CLASSES or dtype.kind not in "U" or dtype.itemsize > 4 * 256:
            raise ArtifactError(f"{path}: array 'classes' has shape {shape} and dtype {dtype}, expected at most "
                                f"{MAX_CLASSES} names of at most 256 characters")
    return headers


def load_local_npz(path: Path) -> Dataset:
    """A local archive with x_train, y_train, x_test, y_test (and optionally class names in `classes`)."""
    check_npz_headers(path)
    z = load_npz(path, NPZ_ARRAYS)
    classes = _class_names(z, str(path))
    for split in ("train", "test"):
        if z[f"x_{split}"].ndim == 3:  # grayscale without channel axis
            z[f"x_{split}"] = z[f"x_{split}"][..., None]
    return validate(_from_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"], classes), str(path))


DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "cifar100_coarse": load_cifar100_coarse,
    "cinic10_imagenet": load_cinic10_imagenet,
}


@dataclass(frozen=True)
class SourceInfo:
    """What planning checks a source against, read without preparing it."""

    num_classes: int
    image_shape: tuple[int, ...]               # (H, W, C)
    train_counts: tuple[int, ...] | None       # training images per class; None until a download is prepared


# (classes, image shape) of the registry sources; their class sizes are known only once downloaded, but for the
# bundled digits, whose fixed split load_digits makes (tested against it; planning need not import scikit-learn)
REGISTRY_INFO = {"digits": (10, (8, 8, 1)), "mnist": (10, (28, 28, 1)), "cifar10": (10, (32, 32, 3)),
                 "cifar100": (100, (32, 32, 3)), "cifar100_coarse": (20, (32, 32, 3)),
                 "cinic10_imagenet": (10, (32, 32, 3))}
REGISTRY_TRAIN_COUNTS = {"digits": (133, 136, 133, 137, 136, 136, 136, 134, 131, 135)}


def describe(source: str) -> SourceInfo:
    """Class count, image shape and class sizes of a source (an npz archive's headers, then its labels, are read)."""
    path = local_path(source)
    if path is None:
        n, shape = REGISTRY_INFO[source]
        return SourceInfo(n, shape, REGISTRY_TRAIN_COUNTS.get(source))
    headers = check_npz_headers(path)
    z = load_npz(path, {"y_train": "iu", "y_test": "iu"}, only={"y_train", "y_test", "classes"})
    n = len(_class_names(z, str(path)))
    for split in ("train", "test"):
        y = z[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= n):
            raise ArtifactError(f"{path}: y_{split} has labels outside 0..{n - 1}")
    counts = np.bincount(z["y_train"].astype(np.int64), minlength=n)
    return SourceInfo(n, image_shape(headers["x_train"][0]), tuple(int(c) for c in counts))


def image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(H, W, C) of an (N, H, W) or (N, H, W, C) image array (grayscale without a channel axis: C = 1)."""
    return tuple(shape[1:]) + ((1,) if len(shape) == 3 else ())


def local_path(source: str) -> Path | None:
    """The file behind an 'npz:<path>' source, else None."""
    return Path(source[len("npz:"):]) if source.startswith("npz:") else None


def load_source(source: str, data_root: str | Path) -> Dataset:
    """Load a dataset from a registry name or an 'npz:<path>' source."""
    path = local_path(source)
    if path is not None:
        return load_local_npz(path)
    if source not in DATASETS:
        raise ArtifactError(f"unknown dataset source '{source}'; known: {', '.join(DATASETS)} or npz:<path>")
    return validate(DATASETS[source](Path(data_root)), source)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_planned(source: str, data_root: str | Path, sha256: str | None) -> Dataset:
    """load_source, refusing a local archive whose bytes are no longer those planning hashed (before or after the
    read), so a file swapped after planning never trains anything."""
    path = local_path(source)
    if path is None or sha256 is None:
        return load_source(source, data_root)

    def check() -> None:
        if file_sha256(readable_file(path)) != sha256:
            raise ArtifactError(f"{path}: changed since the workflow was planned (its SHA-256 differs); "
                                "run snakemake again to plan with the new file")
    check()
    ds = load_source(source, data_root)
    check()
    return ds


def with_train_counts(ds: Dataset, counts: list[int] | None) -> Dataset:
    """Keep the first counts[c] training images of every class c (e.g. the 001 seed's unbalanced MNIST)."""
    if counts is None:
        return ds
    if len(counts) != ds.num_classes:
        raise ArtifactError(f"train_counts has {len(counts)} entries for {ds.num_classes} classes")
    keep = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(ds.y_train == c)
        if n > len(idx):
            raise ArtifactError(f"train_counts asks for {n} images of class {c}, which has {len(idx)}")
        keep.append(idx[:n])
    keep = np.sort(np.concatenate(keep))
    return dataclasses.replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep])


def save_prepared(path: str | Path, ds: Dataset) -> None:
    """Write the canonical prepared artifact."""
    save_npz(path, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
             classes=np.array(ds.classes))


def load_prepared(path: str | Path) -> Dataset:
    """Read a prepared artifact written by save_prepared."""
    z = load_npz(path, {**NPZ_ARRAYS, "classes": "U"})
    return validate(_from_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"], z["classes"]), str(path))
