"""Activation clustering (Chen et al. 2018): per class, reduce the undefended victim's penultimate features by
ICA, split them in two by k-means, drop the smaller cluster when it is small enough, retrain."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..blocks import key
from ..plugins import Defence
from . import SANITISER_MEASURES, retrain_without


@dataclass(frozen=True)
class Config:
    """Activation clustering's keys."""

    components: int = key(10, "ICA dimensions", minimum=1)
    max_size: float = key(0.35, "a cluster this small (share of its class) is flagged", exclusiveMinimum=0,
                          maximum=1)


def flag_clusters(features: np.ndarray, labels: np.ndarray, components: int, max_size: float,
                  seed: int) -> np.ndarray:
    """Chen et al.'s activation clustering: per class, ICA to a few dimensions, 2-means, flag the smaller
    cluster when it holds at most `max_size` of the class."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA

    flagged = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < max(4, components):
            continue
        reduced = FastICA(n_components=components, random_state=seed, max_iter=1000,
                          whiten="unit-variance").fit_transform(features[idx])
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        small = int(np.bincount(assign, minlength=2).argmin())
        if (assign == small).mean() <= max_size:
            flagged[idx[assign == small]] = True
    return flagged


METHODS = [Defence(name="activation_clustering", summary="activation clustering (Chen et al. 2018): drop the "
                   "small cluster, retrain", config=Config, needs_base=True, measures=SANITISER_MEASURES,
                   fit=retrain_without(lambda f, y, config, seed: flag_clusters(f, y, config.components,
                                                                                 config.max_size, seed)))]
