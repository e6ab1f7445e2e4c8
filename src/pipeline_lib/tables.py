"""Tidy result tables: one row per victim, read from the metrics JSONs."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .artifacts import atomic_path, load_json

COLUMNS = ["series", "dataset", "model", "recipe", "attack", "method", "trigger", "amplitude", "defence", "target",
           "target_name", "amount", "rate", "count", "fraction_of_class", "fraction_of_train", "seed",
           "clean_accuracy", "asr_labelled", "asr_classified", "robust_accuracy", "target_accuracy", "train_seconds",
           "device",
           # what a defence measured (empty for others): DP-SGD's privacy, ABL's isolation, sanitisers' detection
           "noise_multiplier", "epsilon", "delta", "steps", "lot_size", "isolated", "isolation_precision",
           "isolation_recall", "flagged", "kept", "detection_precision", "detection_recall"]


def collect(paths: Sequence[str | Path], series: Sequence[str]) -> pd.DataFrame:
    """One row per metrics JSON labelled with its figure series, in a stable column and row order."""
    if len(paths) != len(series):
        raise ValueError(f"{len(paths)} metrics files but {len(series)} series labels")
    rows = [{**load_json(p), "series": s} for p, s in zip(paths, series)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = {s: i for i, s in enumerate(dict.fromkeys(series))}
    return (df.assign(_order=df["series"].map(order))
            .sort_values(["_order", "dataset", "attack", "recipe", "defence", "target", "count", "seed"])
            .drop(columns="_order").reset_index(drop=True))


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
