"""Defences, one module per method: how a victim learns from a possibly poisoned training set. The helpers
several of them share are here; like the method modules, this package imports torch only when a defence runs."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from .. import models
    from ..plugins import Job

Trained = tuple["models.Classifier", dict[str, Any]]


def detection(flagged: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """Precision and recall of flagged examples (boolean masks over the training set) as poison detectors."""
    hits = int((flagged & poisoned).sum())
    return {"flagged": int(flagged.sum()), "precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / max(int(poisoned.sum()), 1)}


def clean_share(job: Job, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The defender's clean data: a seeded random `ratio` of the unpoisoned training set (BackdoorBench's
    `clean_train` subset), at least one image."""
    if job.clean is None:
        raise ValueError("this defence needs the defender's clean share of the training set, and the job has none")
    x, y = job.clean
    pick = np.random.default_rng([seed, len(y)]).permutation(len(y))[:max(1, round(ratio * len(y)))]
    return x[np.sort(pick)], y[np.sort(pick)]


def accuracy(model: models.Classifier, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """A model's accuracy on uint8 images."""
    from ..models import predict

    return float((predict(model, x, device) == y).mean())


def per_sample_loss(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> np.ndarray:
    """Cross-entropy of every example under a model in eval mode."""
    import torch

    from ..models import batched

    model.eval().to(device)
    return batched(lambda xb, yb: torch.nn.functional.cross_entropy(model(xb).float(), yb, reduction="none"), x, y,
                   device=device).numpy()


def embeddings(model: models.Classifier, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Penultimate-layer activations of every example."""
    from ..models import batched

    model.eval().to(device)
    return batched(lambda xb: model.embed(xb).float(), x, device=device).numpy()


def retrain_without(flag: Callable[[np.ndarray, np.ndarray, Any, int], np.ndarray]
                    ) -> Callable[[Job, Any], Trained]:
    """A sanitising defence's fit: drop the examples `flag(features, labels, config, seed)` picks from the
    undefended victim's penultimate features, then retrain under the recipe."""
    def fit(job: Job, config: Any) -> Trained:
        from .. import models
        from ..train import train

        flagged = flag(embeddings(models.load_model(job.base), job.x, job.device), job.y, config, job.seed)
        if flagged.all():
            raise ValueError(f"the defence flagged all {len(job.y)} training examples, leaving nothing to train on")
        model, info = train(job.x[~flagged], job.y[~flagged], job.num_classes, job.recipe, job.seed, job.device,
                            accel=job.accel)
        found = detection(flagged, job.poisoned)
        return model, {**info, "defence": {"flagged": found["flagged"], "kept": int((~flagged).sum()),
                                           "detection_precision": found["precision"],
                                           "detection_recall": found["recall"]}}
    return fit


SANITISER_MEASURES = ("flagged", "kept", "detection_precision", "detection_recall")
