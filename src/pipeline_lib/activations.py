"""Last-layer activations of a victim on one class's clean and poisoned training images, mapped to 2-D by
t-SNE (the 001 seed's Figure 5: poisoned images form their own cluster unless the model was trained adversarially)."""
from __future__ import annotations

import numpy as np
import torch

from . import models
from .attacks import read_poison_set
from .data import Dataset, load_prepared
from .defences import embeddings
from .plots import tsne_panels


def class_activations(model_path: str, ds: Dataset, poison_path: str, cls: int, max_clean: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate activations of up to `max_clean` clean training images labelled `cls` and of every poisoned
    image labelled `cls`, with a mask marking the poisoned ones."""
    ps, _ = read_poison_set(poison_path)
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


def draw_tsne(model_paths: list[str], poison_paths: list[str], data_path: str, titles: list[str], cls: int,
              max_clean: int, title: str, out: str) -> None:
    """One t-SNE panel per victim of a figure, each from its own poisoned training set."""
    ds = load_prepared(data_path)
    maps = []
    for model_path, poison_path in zip(model_paths, poison_paths):
        feats, poisoned = class_activations(model_path, ds, poison_path, cls, max_clean, seed=0)
        maps.append((tsne_map(feats, seed=0), poisoned))
    tsne_panels(maps, titles, ds.classes[cls], title, out)
