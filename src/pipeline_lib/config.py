"""Typed views of the validated config: cross-references checked, figure grids expanded into victims."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attacks import Amount
from .artifacts import ArtifactError
from .data import num_classes

class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


def schema_error_line(err: Any) -> str:
    """One line from a jsonschema ValidationError: the dotted key path and what is wrong."""
    path = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    return f"config key '{path}': {err.message}"


def check_references(config: dict[str, Any]) -> None:
    """Every name a figure or attack uses must be defined; npz sources must exist."""
    for name, attack in config["attacks"].items():
        if attack["trigger"] not in config["triggers"]:
            raise ConfigError(f"config key 'attacks.{name}.trigger': unknown trigger '{attack['trigger']}' "
                              f"(defined: {', '.join(config['triggers']) or 'none'})")
    for fig, spec in config["figures"].items():
        for key, section in (("dataset", "datasets"), ("attack", "attacks"), ("recipe", "recipes")):
            if spec[key] not in config[section]:
                raise ConfigError(f"config key 'figures.{fig}.{key}': unknown {key} '{spec[key]}' "
                                  f"(defined in '{section}': {', '.join(config[section]) or 'none'})")
        try:
            n = num_classes(config["datasets"][spec["dataset"]]["source"])
        except ArtifactError as e:
            raise ConfigError(f"config key 'datasets.{spec['dataset']}.source': {e}") from None
        bad = [t for t in spec["targets"] if t >= n] if spec["targets"] != "all" else []
        if bad:
            raise ConfigError(f"config key 'figures.{fig}.targets': class {bad[0]} does not exist "
                              f"(dataset '{spec['dataset']}' has classes 0..{n - 1})")


@dataclass(frozen=True)
class Victim:
    """One trained model of a figure's grid."""

    dataset: str
    attack: str
    recipe: str
    defence: str
    target: int
    amount: str
    seed: int

    @property
    def path(self) -> Path:
        """Directory holding model.pt, train_log.json and metrics.json."""
        return Path("results/victims", self.dataset, self.attack, self.recipe, self.defence,
                    f"t{self.target}-{self.amount}-s{self.seed}")


def amounts(spec: dict[str, Any]) -> list[str]:
    """A figure's poisoning amounts as path tokens."""
    if "rates" in spec:
        return [Amount(rate=float(r)).token for r in spec["rates"]]
    return [Amount(count=int(c)).token for c in spec["counts"]]


def targets(config: dict[str, Any], spec: dict[str, Any]) -> list[int]:
    """A figure's target classes, 'all' expanded."""
    if spec["targets"] == "all":
        return list(range(num_classes(config["datasets"][spec["dataset"]]["source"])))
    return list(spec["targets"])


def figure_victims(config: dict[str, Any], figure: str) -> list[Victim]:
    """Every victim a figure needs."""
    if figure not in config["figures"]:
        raise ConfigError(f"no figure '{figure}' in the config (defined: {', '.join(config['figures'])})")
    spec = config["figures"][figure]
    return [Victim(spec["dataset"], spec["attack"], spec["recipe"], spec.get("defence", "none"), t, a, s)
            for t in targets(config, spec) for a in amounts(spec) for s in spec.get("seeds", [0])]
