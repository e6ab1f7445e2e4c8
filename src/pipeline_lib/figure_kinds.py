"""The figure kinds: for each, what it is drawn from, which table it has, the keys only it reads (with their
defaults), the keys it requires and the grid keys it ignores, and the rule that draws it. Planning, the claims and
the plot rules of workflow/rules/figures.smk read their kind tables from here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# the grid keys a figure that draws no trained victims never reads (set there, they would be silently ignored)
UNTRAINED = ("recipe", "defence", "defences")


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure.

    source: what it is drawn from: "victims" (trained victims), "poisons" (poison sets scored by a trusted model)
    or "data" (images); table: "metrics" (aggregate_metrics collects its victims' metrics), "own" (its plot rule
    writes a table) or "" (none); a claim can read either table. metric_list: its `metric` may be a list (a panel
    or line per metric)."""

    name: str
    rule: str
    source: str
    table: str = ""
    keys: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    metric_list: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))


KINDS = {k.name: k for k in (
    FigureKind("asr_heatmap", "plot_heatmap", "victims", "metrics"),
    FigureKind("asr_lines", "plot_lines", "victims", "metrics", metric_list=True),
    FigureKind("per_class_lines", "plot_lines", "victims", "metrics", metric_list=True),
    FigureKind("loss_trace", "plot_loss_trace", "victims", "metrics"),
    FigureKind("defence_heatmap", "plot_defence_heatmap", "victims", "metrics", metric_list=True),
    FigureKind("tsne", "plot_tsne", "victims", "own", keys={"clean_sample": 500}),
    FigureKind("filtering", "plot_filtering", "poisons", "own", keys={"filter": None, "inspected": None},
               required=("filter",), ignored=UNTRAINED),
    FigureKind("filtered_examples", "plot_filtered_examples", "poisons", keys={"filter": None, "inspect": 20},
               required=("filter",), ignored=UNTRAINED),
    FigureKind("examples", "plot_examples", "data",
               keys={"classes": None, "columns": None, "per_class": 1, "shown_label": None},
               required=("dataset", "classes", "columns"),
               ignored=("attack", "targets", "rates", "counts", "seeds", "series", *UNTRAINED)),
)}


def names(**traits: Any) -> tuple[str, ...]:
    """The kinds whose traits have these values (e.g. source="victims"), in registry order."""
    return tuple(k.name for k in KINDS.values() if all(getattr(k, t) == v for t, v in traits.items()))


def tabled() -> tuple[str, ...]:
    """The kinds with a table a claim can read."""
    return tuple(k.name for k in KINDS.values() if k.table)


def unread_keys(kind: str) -> list[str]:
    """Keys a figure of this kind never reads: its ignored grid keys and the other kinds' own keys."""
    others = {k for other in KINDS.values() if other.name != kind for k in other.keys}
    return [*KINDS[kind].ignored, *sorted(others - set(KINDS[kind].keys))]
