"""The figure kinds: for each, what it is drawn from, which table it has, the keys only it reads (with their
defaults), the keys it requires and the grid keys it ignores, and the rule that draws it. Planning, the claims and
the plot rules of workflow/rules/figures.smk read their kind tables from here, and the display names a figure prints
for its series, attacks and defences (figure_labels)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import plugins

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


# display names of the built-in methods (a plug-in's: its summary up to ' (' or ':')
SHORT = {"attack": {"none": "no poison", "badnets": "BadNets", "label_consistent": "label-consistent",
                    "input_aware": "input-aware", "wanet": "WaNet"},
         "defence": {"none": "no defence", "adv_training": "adversarial training", "dp_sgd": "DP-SGD",
                     "frozen_sgd": "SGD (DP-SGD setting)", "abl": "ABL", "spectral": "spectral signatures",
                     "activation_clustering": "activation clustering", "fine_pruning": "fine-pruning",
                     "neural_cleanse": "Neural Cleanse", "nad": "NAD", "anp": "ANP", "clp": "CLP", "strip": "STRIP"}}


def method_label(kind: str, method: str) -> str:
    """A method's display name: its short name, or its summary up to the first ' (' or ':', or its name."""
    if method in SHORT[kind]:
        return SHORT[kind][method]
    known = plugins.catalogue()[kind].get(method)
    head = re.split(r" \(|:", known.summary)[0].strip() if known else ""
    return head if 0 < len(head) <= 32 else method.replace("_", " ")


def figure_labels(config: Mapping[str, Any], figure: str) -> dict[str, dict[str, Any]]:
    """What a figure's plots print for its series, attacks and defences: each block's `label`, by default the
    series' key and the method's display name (with the block's name where two of the figure's blocks share it);
    and the class count of each of its datasets (a subtitle's '2 of 10 target classes')."""
    from .config import classes_of  # config imports this module

    spec = config["figures"][figure]
    entries = spec.get("series") or {}
    grids = [spec, *entries.values()]
    datasets = dict.fromkeys(g["dataset"] for g in grids if "dataset" in g)
    used = {"attack": [g["attack"] for g in grids if "attack" in g],
            "defence": ["none", *(g["defence"] for g in grids if "defence" in g), *spec.get("defences", [])]}
    out: dict[str, dict[str, Any]] = {"series": {key: s.get("label", key) for key, s in entries.items()},
                                      "classes": {d: classes_of(dict(config), d) for d in datasets}}
    for kind, names in used.items():
        blocks = {n: {"method": "none"} if n == "none" else config[f"{kind}s"][n] for n in dict.fromkeys(names)}
        default = {n: method_label(kind, b["method"]) for n, b in blocks.items()}
        shared = {d for d in default.values() if list(default.values()).count(d) > 1}
        out[kind] = {n: b.get("label") or (f"{default[n]} ({n})" if default[n] in shared else default[n])
                     for n, b in blocks.items()}
    return out
