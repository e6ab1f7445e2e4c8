"""Last-layer activations of a victim on one class's clean and poisoned training images, mapped to 2-D by
t-SNE (the 001 seed's Figure 5: poisoned images form their own cluster unless the model was trained adversarially)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from . import models
from .poisons import PoisonSet, read_poison_set
from .data import Dataset, load_prepared
from .defences import embeddings
from .fit import mean_with_se
from .plots import tsne_panels
from .tables import write_csv


def class_activations(model_path: str, ds: Dataset, ps: PoisonSet, cls: int, max_clean: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate activations of up to `max_clean` clean training images labelled `cls` and of every poisoned
    image labelled `cls` (of poison set `ps`), with a mask marking the poisoned ones."""
    x, y = ps.apply_to(ds.x_train, ds.y_train)
    poisoned = ps.mask(len(y))
    clean = np.flatnonzero((y == cls) & ~poisoned)
    clean = np.sort(np.random.default_rng(seed).permutation(clean)[:max_clean])
    chosen = np.concatenate([clean, np.flatnonzero((y == cls) & poisoned)])
    feats = embeddings(models.load_model(model_path), x[chosen], torch.device("cpu"))
    return feats, poisoned[chosen]


def tsne_map(features: np.ndarray, seed: int) -> np.ndarray:
    """2-D t-SNE of activations (scikit-learn, PCA initialisation, seeded)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def separation(features: np.ndarray, poisoned: np.ndarray, neighbours: int = 10) -> dict[str, float]:
    """How far clean and poisoned activations of one class separate: the silhouette of the two groups (1: apart,
    0: mixed; scikit-learn, Euclidean) and the k-nearest-neighbour purity (share of each point's `neighbours` nearest
    others in its own group, averaged; the share of the larger group when they mix). Both are means over points,
    each with its standard error over them (`_se`: the scorecard's interval)."""
    from sklearn.metrics import silhouette_samples
    from sklearn.neighbors import NearestNeighbors

    if poisoned.all() or not poisoned.any():
        return {m: float("nan") for m in ("silhouette", "silhouette_se", "knn_purity", "knn_purity_se")}
    k = min(neighbours, len(features) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    purity = (poisoned[idx[:, 1:]] == poisoned[:, None]).mean(1)
    return {**mean_with_se("silhouette", silhouette_samples(features, poisoned.astype(int))),
            **mean_with_se("knn_purity", purity)}


def draw_tsne(model_paths: list[str], poison_paths: list[str], data_path: str, titles: list[str], max_clean: int,
              title: str, out: str, table_out: str, rows: list[dict[str, Any]],
              attacks: dict[str, dict[str, Any]]) -> None:
    """One t-SNE panel per victim of a figure, of its target class's clean and poisoned training images, each from
    its own poisoned training set (a row of panels per class), and a table of how far the clean and poisoned
    activations separate (one row per victim, described by `rows`: its attack, target and amount name the set,
    checked against `attacks`, the config's attack blocks by name)."""
    ds = load_prepared(data_path)
    sets = [read_poison_set(p, ds, attacks[row["attack"]], row["target"], row["amount"])[0]
            for p, row in zip(poison_paths, rows, strict=True)]
    maps, table = [], []
    for model_path, ps, row in zip(model_paths, sets, rows, strict=True):
        feats, poisoned = class_activations(model_path, ds, ps, row["target"], max_clean, seed=0)
        maps.append((tsne_map(feats, seed=0), poisoned))
        table.append({**row, "clean": int((~poisoned).sum()), "poisoned": int(poisoned.sum()),
                      **separation(feats, poisoned)})
    order = sorted(range(len(rows)), key=lambda i: rows[i]["target"])  # a row of panels per class
    tsne_panels([maps[i] for i in order], [titles[i] for i in order], [ds.classes[rows[i]["target"]] for i in order],
                title, out)
    write_csv(pd.DataFrame(table), table_out)
