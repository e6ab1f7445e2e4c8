"""The reproduction scorecard: every claim of the config's `claims:` section (a seed's number, a bound, an ordering
of two of its series, a count over classes or a trend) judged against the figures' tables, with the uncertainty
of what was measured. Torch-free.

A measure picks rows of one figure's table (its `series`, and `where` column values), takes one `metric` and
aggregates it (`mean`, `median`, `min`, `max`, or `count_above` a `threshold`). Its interval comes from DRAWS
posterior draws: each victim's rate, measured as hits of n test images, is drawn from its Jeffreys posterior
Beta(hits + 1/2, n - hits + 1/2) (test-set noise); DER from its four rates' draws; a mean or median of per-sample
values (a loss, a silhouette, a k-NN purity) from a normal with its standard error `<metric>_se`; a statistic with
neither is exactly determined (e.g. whether Neural Cleanse names the target). Where a cell of the grid (all but the
seed equal) has several seeds, the seeds are resampled with replacement (training noise). The
aggregate of each draw gives the measure's distribution; the 2.5% and 97.5% quantiles its 95% interval (widened to
hold the observed value: a rate of 0 or n hits of n gets an interval closed at 0 or 1).

Each claim reduces to one statistic with a criterion, and its verdict is `holds` when the statistic's interval lies
inside the criterion, `fails` when it lies outside, `inconclusive` otherwise (so a claim never holds by noise):
- `reported`: the measure, inside the reported number's window (`window`): one rule for every reported number,
  within a factor `reported_factor` (the config's, 1.5) of the reported rate's odds, or of a reported loss itself,
  so that it means the same near 0 and 1 as in the middle (a reported 0 or 1 is read with its `precision`);
- `at_least` / `at_most` a bound ("exceeds 90%", "just under 80%"): the measure, on the stated side of the bound;
- `above` / `below` another measure, `by_at_least` a margin (default 0; "substantially"): the difference, beyond
  the margin; with `per` a column and `in_at_least` k ("almost all classes"): the number of that column's values
  (e.g. targets) on which the difference exceeds the margin, at least k;
- `close_to` another measure `within` a margin ("no substantial effect on accuracy"): the difference, inside
  [-within, within];
- `trend` `increasing` / `decreasing` `along` a column (its values in ascending order, or `series` in the order the
  measure lists them): the smallest step between consecutive values, beyond 0.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import atomic_path
from .tables import der, write_csv

COLUMNS = ["claim", "source", "statement", "reported", "measured", "measured_low", "measured_high", "compared",
           "compared_low", "compared_high", "statistic", "statistic_low", "statistic_high", "criterion",
           "criterion_low", "criterion_high", "levels", "judged_by", "verdict", "rows", "seeds"]
VERDICTS = ("holds", "fails", "inconclusive")
DRAWS = 10_000
LEVEL = 0.95
FACTOR = 1.5  # reported_factor when a config leaves it unset: at 50% it spans 40%..60%, the old +-0.10 of the middle
CELL = ("series", "dataset", "attack", "recipe", "defence", "target", "amount")  # a grid cell: all but the seed


class ClaimError(ValueError):
    """A claim whose measure selects no rows of its figure's table."""


