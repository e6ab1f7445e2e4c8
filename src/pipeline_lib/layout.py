"""Where every artifact lives: the path patterns the rules declare and the typed names the library fills them
from, with the few specs the DAG needs (amounts, interpolation partners, the clean victim's name).
Torch-free, so building the DAG imports no torch."""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Path patterns, one per artifact kind; rules use them as Snakemake wildcards, the library via .format(). All lie
# below RESULTS, which `use_results` moves to the config's `results` folder.
RESULTS = "results"
DATA = "results/data/{dataset}.npz"
SURROGATE = "results/surrogates/{surrogate}"
GAN_PAIR = "results/gans/{dataset}/{gan}/c{cls}-c{partner}"
PERTURBED = "results/perturbed/{dataset}/{perturbation}/c{cls}.npz"
PERTURBED_CLASSES = "results/perturbed/{dataset}/{perturbation}/classes"
POISONED = "results/poisoned/{dataset}/{attack}/t{target}-{amount}-s{seed}.npz"
SCORES = "results/filtering/{dataset}/{surrogate}/{attack}/t{target}-{amount}-s{seed}.npz"
DYNAMIC = "results/dynamic/{dataset}/{attack}/t{target}-s{seed}"
VICTIM = "results/victims/{dataset}/{attack}/{recipe}/{defence}/t{target}-{amount}-s{seed}"
COHORT = "results/cohorts/{dataset}/{recipe}/{defence}/s{seed}-{digest}"
TABLE = "results/tables/{figure}.csv"
SUMMARY = "results/tables/{figure}.md"
FIGURE = "results/figures/{figure}.png"
ALL_VICTIMS = "results/tables/all_victims.csv"
SCORECARD = "results/tables/scorecard.csv"
SCORECARD_MD = "results/tables/scorecard.md"
SCORECARD_FIGURE = "results/figures/scorecard.png"
PATTERNS = ("DATA", "SURROGATE", "GAN_PAIR", "PERTURBED", "PERTURBED_CLASSES", "POISONED", "SCORES", "DYNAMIC",
            "VICTIM", "COHORT", "TABLE", "SUMMARY", "FIGURE", "ALL_VICTIMS", "SCORECARD", "SCORECARD_MD",
            "SCORECARD_FIGURE")


def use_results(folder: str) -> None:
    """Move every path pattern (and so every log and benchmark) below `folder`, the config's `results`: once at
    planning, before any rule reads a pattern."""
    here = globals()
    for name in PATTERNS:
        here[name] = folder + here[name].removeprefix(here["RESULTS"])
    here["RESULTS"] = folder

AMOUNT_RE = re.compile(r"^(?:p(?P<rate>\d*\.?\d+(?:e-?\d+)?)|n(?P<count>\d+))$")

# A clean victim's (attack method `none`) target and amount in its path: one per dataset, recipe, defence and seed.
CLEAN_TARGET, CLEAN_AMOUNT = 0, "n0"


def orientation(configfiles: list[str], claims: bool) -> str:
    """The last lines of a finished run: where its figures, tables and scorecard are, and how to make the report."""
    shown = [rel if not (rel := os.path.relpath(path)).startswith("..") else str(path) for path in configfiles]
    preset = "".join(f"--configfile {path} " for path in shown)  # relative where below the working folder
    lines = [f"Figures: {posixpath.dirname(FIGURE)}/ (one PNG each); their tables: {posixpath.dirname(TABLE)}/ "
             f"(every victim: {ALL_VICTIMS})."]
    if claims:
        lines.append(f"Which claims held: {SCORECARD_MD} (drawn: {SCORECARD_FIGURE}).")
    lines.append(f"Every figure with its caption in one HTML page: snakemake {preset}--report {RESULTS}/report.html")
    return "\n".join(lines)


def log(rule: str, pattern: str, kind: str = "logs", suffix: str = ".log") -> str:
    """A rule's log file: <results>/logs/<rule>/ then the artifact's path below its kind's folder, as .log (another
    `kind` of folder and `suffix`: a file laid out like the log)."""
    below = pattern.removeprefix(f"{RESULTS}/").split("/", 1)[1]
    return f"{RESULTS}/{kind}/{rule}/{posixpath.splitext(below)[0]}{suffix}"


def benchmark(rule: str, pattern: str) -> str:
    """A rule's benchmark file, laid out like its log."""
    return log(rule, pattern, "benchmarks", ".tsv")


def data(dataset: str) -> str:
    """A prepared dataset."""
    return DATA.format(dataset=dataset)


def surrogate(name: str) -> str:
    """A surrogate's folder (model.pt, metrics.json)."""
    return SURROGATE.format(surrogate=name)


