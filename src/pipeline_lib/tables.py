"""Tidy result tables: one row per victim, read from the metrics JSONs."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
                "silhouette", "knn_purity", "silhouette_se", "knn_purity_se"]


def victim_columns() -> list[str]:
    """The victim tables' columns: the run's description and rates, what each defence of the catalogue measures
    (empty for others), then final losses and DER."""
    return list(dict.fromkeys([*COLUMNS, *plugins.measures(), *TAIL_COLUMNS]))


TWIN = ["series", "dataset", "recipe", "attack", "target", "amount", "seed"]  # what a victim shares with its twin


def der(asr_drop: np.ndarray, accuracy_drop: np.ndarray) -> np.ndarray:
    """BackdoorBench's defence effectiveness rating from the ASR and clean-accuracy drops: [max(0, ASR drop) -
    max(0, clean accuracy drop) + 1] / 2, from 0 (worst) to 1. This is the formula its paper and its `_simplied`
    variant state; its `defense_effectiveness_rate` adds the accuracy drop instead."""
    return (np.clip(asr_drop, 0, None) - np.clip(accuracy_drop, 0, None) + 1) / 2


def defence_effectiveness(df: pd.DataFrame) -> pd.DataFrame:
    """Each defended row's DER against its undefended twin in the same table, with the twin's ASR and clean
    accuracy counts (`twin_<rate>_hits`, `_n`: the scorecard draws DER from the four rates); NaN without a twin
    and for test-time detectors (STRIP: the model is the undefended one, nothing for DER to rate)."""
    rates = ["asr_labelled", "clean_accuracy"]
    counts = [f"{m}_{part}" for m in rates for part in ("hits", "n")]
    base = df[df["defence"] == "none"].drop_duplicates(TWIN).set_index(TWIN)[rates + counts]
    twin = base.reindex(pd.MultiIndex.from_frame(df[TWIN].astype(object)))
    drops = {m: twin[m].to_numpy(float) - df[m].to_numpy(float) for m in rates}
    known = plugins.catalogue()["defence"]
    detector = df["defence_method"].map(lambda m: m in known and known[m].assess is not None).to_numpy(bool)
    rated = df["defence"].ne("none").to_numpy() & ~np.isnan(drops["asr_labelled"]) & ~detector
    out = pd.DataFrame({"der": der(drops["asr_labelled"], drops["clean_accuracy"]),
                        **{f"twin_{c}": twin[c].to_numpy(float) for c in counts}}, index=df.index)
    return out.where(pd.Series(rated, index=df.index), axis=0)


def collect(paths: Sequence[str | Path], series: Sequence[str]) -> pd.DataFrame:
    """One row per metrics JSON labelled with its figure series, in a stable column and row order; a key of a
    metrics file that no column names (a plug-in's measure) gets a column after them, never dropped."""
    if len(paths) != len(series):
        raise ValueError(f"{len(paths)} metrics files but {len(series)} series labels")
    rows = [{**load_json(p), "series": s} for p, s in zip(paths, series)]
    columns = victim_columns()
    extra = sorted({k for r in rows for k in r} - set(columns) - set(DROPPED))
    df = pd.DataFrame(rows, columns=columns + extra)
    effect = defence_effectiveness(df)
    df[list(effect.columns)] = effect
    order = {s: i for i, s in enumerate(dict.fromkeys(series))}
    return (df.assign(_order=df["series"].map(order))
            .sort_values(["_order", "dataset", "attack", "recipe", "defence", "target", "count", "seed"])
            .drop(columns="_order").reset_index(drop=True))


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
