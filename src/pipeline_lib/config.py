"""Typed views of the validated config: cross-references checked, figure grids expanded into artifacts."""
from __future__ import annotations

from typing import Any

from .artifacts import ArtifactError
from .data import num_classes
from .layout import Amount, Poisoned, Victim

# figures drawn from trained victims
VICTIM_KINDS = ("asr_heatmap", "asr_lines", "per_class_lines", "loss_trace", "defence_heatmap", "tsne")
FILTER_KINDS = ("filtering", "filtered_examples")                            # figures drawn from scored poison sets
GRID_KEYS = ("dataset", "attack", "recipe", "defence", "targets", "rates", "counts", "seeds")


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


def schema_error_line(err: Any) -> str:
    """One line from a jsonschema ValidationError: the dotted key path and what is wrong."""
    path = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    return f"config key '{path}': {err.message}"


def _known(config: dict[str, Any], key: str, section: str, name: str, what: str) -> None:
    """Raise naming `key` unless `name` is defined in config[section]."""
    if name not in config.get(section, {}):
        raise ConfigError(f"config key '{key}': unknown {what} '{name}' "
                          f"(defined in '{section}': {', '.join(config.get(section, {})) or 'none'})")


def classes_of(config: dict[str, Any], dataset: str) -> int:
    """Number of classes of a configured dataset (reads only the labels of a local archive)."""
    try:
        return num_classes(config["datasets"][dataset]["source"])
    except ArtifactError as e:
        raise ConfigError(f"config key 'datasets.{dataset}.source': {e}") from None


def series(config: dict[str, Any], figure: str) -> list[tuple[str, dict[str, Any]]]:
    """A figure's (label, grid) pairs: each `series` entry over the figure-level grid keys, or that grid alone;
    a figure's `defences` list repeats every series once per defence (same label, its own `defence`)."""
    spec = config["figures"][figure]
    base = {k: spec[k] for k in GRID_KEYS if k in spec}
    entries = spec.get("series") or {"": {}}
    out = []
    for label, override in entries.items():
        grid = {k: v for k, v in base.items() if not ({"rates", "counts"} & set(override) and k in ("rates", "counts"))}
        grid = {"defence": "none", "seeds": [0], **grid, **override}
        out += [(label, {**grid, "defence": d}) for d in spec["defences"]] if "defences" in spec else [(label, grid)]
    return out


def _check_grid(config: dict[str, Any], figure: str, label: str, grid: dict[str, Any], needs: tuple[str, ...]) -> None:
    """Every key a figure kind needs is set (in the figure or its series) and names something defined."""
    where = f"figures.{figure}" + (f".series.{label}" if label else "")
    for key in needs:
        if key not in grid:
            raise ConfigError(f"config key '{where}.{key}': missing (set it on the figure or the series)")
    if ("rates" in grid) == ("counts" in grid):
        raise ConfigError(f"config key '{where}': give exactly one of 'rates' and 'counts'")
    for key, section in (("dataset", "datasets"), ("attack", "attacks"), ("recipe", "recipes")):
        if key in grid:
            _known(config, f"{where}.{key}", section, grid[key], key)
    if grid["defence"] != "none":
        _known(config, f"{where}.defence", "defences", grid["defence"], "defence")
    n = classes_of(config, grid["dataset"])
    bad = [t for t in grid["targets"] if t >= n] if grid["targets"] != "all" else []
    if bad:
        raise ConfigError(f"config key '{where}.targets': class {bad[0]} does not exist "
                          f"(dataset '{grid['dataset']}' has classes 0..{n - 1})")


