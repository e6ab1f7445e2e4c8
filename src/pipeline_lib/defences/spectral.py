"""Spectral signatures (Tran et al. 2018): per class, score every example by its squared projection on the top
singular vector of the class's centred penultimate features (of the undefended victim), drop the 1.5 eps n
highest-scoring, retrain."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import BlockError, key
from ..plugins import Defence
from . import SANITISER_MEASURES, retrain_without


@dataclass(frozen=True)
class Config:
    """Spectral signatures' key."""

    eps: float = key(help="the assumed poisoned share; 1.5 eps of every class is flagged", exclusiveMinimum=0)

    def __post_init__(self) -> None:
        if 1.5 * self.eps >= 1:
            raise BlockError("eps", f"{self.eps} would flag 1.5 x eps of every class, that is all of it, leaving "
                             "nothing to train on (the assumed poisoned share is below 2/3)")


def spectral_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection on the top singular vector of each class's centred features."""
    scores = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        centred = features[idx] - features[idx].mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        scores[idx] = (centred @ vt[0]) ** 2
    return scores


def flag_spectral(scores: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """Flag the 1.5 * eps * n highest-scoring examples of every class (Tran et al., eps = assumed poison share)."""
    flagged = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx), round(1.5 * eps * len(idx)))
        flagged[idx[np.argsort(-scores[idx], kind="stable")[:k]]] = True
    return flagged


METHODS = [Defence(name="spectral", summary="spectral signatures (Tran et al. 2018): drop outliers, retrain",
                   config=Config, needs_base=True, measures=SANITISER_MEASURES,
                   fit=retrain_without(lambda f, y, config, seed: flag_spectral(spectral_scores(f, y), y,
                                                                                 config.eps)))]
