"""How a model fits a set of labelled images: a rate with the counts it was measured on, a mean per-image value
with its standard error (the scorecard's intervals need them), the fit to the training set a victim learned from."""
from __future__ import annotations

import numpy as np
import torch

from .models import predict_with_loss


def rate(name: str, hits: np.ndarray) -> dict[str, float | int]:
    """The share of true `hits` as `<name>`, with `<name>_hits` of `<name>_n` images; NaN over none."""
    return {name: float(hits.mean()) if hits.size else float("nan"), f"{name}_hits": int(hits.sum()),
            f"{name}_n": int(hits.size)}


def mean_with_se(name: str, values: np.ndarray) -> dict[str, float]:
    """The mean of per-image values as `<name>` and its standard error (sample SD / sqrt n) as `<name>_se`; NaN
    over no images (and the error over one)."""
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {name: float(values.mean()) if values.size else float("nan"), f"{name}_se": se}


def training_fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> dict[str, float]:
    """How a trained model fits the training set it learned from (poisons spliced in, with their labels):
    `train_accuracy` with its counts and the mean cross-entropy `train_loss` (the 003 seed's table)."""
    pred, losses = predict_with_loss(model, x, y, device)
    return {**rate("train_accuracy", pred == y), **mean_with_se("train_loss", losses)}