@dataclass(frozen=True)
class Estimate:
    """A statistic's observed value and its draws (DRAWS of them)."""

    value: float
    draws: np.ndarray

    @property
    def interval(self) -> tuple[float, float]:
        """The central LEVEL interval of the draws, widened to hold the observed value (a rate of 0 or n hits of n
        gets the interval closed at 0 or 1, as Brown, Cai & DasGupta advise for Jeffreys intervals)."""
        low, high = np.quantile(self.draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        return min(float(low), self.value), max(float(high), self.value)


SIGNED = ("silhouette",)  # metrics running from -1 to 1: a reported one has no odds


def scale(metric: str) -> str:
    """The scale a reported number of this metric is judged on: `ratio` for a loss, `odds` for a rate."""
    return "ratio" if "loss" in metric else "odds"


def judged_by_window(claim: Mapping[str, Any]) -> bool:
    """Whether a claim is a reported number judged by the one tolerance rule (not a bound that also names it)."""
    return "reported" in claim and not {"at_least", "at_most"} & set(claim)


def window(reported: float, metric: str, factor: float = FACTOR, precision: float = 0.0) -> tuple[float, float]:
    """The values within `factor` of a reported number read as [reported -+ precision / 2]: of its odds for a rate
    (so 1% spans 0.67%..1.5% and 99% 98.5%..99.3%, as 50% spans 40%..60%), of the number itself for a loss."""
    low, high = reported - precision / 2, reported + precision / 2
    if scale(metric) == "ratio":
        return low / factor, high * factor
    odds = np.array([max(low, 0.0), min(high, 1.0)])
    with np.errstate(divide="ignore"):
        scaled = odds / (1 - odds) * np.array([1 / factor, factor])
    return float(scaled[0] / (1 + scaled[0])), float(1.0 if np.isinf(scaled[1]) else scaled[1] / (1 + scaled[1]))


def _rng(name: str) -> np.random.Generator:
    """A generator seeded by the claim's name: the same tables give the same intervals."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))


def _rows(table: pd.DataFrame, spec: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of a figure's table a measure selects."""
    keep = pd.Series(True, index=table.index)
    series = spec.get("series")
    if series is not None:
        keep &= table["series"].fillna("").isin([series] if isinstance(series, str) else series)
    for column, value in spec.get("where", {}).items():
        keep &= table[column].isin(value if isinstance(value, list) else [value])
    return table[keep]


def _jeffreys(rows: pd.DataFrame, rate: str, rng: np.random.Generator) -> np.ndarray | None:
    """(DRAWS, rows) draws of a rate from its Jeffreys posterior Beta(hits + 1/2, n - hits + 1/2), where the table
    has the rate's `<rate>_hits` of `<rate>_n` on every row; else None."""
    hits, n = f"{rate}_hits", f"{rate}_n"
    if hits not in rows or n not in rows or rows[[hits, n]].isna().any().any():
        return None
    h, m = rows[hits].to_numpy(float), rows[n].to_numpy(float)
    return rng.beta(h + 0.5, m - h + 0.5, size=(DRAWS, len(rows)))


def _value_draws(rows: pd.DataFrame, metric: str, rng: np.random.Generator) -> np.ndarray:
    """(DRAWS, rows) draws of each row's metric: a rate's from its counts, DER's from its four rates' (the row's ASR
    and clean accuracy and its undefended twin's), a mean's or median's from its standard error `<metric>_se`
    (normal), the value itself where nothing is known of its spread (an exactly determined statistic)."""
    if (rate := _jeffreys(rows, metric, rng)) is not None:
        return rate
    if metric == "der":
        parts = {m: _jeffreys(rows, m, rng) for m in ("asr_labelled", "clean_accuracy", "twin_asr_labelled",
                                                       "twin_clean_accuracy")}
        if all(d is not None for d in parts.values()):
            return der(parts["twin_asr_labelled"] - parts["asr_labelled"],
                       parts["twin_clean_accuracy"] - parts["clean_accuracy"])
    values = pd.to_numeric(rows[metric], errors="coerce").to_numpy(float)
    se = f"{metric}_se"
    if se in rows and rows[se].notna().all():
        draws = values + rows[se].to_numpy(float) * rng.standard_normal((DRAWS, len(rows)))
        return draws.clip(0, None) if scale(metric) == "ratio" else draws  # a loss is never negative
    return np.broadcast_to(values, (DRAWS, len(rows))).copy()


def row_draws(rows: pd.DataFrame, metric: str, rng: np.random.Generator) -> np.ndarray:
    """(DRAWS, rows) draws of each row's metric (`_value_draws`), each grid cell's seeds resampled with
    replacement."""
    draws = _value_draws(rows, metric, rng)
    cells = [c for c in CELL if c in rows]
    if "seed" in rows and cells:
        keys = rows.groupby(cells, dropna=False, sort=False).ngroup().to_numpy()
        idx = np.broadcast_to(np.arange(len(rows)), (DRAWS, len(rows))).copy()
        for key in np.unique(keys):
            members = np.flatnonzero(keys == key)
            if len(members) > 1:
                idx[:, members] = members[rng.integers(0, len(members), size=(DRAWS, len(members)))]
        draws = np.take_along_axis(draws, idx, axis=1)
    return draws


def _aggregate(values: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """The measure's aggregate over the last axis."""
    how = spec.get("aggregate", "mean")
    if how == "count_above":
        return (values > spec["threshold"]).sum(axis=-1).astype(float)
    return getattr(np, how)(values, axis=-1)


def _selected(tables: Mapping[str, pd.DataFrame], spec: Mapping[str, Any], claim: str) -> pd.DataFrame:
    """A measure's rows with a value of its metric, or a ClaimError naming the claim."""
    rows = _rows(tables[spec["figure"]], spec)
    rows = rows[pd.to_numeric(rows[spec["metric"]], errors="coerce").notna()]
    if rows.empty:
        raise ClaimError(f"claim '{claim}': no rows of figure '{spec['figure']}' have {spec['metric']} where "
                         f"{describe(spec)}")
    return rows


def estimate(rows: pd.DataFrame, spec: Mapping[str, Any], rng: np.random.Generator) -> Estimate:
    """A measure's aggregate over some of its rows, with its draws."""
    values = pd.to_numeric(rows[spec["metric"]], errors="coerce").to_numpy(float)
    return Estimate(float(_aggregate(values, spec)), _aggregate(row_draws(rows, spec["metric"], rng), spec))


def measure(tables: Mapping[str, pd.DataFrame], spec: Mapping[str, Any], claim: str) -> Estimate:
    """A measure's value on the figures' tables, with its draws."""
    return estimate(_selected(tables, spec, claim), spec, _rng(f"{claim}/{describe(spec)}"))


def _levels(rows: pd.DataFrame, spec: Mapping[str, Any], column: str) -> list[Any]:
    """A column's values in order: `series` as the measure lists them, others ascending."""
    if column == "series" and isinstance(spec.get("series"), list):
        return [s for s in spec["series"] if s in set(rows["series"])]
    return sorted(rows[column].dropna().unique())


def _by(tables: Mapping[str, pd.DataFrame], spec: Mapping[str, Any], column: str, claim: str,
        levels: list[Any] | None = None) -> tuple[list[Any], list[Estimate]]:
    """A measure per value of a column (in `levels` order, or its own)."""
    rows = _selected(tables, spec, claim)
    levels = _levels(rows, spec, column) if levels is None else levels
    rng = _rng(f"{claim}/{describe(spec)}/{column}")
    out = []
    for level in levels:
        part = rows[rows[column] == level]
        if part.empty:
            raise ClaimError(f"claim '{claim}': figure '{spec['figure']}' has no {spec['metric']} for {column} "
                             f"{level} where {describe(spec)}")
        out.append(estimate(part, spec, rng))
    return levels, out


def describe(spec: Mapping[str, Any]) -> str:
    """A measure in words: 'fig3-8 asr_labelled, mean over series baseline, rate in [0.06, 0.25]'."""
    how = spec.get("aggregate", "mean")
    how = f"count above {spec['threshold']}" if how == "count_above" else how
    parts = [f"{spec['figure']} {spec['metric']}, {how}"]
    if spec.get("series") is not None:
        parts.append(f"series {spec['series']}")
    parts += [f"{k} {v}" for k, v in spec.get("where", {}).items()]
    return ", ".join(parts)


def verdict(interval: tuple[float, float], low: float, high: float, closed: bool = True) -> str:
    """`holds` when the interval lies inside [low, high] (open ends when not `closed`), `fails` when it lies wholly
    outside, `inconclusive` when it straddles an end."""
    a, b = interval
    inside = (low <= a and b <= high) if closed else (low < a and b < high)
    outside = b < low or a > high if closed else b <= low or a >= high
    return "holds" if inside else "fails" if outside else "inconclusive"


def _ordering(name: str, claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], row: dict[str, Any]) -> None:
    """Judge `above` / `below` (with a margin, per column counts) into the row."""
    side = "above" if "above" in claim else "below"
    sign = 1 if side == "above" else -1
    margin = claim.get("by_at_least", 0.0)
    first, other = measure(tables, claim["measured"], name), measure(tables, claim[side], name)
    row.update(measured=first.value, compared=other.value)
    row["measured_low"], row["measured_high"] = first.interval
    row["compared_low"], row["compared_high"] = other.interval
    words = f"{describe(claim['measured'])} {side} {describe(claim[side])}" + (f" by at least {margin:g}"
                                                                               * bool(margin))
    if "per" not in claim:
        diff = Estimate(sign * (first.value - other.value), sign * (first.draws - other.draws))
        row.update(statistic=diff.value, criterion=f"difference > {margin:g}", criterion_low=margin,
                   criterion_high=np.inf, judged_by=words)
        row["statistic_low"], row["statistic_high"] = diff.interval
        row["verdict"] = verdict(diff.interval, margin, np.inf, closed=False)
        return
    column, k = claim["per"], claim["in_at_least"]
    levels, mine = _by(tables, claim["measured"], column, name)
    _, theirs = _by(tables, claim[side], column, name, levels)
    count = Estimate(float(sum(sign * (a.value - b.value) > margin for a, b in zip(mine, theirs))),
                     sum((sign * (a.draws - b.draws) > margin).astype(float) for a, b in zip(mine, theirs)))
    row.update(statistic=count.value, criterion=f"{column}s with difference > {margin:g}: at least {k} of "
               f"{len(levels)}", criterion_low=k, criterion_high=np.inf, levels=len(levels),
               judged_by=f"{words}, on at least {k} of {len(levels)} {column}s")
    row["statistic_low"], row["statistic_high"] = count.interval
    row["verdict"] = verdict(count.interval, k, np.inf)


def _close(name: str, claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], row: dict[str, Any]) -> None:
    """Judge `close_to` another measure `within` a margin into the row."""
    first, other = measure(tables, claim["measured"], name), measure(tables, claim["close_to"], name)
    diff = Estimate(first.value - other.value, first.draws - other.draws)
    m = claim["within"]
    row.update(measured=first.value, compared=other.value, statistic=diff.value, criterion=f"difference in [-{m:g}, "
               f"{m:g}]", criterion_low=-m, criterion_high=m, judged_by=f"{describe(claim['measured'])} within {m:g} "
               f"of {describe(claim['close_to'])}", verdict=verdict(diff.interval, -m, m))
    row["measured_low"], row["measured_high"] = first.interval
    row["compared_low"], row["compared_high"] = other.interval
    row["statistic_low"], row["statistic_high"] = diff.interval


