"""Attack registry: which training images are poisoned, how, and with which labels."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .artifacts import ArtifactError, load_npz, save_npz
from .data import load_prepared
from .layout import Amount
from .triggers import Trigger


@dataclass(frozen=True)
class PoisonSet:
    """The poisoned training examples: their indices, new images, (possibly new) labels, images before the trigger."""

    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    untriggered: np.ndarray

    def apply_to(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full poisoned training set."""
        x, y = x.copy(), y.copy()
        x[self.indices], y[self.indices] = self.images, self.labels
        return x, y

    def mask(self, n: int) -> np.ndarray:
        """Which of a training set's n examples are poisoned."""
        poisoned = np.zeros(n, bool)
        poisoned[self.indices] = True
        return poisoned


def _select(pool: np.ndarray, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """Draw n distinct indices from pool, in random order."""
    if n > len(pool):
        raise ValueError(f"asked to poison {n} images but only {len(pool)} {what} exist")
    return np.sort(rng.permutation(pool)[:n])


def badnets(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gu et al.: random images from the whole training set, relabelled to the target (thesis 2.2)."""
    idx = _select(np.arange(len(y)), n, rng, "training images")
    return idx, np.full(n, target, dtype=np.int64)


def label_consistent(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Only target-class images, labels kept (thesis 3.2, the baseline of Figure 3-2)."""
    idx = _select(np.flatnonzero(y == target), n, rng, f"images of class {target}")
    return idx, y[idx].copy()


def clean(y: np.ndarray, target: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Nothing poisoned: the clean victim every poisoned one is compared with."""
    return np.empty(0, np.int64), np.empty(0, np.int64)


ATTACKS: dict[str, Callable[[np.ndarray, int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "badnets": badnets,
    "label_consistent": label_consistent,
    "input_aware": badnets,  # Nguyen & Tran's all-to-one poisoning: random images, each with its own trigger
    "none": clean,
}


class Triggers(Protocol):
    """Anything that maps uint8 NHWC images to their triggered versions."""

    def apply(self, images: np.ndarray) -> np.ndarray: ...


def load_trigger(spec: dict[str, Any], network: str | None = None) -> Triggers:
    """An attack's trigger: the trained generator and mask of an input-aware attack, else a fixed pattern."""
    if network is None:
        return Trigger(**spec)
    from .trigger_nets import DynamicTrigger  # torch, only for input-aware attacks

    return DynamicTrigger.load(network)


def poison(method: str, x: np.ndarray, y: np.ndarray, target: int, amount: Amount,
           trigger: Triggers | None, seed: int, perturbed: tuple[np.ndarray, np.ndarray] | None = None) -> PoisonSet:
    """Select, (perturb,) trigger and label the poisoned examples of one (attack, target, amount, seed).

    perturbed: (indices, images) of the target class from the perturbation stage; the selection does
    not depend on it, so every perturbation of a figure poisons the same images.
    """
    if method not in ATTACKS:
        raise ValueError(f"unknown attack method '{method}'; known: {', '.join(ATTACKS)}")
    if not 0 <= target < int(y.max()) + 1:
        raise ValueError(f"target class {target} not among the labels 0..{int(y.max())}")
    n = 0 if method == "none" else amount.resolve(int(np.sum(y == target)))
    idx, labels = ATTACKS[method](y, target, n, np.random.default_rng([seed, target]))
    base = x[idx]
    if method == "none":
        return PoisonSet(idx, base, labels, base)
    if perturbed is not None:
        p_idx, p_img = perturbed
        pos = np.searchsorted(p_idx, idx)
        if np.any(pos >= len(p_idx)) or not np.array_equal(p_idx[np.minimum(pos, len(p_idx) - 1)], idx):
            raise ValueError("perturbed images do not cover every selected image (perturb the target class)")
        base = p_img[pos]
    return PoisonSet(idx, trigger.apply(base), labels, base)


def read_perturbed(path: str, cls: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, perturbed images) of one class."""
    z = load_npz(path, {"indices": "i", "images": "u", "cls": "i"})
    if int(z["cls"]) != cls:
        raise ArtifactError(f"{path}: holds class {int(z['cls'])}, expected {cls}")
    if len(z["indices"]) != len(z["images"]):
        raise ArtifactError(f"{path}: {len(z['indices'])} indices but {len(z['images'])} images")
    return z["indices"], z["images"]


def write_poison_set(data_path: str, out: str, method: str, trigger: dict, target: int, amount: str,
                     seed: int, perturbed_path: str | None = None, trigger_net: str | None = None) -> None:
    """Stage 3: poison one (target, amount, seed) of a prepared dataset into an npz artifact."""
    ds = load_prepared(data_path)
    perturbed = read_perturbed(perturbed_path, target) if perturbed_path else None
    pattern = load_trigger(trigger, trigger_net) if method != "none" else None
    ps = poison(method, ds.x_train, ds.y_train, target, Amount.parse(amount), pattern, seed, perturbed)
    save_npz(out, indices=ps.indices, images=ps.images, labels=ps.labels, untriggered=ps.untriggered,
             target=np.int64(target),
             class_size=np.int64(np.sum(ds.y_train == target)), train_size=np.int64(len(ds.y_train)))


def read_poison_set(path: str) -> tuple[PoisonSet, dict[str, int]]:
    """Load a poison set and its metadata (target, class_size, train_size)."""
    z = load_npz(path, {"indices": "i", "images": "u", "labels": "i", "untriggered": "u", "target": "i",
                        "class_size": "i", "train_size": "i"})
    ps = PoisonSet(z["indices"], z["images"], z["labels"], z["untriggered"])
    if not len(ps.indices) == len(ps.images) == len(ps.labels) == len(ps.untriggered):
        raise ArtifactError(f"{path}: indices, images, labels and untriggered images differ in length")
    return ps, {k: int(z[k]) for k in ("target", "class_size", "train_size")}
