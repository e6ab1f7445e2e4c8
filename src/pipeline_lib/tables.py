"""Tidy result tables: one row per victim, read from the metrics JSONs."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import plugins
from .artifacts import atomic_path, load_json

RATES = plugins.RATES
# a victim row's own columns, then what the defences measure (plugins.measures), then the tail; per-class lists dropped
COLUMNS, TAIL_COLUMNS, DROPPED = list(plugins.VICTIM_COLUMNS), list(plugins.TAIL_COLUMNS), plugins.DROPPED
# the other tables' columns: filtering (poisons among the lowest-probability examples), t-SNE (separation)
FILTERING_COLUMNS = ["series", "dataset", "attack", "target", "amount", "seed", "poisoned", "inspected",
                     "found_among_lowest",
                     "found_among_lowest_hits", "found_among_lowest_n"]
TSNE_COLUMNS = ["series", "dataset", "attack", "recipe", "defence", "target", "amount", "seed", "clean", "poisoned",
                "silhouette", "knn_purity"]


def victim_columns() -> list[str]:
    """The victim tables' columns: the run's description and rates, what each defence of the catalogue measures
    (empty for others), then final losses and DER."""
    return list(dict.fromkeys([*COLUMNS, *plugins.measures(), *TAIL_COLUMNS]))


TWIN = ["series", "dataset", "recipe", "attack", "target", "amount", "seed"]  # what a victim shares with its twin


def defence_effectiveness(df: pd.DataFrame) -> pd.Series:
    """BackdoorBench's defence effectiveness rating of each defended row against its undefended twin in the same
    table: DER = [max(0, ASR drop) - max(0, clean accuracy drop) + 1] / 2, from 0 (worst) to 1; NaN without a twin
    and for test-time detectors (STRIP: the model is the undefended one, nothing for DER to rate). This is the
    formula its paper and its `_simplied` variant state; its `defense_effectiveness_rate` adds the accuracy drop
    instead."""
    base = df[df["defence"] == "none"].drop_duplicates(TWIN).set_index(TWIN)[["asr_labelled", "clean_accuracy"]]
    twin = base.reindex(pd.MultiIndex.from_frame(df[TWIN].astype(object)))
    asr_drop = twin["asr_labelled"].to_numpy(float) - df["asr_labelled"].to_numpy(float)
    acc_drop = twin["clean_accuracy"].to_numpy(float) - df["clean_accuracy"].to_numpy(float)
    der = (asr_drop.clip(0) - acc_drop.clip(0) + 1) / 2
    known = plugins.catalogue()["defence"]
    detector = df["defence_method"].map(lambda m: m in known and known[m].assess is not None).to_numpy(bool)
    return pd.Series(der, index=df.index).where(df["defence"].ne("none").to_numpy() & ~pd.isna(asr_drop) & ~detector)


def collect(paths: Sequence[str | Path], series: Sequence[str]) -> pd.DataFrame:
    """One row per metrics JSON labelled with its figure series, in a stable column and row order; a key of a
    metrics file that no column names (a plug-in's measure) gets a column after them, never dropped."""
    if len(paths) != len(series):
        raise ValueError(f"{len(paths)} metrics files but {len(series)} series labels")
    rows = [{**load_json(p), "series": s} for p, s in zip(paths, series)]
    columns = victim_columns()
    extra = sorted({k for r in rows for k in r} - set(columns) - set(DROPPED))
    df = pd.DataFrame(rows, columns=columns + extra)
    df["der"] = defence_effectiveness(df)
    order = {s: i for i, s in enumerate(dict.fromkeys(series))}
    return (df.assign(_order=df["series"].map(order))
            .sort_values(["_order", "dataset", "attack", "recipe", "defence", "target", "count", "seed"])
            .drop(columns="_order").reset_index(drop=True))


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