def _trend(name: str, claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], row: dict[str, Any]) -> None:
    """Judge a monotone trend into the row: its smallest step must be positive."""
    column, sign = claim["along"], 1 if claim["trend"] == "increasing" else -1
    levels, est = _by(tables, claim["measured"], column, name)
    if len(levels) < 2:
        raise ClaimError(f"claim '{name}': a trend needs two or more {column} values, figure "
                         f"'{claim['measured']['figure']}' has {len(levels)}")
    values = np.array([e.value for e in est])
    draws = np.stack([e.draws for e in est], axis=1)
    step = Estimate(float((sign * np.diff(values)).min()), (sign * np.diff(draws, axis=1)).min(axis=1))
    overall = Estimate(float(values.mean()), draws.mean(axis=1))
    row.update(measured=overall.value, statistic=step.value, criterion="smallest step > 0", criterion_low=0.0,
               criterion_high=np.inf,
               judged_by=f"{describe(claim['measured'])}, {claim['trend']} along {column} "
                         f"({', '.join(map(str, levels))}): {', '.join(f'{v:.3f}' for v in values)}")
    row["measured_low"], row["measured_high"] = overall.interval
    row["statistic_low"], row["statistic_high"] = step.interval
    row["verdict"] = verdict(step.interval, 0.0, np.inf, closed=False)


