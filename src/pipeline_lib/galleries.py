"""Image-grid figures: poisoned examples next to their originals (Figures 1-2, 1-3, 3-3, 3-4, 3-10, 3-12,
A.3) and the examples a data filter flags (Appendix A.1)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False  # titles and class names are drawn as written, never as TeX
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .poisons import read_poison_set, read_perturbed  # noqa: E402
from .data import load_prepared  # noqa: E402
from .filtering import read_scores  # noqa: E402
from .layout import Poisoned  # noqa: E402
from .plots import save_figure, suptitle  # noqa: E402
from .triggers import make_trigger  # noqa: E402


def _show(ax: plt.Axes, img: np.ndarray, caption: str = "", frame: str | None = None) -> None:
    """One image without ticks; an optional coloured frame marks it (e.g. poisoned)."""
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(frame is not None)
        if frame:
            side.set_edgecolor(frame)
            side.set_linewidth(3)
    if caption:
        ax.set_xlabel(caption, fontsize=7)


def example_rows(y: np.ndarray, classes: list[int], per_class: int, seed: int) -> np.ndarray:
    """Training indices of the rows: per_class random images of each class, class by class."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes])


def examples(data_path: str, perturbed_paths: dict[tuple[str, int], str], columns: list[tuple[str, dict[str, str]]], classes: list[int],
             per_class: int, shown_label: int | None, triggers: dict[str, dict[str, Any]], title: str,
             path: str | Path, seed: int = 0) -> None:
    """Rows of training images, columns of {perturbation, trigger} variants ({} is the original image);
    a single variant is laid out as one row of images instead. perturbed_paths: (perturbation, class) -> file."""
    ds = load_prepared(data_path)
    rows = example_rows(ds.y_train, classes, per_class, seed)
    perturbed: dict[tuple[str, int], dict[int, np.ndarray]] = {}
    for (name, cls), p in perturbed_paths.items():
        idx, imgs = read_perturbed(p, cls, ds)
        perturbed[name, cls] = dict(zip(idx.tolist(), imgs))
    grid = np.array([[(i, label, col) for label, col in columns] for i in rows], dtype=object)
    if len(columns) == 1:
        grid = grid.reshape(1, -1, 3)
    n_rows, n_cols = grid.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(1.25 * n_cols + 0.6, 5), 1.3 * n_rows + 0.8),
                             squeeze=False)
    for (r, c), ax in np.ndenumerate(axes):
        i, label, col = grid[r, c]
        cls = int(ds.y_train[i])
        img = perturbed[col["perturbation"], cls][int(i)] if "perturbation" in col else ds.x_train[i]
        if "trigger" in col:
            img = make_trigger(**triggers[col["trigger"]]).apply(img)
        shown = f"label: {ds.classes[cls if shown_label is None else shown_label]}"
        _show(ax, img, shown if len(columns) == 1 else "")
        if r == 0 and len(columns) > 1:
            ax.set_title(label, fontsize=9)
        if c == 0 and len(columns) > 1:
            ax.set_ylabel(shown, fontsize=8)
    suptitle(fig, title)
    save_figure(fig, path)


def filtered_examples(data_path: str, score_paths: list[str], poison_paths: list[str], sets: list[Poisoned],
                      attacks: dict[str, dict[str, Any]], series: list[str], inspect: int, title: str,
                      path: str | Path) -> None:
    """Per series: the `inspect` lowest-probability training examples (poisoned framed red), then the
    `inspect` lowest-probability poisoned ones, each captioned with its label (Appendix A.1). `sets` says what made
    each poison set, checked against `attacks`, the config's attack blocks by name."""
    ds = load_prepared(data_path)
    firsts: dict[str, int] = {}
    for k, label in enumerate(series):
        firsts.setdefault(label, k)  # the first poison set of each series
    fig, axes = plt.subplots(2 * len(firsts), inspect, figsize=(0.9 * inspect + 0.8, 2.3 * len(firsts) + 0.6),
                             squeeze=False)
    for s, (label, k) in enumerate(firsts.items()):
        scores = read_scores(score_paths[k])
        ps, _ = read_poison_set(poison_paths[k], ds, attacks[sets[k].attack], sets[k].target, sets[k].amount)
        x, y = ps.apply_to(ds.x_train, ds.y_train)
        order = np.argsort(scores["probability"], kind="stable")
        lowest_poisoned = order[scores["poisoned"][order]]
        for row, picks, what in ((2 * s, order[:inspect], "lowest p(label)"),
                                 (2 * s + 1, lowest_poisoned[:inspect], "poisoned only")):
            for ax, i in zip(axes[row], picks):
                _show(ax, x[i], ds.classes[y[i]], "red" if scores["poisoned"][i] else None)
            for ax in axes[row][len(picks):]:
                ax.axis("off")
            axes[row, 0].set_ylabel(f"{label}\n{what}", fontsize=7)
    suptitle(fig, title)
    save_figure(fig, path)
