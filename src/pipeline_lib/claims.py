"""The reproduction scorecard: every claim of the config's `claims:` section (a seed's number, or an ordering of two
of its series) judged against the figures' tables. Torch-free.

A measure picks rows of one figure's table (its `series`, and `where` column values), takes one `metric` and
aggregates it (`mean`, `median`, `min`, `max`, or `count_above` a `threshold`). A claim holds when its measure is
within `tolerance` of the `reported` value, at least / at most the reported bound (`at_least`, `at_most`: "exceeds
90%"), or lies `above` / `below` another measure.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import atomic_path
from .tables import write_csv

TABLE_KINDS = ("asr_heatmap", "asr_lines", "per_class_lines", "loss_trace", "defence_heatmap")  # figures with tables
COLUMNS = ["claim", "source", "statement", "reported", "measured", "judged_by", "compared", "holds"]


class ClaimError(ValueError):
    """A claim whose measure selects no rows of its figure's table."""


def _rows(table: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of a figure's table a measure selects."""
    keep = pd.Series(True, index=table.index)
    series = spec.get("series")
    if series is not None:
        keep &= table["series"].fillna("").isin([series] if isinstance(series, str) else series)
    for column, value in spec.get("where", {}).items():
        keep &= table[column].isin(value if isinstance(value, list) else [value])
    return table[keep]


def measure(tables: Mapping[str, pd.DataFrame], spec: Mapping[str, Any], claim: str) -> float:
    """A measure's value on the figures' tables."""
    rows = _rows(tables[spec["figure"]], spec)
    values = pd.to_numeric(rows[spec["metric"]], errors="coerce").dropna()
    if values.empty:
        raise ClaimError(f"claim '{claim}': no rows of figure '{spec['figure']}' have {spec['metric']} where "
                         f"{describe(spec)}")
    how = spec.get("aggregate", "mean")
    if how == "count_above":
        return float((values > spec["threshold"]).sum())
    return float(getattr(values, how)())


def describe(spec: Mapping[str, Any]) -> str:
    """A measure in words: 'fig3-8 asr_labelled, mean over series baseline, rate in [0.06, 0.25]'."""
    how = spec.get("aggregate", "mean")
    how = f"count above {spec['threshold']}" if how == "count_above" else how
    parts = [f"{spec['figure']} {spec['metric']}, {how}"]
    if spec.get("series") is not None:
        parts.append(f"series {spec['series']}")
    parts += [f"{k} {v}" for k, v in spec.get("where", {}).items()]
    return ", ".join(parts)


def judge(name: str, claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """One scorecard row: the claim, what was measured and whether it holds."""
    measured = measure(tables, claim["measured"], name)
    row = {"claim": name, "source": claim["source"], "statement": claim.get("statement", ""),
           "reported": claim.get("reported"), "measured": measured, "compared": None}
    if "tolerance" in claim:
        row["judged_by"] = f"within {claim['tolerance']:g} of the reported value ({describe(claim['measured'])})"
        row["holds"] = abs(measured - claim["reported"]) <= claim["tolerance"]
    elif "at_least" in claim or "at_most" in claim:
        bound = "at_least" if "at_least" in claim else "at_most"
        row["reported"] = claim[bound]
        row["judged_by"] = f"{bound.replace('_', ' ')} the reported value ({describe(claim['measured'])})"
        row["holds"] = measured >= claim[bound] if bound == "at_least" else measured <= claim[bound]
    else:
        side = "above" if "above" in claim else "below"
        other = measure(tables, claim[side], name)
        row["judged_by"] = f"{describe(claim['measured'])} {side} {describe(claim[side])}"
        row["compared"] = other
        row["holds"] = measured > other if side == "above" else measured < other
    return row


def scorecard(claims: Mapping[str, Mapping[str, Any]], tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim judged, in config order."""
    return pd.DataFrame([judge(name, c, tables) for name, c in claims.items()], columns=COLUMNS)


def _cell(value: Any) -> str:
    """A number to three decimals, other values as text, nothing for missing ones."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "/")


def markdown(card: pd.DataFrame, title: str) -> str:
    """The scorecard as a markdown table under a heading with the count of claims that hold."""
    held = int(card["holds"].sum())
    lines = [f"# {title}", "", f"{held} of {len(card)} claims hold.", "",
             "| claim | source | statement | reported | measured | compared | judged by | holds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.claim} | {_cell(r.source)} | {_cell(r.statement)} | {_cell(r.reported)} | {_cell(r.measured)} | "
              f"{_cell(r.compared)} | {_cell(r.judged_by)} | {'yes' if r.holds else 'no'} |"
              for r in card.itertuples()]
    return "\n".join(lines) + "\n"


def write_scorecard(claims: Mapping[str, Mapping[str, Any]], tables: Mapping[str, str | Path], csv_out: str,
                    md_out: str) -> None:
    """Judge every claim on the figures' CSV tables; write the scorecard as CSV and markdown, atomically."""
    card = scorecard(claims, {fig: pd.read_csv(path) for fig, path in tables.items()})
    write_csv(card, csv_out)
    with atomic_path(md_out) as tmp:
        Path(tmp).write_text(markdown(card, "Reproduction scorecard"))