def judge(name: str, claim: Mapping[str, Any], tables: Mapping[str, pd.DataFrame],
          factor: float = FACTOR) -> dict[str, Any]:
    """One scorecard row: the claim, what was measured with its interval, and its verdict."""
    rows = _selected(tables, claim["measured"], name)
    row: dict[str, Any] = {"claim": name, "source": claim["source"], "statement": claim.get("statement", ""),
                           "reported": claim.get("reported"), "rows": len(rows),
                           "seeds": int(rows["seed"].nunique()) if "seed" in rows else 1}
    if "above" in claim or "below" in claim:
        _ordering(name, claim, tables, row)
        return row
    if "trend" in claim:
        _trend(name, claim, tables, row)
        return row
    if "close_to" in claim:
        _close(name, claim, tables, row)
        return row
    est = measure(tables, claim["measured"], name)
    row.update(measured=est.value, statistic=est.value)
    row["measured_low"], row["measured_high"] = row["statistic_low"], row["statistic_high"] = est.interval
    if judged_by_window(claim):
        metric = claim["measured"]["metric"]
        low, high = window(claim["reported"], metric, factor, claim.get("precision", 0.0))
        row.update(criterion=f"in [{low:.4g}, {high:.4g}]", judged_by=f"within a factor {factor:g} of the reported "
                   f"{'value' if scale(metric) == 'ratio' else 'odds'} ({describe(claim['measured'])})")
    else:
        bound = "at_least" if "at_least" in claim else "at_most"
        low, high = (claim[bound], np.inf) if bound == "at_least" else (-np.inf, claim[bound])
        row.update(reported=claim[bound], criterion=f"{bound.replace('_', ' ')} {claim[bound]:g}",
                   judged_by=f"{bound.replace('_', ' ')} the reported value ({describe(claim['measured'])})")
    row.update(criterion_low=low, criterion_high=high, verdict=verdict(est.interval, low, high))
    return row


