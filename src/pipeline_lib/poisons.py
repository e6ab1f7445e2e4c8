"""Poison sets: the training examples an attack selects, perturbs, triggers and labels, as npz artifacts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import plugins
from .artifacts import ArtifactError, load_npz, save_npz
from .data import Dataset, load_prepared
from .layout import Amount
from .triggers import Applies, make_trigger


@dataclass(frozen=True)
class PoisonSet:
    """The poisoned training examples: their indices, new images, (possibly new) labels, images before the trigger;
    the last `crossed` of them carry no backdoor (WaNet's noise mode: images transformed, labels kept)."""

    indices: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    untriggered: np.ndarray
    crossed: int = 0

    @property
    def count(self) -> int:
        """How many examples carry the backdoor."""
        return len(self.indices) - self.crossed

    def apply_to(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full poisoned training set."""
        x, y = x.copy(), y.copy()
        x[self.indices], y[self.indices] = self.images, self.labels
        return x, y

    def mask(self, n: int) -> np.ndarray:
        """Which of a training set's n examples carry the backdoor."""
        poisoned = np.zeros(n, bool)
        poisoned[self.indices[:self.count]] = True
        return poisoned


def load_trigger(spec: dict[str, Any], network: str | None = None, device: Any = None) -> Applies:
    """An attack's trigger: the trained generator and mask of an input-aware attack (applied on `device`, by default
    the CPU), else a fixed pattern."""
    if network is None:
        return make_trigger(**spec)
    from .trigger_nets import DynamicTrigger  # torch, only for trained triggers

    trigger = DynamicTrigger.load(network)
    return trigger.to(device) if device is not None else trigger


def backdoored(attack: plugins.Attack, amount: Amount, class_size: int) -> int:
    """How many examples an attack backdoors at an amount of a target class of `class_size` images."""
    return 0 if attack.trigger == "none" else amount.resolve(class_size)


def poison(method: str, x: np.ndarray, y: np.ndarray, target: int, amount: Amount,
           trigger: Applies | None, seed: int, perturbed: tuple[np.ndarray, np.ndarray] | None = None,
           config: Any = None) -> PoisonSet:
    """Select, (perturb,) trigger and label the poisoned examples of one (attack, target, amount, seed).

    perturbed: (indices, images) of the target class from the perturbation stage; the selection does
    not depend on it, so every perturbation of a figure poisons the same images. config: the attack's config
    (its dataclass instance), read by attacks that modify further examples (`Attack.cross`).
    """
    attack = plugins.method("attack", method)
    if not 0 <= target < int(y.max()) + 1:
        raise ValueError(f"target class {target} not among the labels 0..{int(y.max())}")
    n = backdoored(attack, amount, int(np.sum(y == target)))
    rng = np.random.default_rng([seed, target])
    idx, labels = attack.select(y, target, n, rng)
    base = x[idx]
    if attack.trigger == "none":
        return PoisonSet(idx, base, labels, base)
    if perturbed is not None:
        p_idx, p_img = perturbed
        pos = np.searchsorted(p_idx, idx)
        if np.any(pos >= len(p_idx)) or not np.array_equal(p_idx[np.minimum(pos, len(p_idx) - 1)], idx):
            raise ValueError("perturbed images do not cover every selected image (perturb the target class)")
        base = p_img[pos]
    if attack.cross is None:
        return PoisonSet(idx, trigger.apply(base), labels, base)
    if config is None:
        raise ValueError(f"attack '{method}' modifies further examples and needs its config")
    more, images = attack.cross(x, y, idx, config, trigger, rng)
    return PoisonSet(np.r_[idx, more], np.concatenate([trigger.apply(base), images]), np.r_[labels, y[more]],
                     np.concatenate([base, x[more]]), crossed=len(more))


def read_perturbed(path: str, cls: int, ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, perturbed images) of one class: every training image of it, as the dataset says."""
    idx = np.flatnonzero(ds.y_train == cls)
    z = load_npz(path, {"indices": "i", "images": "u", "cls": "i"},
                 shapes={"indices": idx.shape, "images": (len(idx), *ds.x_train.shape[1:]), "cls": ()})
    if int(z["cls"]) != cls:
        raise ArtifactError(f"{path}: holds class {int(z['cls'])}, expected {cls}")
    if not np.array_equal(z["indices"], idx):
        raise ArtifactError(f"{path}: indices are not those of the {len(idx)} training images of class {cls}")
    if z["images"].dtype != np.uint8:
        raise ArtifactError(f"{path}: array 'images' has dtype {z['images'].dtype}, expected uint8")
    return z["indices"], z["images"]


def write_poison_set(data_path: str, out: str, attack: dict[str, Any], trigger: dict, target: int, amount: str,
                     seed: int, perturbed_path: str | None = None, trigger_net: str | None = None) -> None:
    """Stage 3: poison one (target, amount, seed) of a prepared dataset into an npz artifact; `attack` is the
    attack's config block."""
    ds = load_prepared(data_path)
    perturbed = read_perturbed(perturbed_path, target, ds) if perturbed_path else None
    pattern = load_trigger(trigger, trigger_net) if trigger or trigger_net else None
    method, config = plugins.settings("attack", attack)
    ps = poison(method.name, ds.x_train, ds.y_train, target, Amount.parse(amount), pattern, seed, perturbed, config)
    save_npz(out, indices=ps.indices, images=ps.images, labels=ps.labels, untriggered=ps.untriggered,
             crossed=np.int64(ps.crossed), target=np.int64(target),
             class_size=np.int64(np.sum(ds.y_train == target)), train_size=np.int64(len(ds.y_train)))


def read_poison_set(path: str, ds: Dataset, attack: dict[str, Any], target: int,
                    amount: str) -> tuple[PoisonSet, dict[str, int]]:
    """A poison set and its metadata (target, class_size, train_size), checked against what the prepared dataset it
    poisons and the attack block, target and amount that made it imply: its array shapes from their headers before
    anything is decompressed, then every field; a lie is one ArtifactError naming the file."""
    method, config = plugins.settings("attack", attack)
    meta = {"target": target, "class_size": int(np.sum(ds.y_train == target)), "train_size": len(ds.y_train)}
    n = backdoored(method, Amount.parse(amount), meta["class_size"])
    crossed = config.crossed(n) if method.cross else 0
    images = (n + crossed, *ds.x_train.shape[1:])
    z = load_npz(path, {"indices": "i", "images": "u", "labels": "i", "untriggered": "u", "crossed": "i",
                        "target": "i", "class_size": "i", "train_size": "i"},
                 shapes={"indices": images[:1], "labels": images[:1], "images": images, "untriggered": images,
                         "crossed": (), "target": (), "class_size": (), "train_size": ()})
    for key, want in {**meta, "crossed": crossed}.items():
        if int(z[key]) != want:
            raise ArtifactError(f"{path}: {key} is {int(z[key])}, but the prepared dataset, attack "
                                f"'{method.name}', target {target} and amount {amount} imply {want}")
    for name in ("images", "untriggered"):
        if z[name].dtype != np.uint8:
            raise ArtifactError(f"{path}: array '{name}' has dtype {z[name].dtype}, expected uint8")
    ps = PoisonSet(z["indices"], z["images"], z["labels"], z["untriggered"], crossed)
    for name, values, top, what in (("index", ps.indices, len(ds.y_train), "training set's images"),
                                     ("label", ps.labels, ds.num_classes, "dataset's classes")):
        if (outside := values[(values < 0) | (values >= top)]).size:
            raise ArtifactError(f"{path}: {name} {outside[0]} is outside the {what} 0..{top - 1}")
    values, counts = np.unique(ps.indices, return_counts=True)
    if (repeated := values[counts > 1]).size:
        raise ArtifactError(f"{path}: index {repeated[0]} occurs {counts.max()} times; a poison set lists each "
                            "image once")
    if not np.array_equal(ps.labels[n:], ds.y_train[ps.indices[n:]]):
        raise ArtifactError(f"{path}: the {crossed} further examples of attack '{method.name}' do not keep their "
                            "labels")
    if not method.relabels and (np.any(ds.y_train[ps.indices[:n]] != target) or np.any(ps.labels[:n] != target)):
        raise ArtifactError(f"{path}: attack '{method.name}' poisons only images of the target class {target}, "
                            "labelled as such; this set has others")
    return ps, meta
