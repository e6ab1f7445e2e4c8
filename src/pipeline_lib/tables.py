"""Tidy result tables: one row per victim, read from the metrics JSONs."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .artifacts import atomic_path, load_json

COLUMNS = ["dataset", "model", "recipe", "attack", "method", "trigger", "amplitude", "defence", "target",
           "target_name", "amount", "rate", "count", "fraction_of_class", "fraction_of_train", "seed",
           "clean_accuracy", "asr_labelled", "asr_classified", "robust_accuracy", "train_seconds", "device"]


def collect(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per metrics JSON, in a stable column and row order."""
    rows = [load_json(p) for p in paths]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["dataset", "attack", "recipe", "defence", "target", "count", "seed"],
                          ignore_index=True)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