def check_references(config: dict[str, Any]) -> None:
    """Every name an attack, perturbation, surrogate or figure uses must be defined; npz sources must exist."""
    for name, s in config.get("surrogates", {}).items():
        _known(config, f"surrogates.{name}.dataset", "datasets", s["dataset"], "dataset")
        _known(config, f"surrogates.{name}.recipe", "recipes", s["recipe"], "recipe")
    for name, p in config.get("perturbations", {}).items():
        for key, section in (("surrogate", "surrogates"), ("gan", "gans")):
            if key in p:
                _known(config, f"perturbations.{name}.{key}", section, p[key], key)
        need = {"pgd": "surrogate", "gan_interpolation": "gan"}.get(p["method"])
        if need and need not in p:
            raise ConfigError(f"config key 'perturbations.{name}.{need}': method '{p['method']}' needs a {need}")
    for name, d in config.get("defences", {}).items():
        if "pretrained" in d:
            _known(config, f"defences.{name}.pretrained", "surrogates", d["pretrained"], "surrogate")
    for name, attack in config["attacks"].items():
        if attack["method"] == "input_aware":
            _known(config, f"attacks.{name}.recipe", "recipes", attack["recipe"], "recipe")
            continue
        _known(config, f"attacks.{name}.trigger", "triggers", attack["trigger"], "trigger")
        if "perturbation" in attack:
            _known(config, f"attacks.{name}.perturbation", "perturbations", attack["perturbation"], "perturbation")
            if attack["method"] != "label_consistent":
                raise ConfigError(f"config key 'attacks.{name}.perturbation': only label_consistent attacks "
                                  "perturb their (target-class) images")
    for fig, spec in config["figures"].items():
        kind = spec["kind"]
        needed = {"examples": ("dataset", "classes", "columns"), "filtering": ("filter",),
                  "filtered_examples": ("filter",)}.get(kind, ())
        for key in needed:
            if key not in spec:
                raise ConfigError(f"config key 'figures.{fig}.{key}': missing (a '{kind}' figure needs it)")
        if kind == "examples":
            _known(config, f"figures.{fig}.dataset", "datasets", spec["dataset"], "dataset")
            for col, c in spec["columns"].items():
                for key, section in (("perturbation", "perturbations"), ("trigger", "triggers")):
                    if key in c:
                        _known(config, f"figures.{fig}.columns.{col}.{key}", section, c[key], key)
            continue
        if kind in FILTER_KINDS:
            _known(config, f"figures.{fig}.filter", "surrogates", spec["filter"], "surrogate")
        if isinstance(spec["metric"], list) and kind not in ("asr_lines", "per_class_lines", "defence_heatmap"):
            raise ConfigError(f"config key 'figures.{fig}.metric': a '{kind}' figure draws one metric, not a list")
        needs = ("dataset", "attack", "targets") + (("recipe",) if kind in VICTIM_KINDS else ())
        for label, grid in series(config, fig):
            _check_grid(config, fig, label, grid, needs)
            if kind == "tsne" and (grid["targets"] == "all" or len(grid["targets"]) != 1):
                raise ConfigError(f"config key 'figures.{fig}.targets': a t-SNE figure maps exactly one class")
            if kind == "loss_trace" and not config["recipes"][grid["recipe"]].get("trace_per_epoch"):
                raise ConfigError(f"config key 'recipes.{grid['recipe']}.trace_per_epoch': figure '{fig}' plots "
                                  "training losses, so its recipe must trace them (set it to 1 or more)")


def amounts(spec: dict[str, Any]) -> list[str]:
    """A grid's poisoning amounts as path tokens."""
    if "rates" in spec:
        return [Amount(rate=float(r)).token for r in spec["rates"]]
    return [Amount(count=int(c)).token for c in spec["counts"]]


def targets(config: dict[str, Any], spec: dict[str, Any]) -> list[int]:
    """A grid's target classes, 'all' expanded."""
    if spec["targets"] == "all":
        return list(range(classes_of(config, spec["dataset"])))
    return list(spec["targets"])


def _figure(config: dict[str, Any], figure: str) -> dict[str, Any]:
    """A figure's spec, or an error listing the defined figures."""
    if figure not in config["figures"]:
        raise ConfigError(f"no figure '{figure}' in the config (defined: {', '.join(config['figures'])})")
    return config["figures"][figure]


def figure_rows(config: dict[str, Any], figure: str) -> list[tuple[str, Victim]]:
    """(series label, victim) for every victim a figure needs."""
    if _figure(config, figure)["kind"] not in VICTIM_KINDS:
        return []
    return [(label, Victim(g["dataset"], g["attack"], g["recipe"], g["defence"], t, a, s))
            for label, g in series(config, figure)
            for t in targets(config, g) for a in amounts(g) for s in g["seeds"]]


def figure_victims(config: dict[str, Any], figure: str) -> list[Victim]:
    """Every victim a figure needs, each once."""
    return list(dict.fromkeys(v for _, v in figure_rows(config, figure)))


def figure_poison_sets(config: dict[str, Any], figure: str) -> list[tuple[str, Poisoned]]:
    """(series label, poisoned set) for every poisoned training set a filtering figure scores."""
    if _figure(config, figure)["kind"] not in FILTER_KINDS:
        return []
    return [(label, Poisoned(g["dataset"], g["attack"], t, a, s)) for label, g in series(config, figure)
            for t in targets(config, g) for a in amounts(g) for s in g["seeds"]]


def figure_settings(config: dict[str, Any], figure: str) -> list[str]:
    """One 'label: key value; ...' line per series (or column) of a figure, for its report caption."""
    spec = _figure(config, figure)

    def line(label: str, pairs: dict[str, Any]) -> str:
        text = "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in pairs.items())
        text = text or "the training image unchanged"
        return f"{label}: {text}" if label else text

    if spec["kind"] == "examples":
        head = line("", {"dataset": spec["dataset"], "classes": spec["classes"]})
        return [head] + [line(label, column) for label, column in spec["columns"].items()]
    keys = GRID_KEYS + (("filter",) if spec["kind"] in FILTER_KINDS else ())
    return [line(label, {k: g[k] for k in keys if k in g} | ({"filter": spec["filter"]} if "filter" in keys else {}))
            for label, g in series(config, figure)]


def example_classes(config: dict[str, Any], figure: str) -> list[int]:
    """The classes an examples figure draws its images from."""
    spec = _figure(config, figure)
    return targets(config, {"dataset": spec["dataset"], "targets": spec["classes"]})