def gan_pair(dataset: str, gan: str, cls: int, partner: int) -> str:
    """The folder of the GAN trained on a class pair (generator.pt, latents.npz)."""
    return GAN_PAIR.format(dataset=dataset, gan=gan, cls=cls, partner=partner)


def perturbed(dataset: str, perturbation: str, cls: int) -> str:
    """The perturbed images of one class."""
    return PERTURBED.format(dataset=dataset, perturbation=perturbation, cls=cls)


def cohort(dataset: str, recipe: str, defence: str, seed: int, digest: str) -> str:
    """A victim cohort's folder (models/, metrics/)."""
    return COHORT.format(dataset=dataset, recipe=recipe, defence=defence, seed=seed, digest=digest)


def dynamic(dataset: str, attack: str, target: int, seed: int) -> str:
    """The folder of an input-aware attack's trigger networks and attacker classifier."""
    return DYNAMIC.format(dataset=dataset, attack=attack, target=target, seed=seed)


def partner_class(cls: int, spec: dict[str, Any], num_classes: int) -> int:
    """The class an interpolation moves towards: `partner_offset` classes on (frog -> horse is +1)."""
    return (cls + spec.get("partner_offset", 1)) % num_classes


def partner_images(y: np.ndarray, cls: int, partner: int, n: int, seed: int) -> np.ndarray:
    """Training indices of the partner-class image each of n class images is interpolated towards."""
    pool = np.flatnonzero(y == partner)
    return np.random.default_rng([seed, cls, partner]).choice(pool, size=n, replace=len(pool) < n)


def random_other_class(y: np.ndarray, cls: int, n: int, seed: int) -> np.ndarray:
    """Training indices of n images drawn at random from every class but `cls` (thesis 4.5's "a randomly selected
    ... image of a different class"), one per image interpolated, seeded by (seed, cls)."""
    pool = np.flatnonzero(y != cls)
    return np.random.default_rng([seed, cls, len(y)]).choice(pool, size=n, replace=len(pool) < n)


@dataclass(frozen=True)
class Amount:
    """How much to poison: a fraction of the target class (thesis 7.1) or an absolute count."""

    rate: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.count is None):
            raise ValueError("an amount is either a rate or a count")
        if self.rate is not None and not 0 < self.rate <= 1:
            raise ValueError(f"poisoning rate {self.rate} outside (0, 1]")
        if self.count is not None and self.count < 0:  # 0: the clean victim's amount
            raise ValueError(f"poison count {self.count} must not be negative")

    @classmethod
    def parse(cls, token: str) -> Amount:
        """Parse a path token: 'p0.015' (rate of the target class) or 'n75' (count)."""
        m = AMOUNT_RE.match(token)
        if not m:
            raise ValueError(f"amount '{token}' is neither p<rate> nor n<count>")
        return cls(rate=float(m["rate"])) if m["rate"] else cls(count=int(m["count"]))

    @property
    def token(self) -> str:
        """The inverse of parse."""
        return f"p{self.rate:g}" if self.rate is not None else f"n{self.count}"

    def resolve(self, class_size: int) -> int:
        """Number of images to poison given the target class's training size."""
        n = self.count if self.count is not None else round(self.rate * class_size)
        if n < 1:
            what = f"rate {self.rate}" if self.rate is not None else f"count {self.count}"
            raise ValueError(f"{what} of {class_size} target-class images poisons no image")
        return n


@dataclass(frozen=True)
class Poisoned:
    """One poisoned training set."""

    dataset: str
    attack: str
    target: int
    amount: str
    seed: int

    @property
    def path(self) -> Path:
        """The poison set's npz."""
        return Path(POISONED.format(**asdict(self)))

    def scores(self, filter_name: str) -> Path:
        """The filter's label probabilities over this poisoned training set."""
        return Path(SCORES.format(**asdict(self), surrogate=filter_name))


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
        return Path(VICTIM.format(**asdict(self)))

    @property
    def poisoned(self) -> Poisoned:
        """The poisoned training set it learned from."""
        return Poisoned(self.dataset, self.attack, self.target, self.amount, self.seed)

    def undefended(self) -> Victim:
        """The same victim trained without a defence (what the sanitisers read)."""
        return Victim(self.dataset, self.attack, self.recipe, "none", self.target, self.amount, self.seed)


@dataclass(frozen=True)
class AttackerModel(Victim):
    """An input-aware attack's own classifier, trained with its trigger networks (recipe: the attack's; no defence;
    amount n0: no fixed poison set), read as a row of a figure where a series says `classifier: attacker`."""

    @property
    def path(self) -> Path:
        """The attack's folder, holding the classifier's model.pt, train_log.json and metrics.json."""
        return Path(dynamic(self.dataset, self.attack, self.target, self.seed))
