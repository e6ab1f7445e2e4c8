"""Figures in the thesis's style: per-class heatmaps over target class x poisoning amount."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .artifacts import atomic_path  # noqa: E402

METRIC_LABELS = {
    "asr_labelled": "attack success rate (%)",
    "asr_classified": "attack success rate, excl. already-target predictions (%)",
    "robust_accuracy": "accuracy on triggered images (%)",
    "clean_accuracy": "natural accuracy (%)",
}


def amount_label(row: pd.Series) -> str:
    """Column label: the configured rate (of the target class) or count, with the image count."""
    if pd.notna(row["rate"]):
        return f"{100 * row['rate']:g}%\n(n={row['count']})"
    return f"n={row['count']}\n({100 * row['fraction_of_train']:.2g}% of train)"


def asr_heatmap(df: pd.DataFrame, metric: str, title: str, path: str | Path) -> None:
    """Annotated heatmap of a metric (mean over seeds), target classes as rows, amounts as columns."""
    df = df.assign(column=df.apply(amount_label, axis=1), value=100 * df[metric])
    col_order = df.sort_values("count").drop_duplicates("amount")["amount"].tolist()
    col_names = dict(zip(df["amount"], df["column"]))
    rows = df.sort_values("target").drop_duplicates("target")["target_name"].tolist()
    grid = (df.groupby(["target_name", "amount"])["value"].mean().unstack("amount")
            .reindex(index=rows, columns=col_order).rename(columns=col_names))
    fig, ax = plt.subplots(figsize=(1.2 * len(col_order) + 2.5, 0.45 * len(rows) + 1.8))
    sns.heatmap(grid, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax,
                cbar_kws={"label": METRIC_LABELS[metric]}, annot_kws={"size": 9})
    seeds = df["seed"].nunique()
    clean = 100 * df["clean_accuracy"].mean()
    ax.set_title(f"{title}\nmean natural accuracy {clean:.1f}%" + (f", mean of {seeds} seeds" if seeds > 1 else ""),
                 fontsize=10)
    ax.set_xlabel("poisoned images (share of the target class)" if df["rate"].notna().all() else "poisoned images")
    ax.set_ylabel("target class")
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