def scorecard(claims: Mapping[str, Mapping[str, Any]], tables: Mapping[str, pd.DataFrame],
              factor: float = FACTOR) -> pd.DataFrame:
    """Every claim judged, in config order."""
    return pd.DataFrame([judge(name, c, tables, factor) for name, c in claims.items()], columns=COLUMNS)


def _cell(value: Any) -> str:
    """A number to three decimals, other values as text, nothing for missing ones."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "/")


def _interval(value: Any, low: Any, high: Any) -> str:
    """'0.123 [0.100, 0.150]', or nothing."""
    return "" if _cell(value) == "" else f"{_cell(value)} [{_cell(low)}, {_cell(high)}]"


def counts(card: pd.DataFrame) -> str:
    """'3 hold, 1 fails, 2 inconclusive (of 6 claims)'."""
    n = card["verdict"].value_counts()
    return (f"{n.get('holds', 0)} hold, {n.get('fails', 0)} fail, {n.get('inconclusive', 0)} inconclusive "
            f"(of {len(card)} claims)")


def markdown(card: pd.DataFrame, title: str) -> str:
    """The scorecard as a markdown table under a heading with the count of each verdict."""
    lines = [f"# {title}", "", f"{counts(card)}; intervals are 95% (see docs/claims.md).", "",
             "| claim | source | statement | reported | measured [95%] | compared [95%] | criterion | statistic [95%] "
             "| judged by | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.claim} | {_cell(r.source)} | {_cell(r.statement)} | {_cell(r.reported)} | "
              f"{_interval(r.measured, r.measured_low, r.measured_high)} | "
              f"{_interval(r.compared, r.compared_low, r.compared_high)} | {_cell(r.criterion)} | "
              f"{_interval(r.statistic, r.statistic_low, r.statistic_high)} | {_cell(r.judged_by)} | {r.verdict} |"
              for r in card.itertuples()]
    return "\n".join(lines) + "\n"


def write_scorecard(claims: Mapping[str, Mapping[str, Any]], tables: Mapping[str, str | Path], csv_out: str,
                    md_out: str, png_out: str, factor: float = FACTOR) -> None:
    """Judge every claim on the figures' CSV tables; write the scorecard as CSV, markdown and a figure, atomically."""
    from .plots import scorecard_figure

    card = scorecard(claims, {fig: pd.read_csv(path) for fig, path in tables.items()}, factor)
    write_csv(card, csv_out)
    with atomic_path(md_out) as tmp:
        Path(tmp).write_text(markdown(card, "Reproduction scorecard"))
    scorecard_figure(card, f"Reproduction scorecard: {counts(card)}", png_out)
