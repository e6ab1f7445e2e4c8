"""Loss-based data filtering (thesis 7.3): rank training examples by the probability a trusted model gives their label.
Torch is imported only by the scoring itself, so the figures that read the scores start fast."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import load_npz, save_npz
from .poisons import read_poison_set
from .data import load_prepared

if TYPE_CHECKING:
    import pandas as pd
    import torch


def label_probability(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax probability the model assigns to each image's (possibly poisoned) label."""
    from .models import batched

    model.eval().to(device)
    return batched(lambda xb, yb: model(xb).float().softmax(1).gather(1, yb[:, None])[:, 0], x, y,
                   device=device).numpy()


def poisoned_among_lowest(prob: np.ndarray, poisoned: np.ndarray) -> np.ndarray:
    """found[k] = number of poisoned examples among the k+1 examples of lowest label probability."""
    order = np.argsort(prob, kind="stable")
    return np.cumsum(poisoned[order])


def filtering_table(scores: list[dict[str, np.ndarray]], series: list[str], sets: list[dict[str, object]],
                    inspected: int | None = None) -> pd.DataFrame:
    """One row per scored poison set: the share of its p poisons found among the `inspected` examples of lowest
    label probability (default p), as `found_among_lowest` with its hits and n (thesis 7.3: "by examining 300
    training images, we encounter over 20 of the poisoned images")."""
    import pandas as pd

    rows = []
    for s, label, meta in zip(scores, series, sets, strict=True):
        p = int(s["poisoned"].sum())
        k = min(inspected or p, len(s["poisoned"]))
        found = int(poisoned_among_lowest(s["probability"], s["poisoned"])[k - 1]) if k else 0
        rows.append({"series": label, **meta, "poisoned": p, "inspected": k,
                     "found_among_lowest": found / p if p else float("nan"), "found_among_lowest_hits": found,
                     "found_among_lowest_n": p})
    return pd.DataFrame(rows)


def score_training_set(data_path: str, poison_path: str, attack: dict[str, Any], target: int, amount: str,
                       filter_path: str, out: str) -> None:
    """Stage 3b: label probabilities of every example of a poisoned training set (made by the attack block, target
    and amount given) under the trusted model."""
    from . import devices, models

    ds = load_prepared(data_path)
    ps, _ = read_poison_set(poison_path, ds, attack, target, amount)
    x, y = ps.apply_to(ds.x_train, ds.y_train)
    model = models.load_model(filter_path)
    with devices.acquire() as device:
        prob = label_probability(model, x, y, device)
    save_npz(out, probability=prob, poisoned=ps.mask(len(y)), labels=y)


def read_scores(path: str) -> dict[str, np.ndarray]:
    """(probability, poisoned, labels) arrays of a scored training set."""
    return load_npz(path, {"probability": "f", "poisoned": "b", "labels": "i"})
