"""Victim cohorts: victims that share (dataset, recipe, defence, seed) and differ only in their poisoned training
set are trained in one job and evaluated in one job. Torch-free (the DAG uses it).

Within a group, victims are taken in (attack, amount, target) order and cut into cohorts by their content, as
content-defined chunking does: a cohort ends after a victim whose hash is 0 modulo `cohort_size`, or when it is
full. Where the cuts fall depends only on the victims around them, so added victims change only the cohorts
between the hash cuts around them; every other cohort keeps its members, its name (a digest of its member list)
and its results. A new rate or attack lands in one stretch per attack; a new target lands in every (attack,
amount) run of the group, so most of its cohorts gain a member and retrain. With `cohort_by_figure` the groups
are split further by the figures needing each victim, so a one-figure run trains only that figure's victims (a
victim that another figure comes to need moves to another cohort, and both cohorts retrain). Under plain and
adversarial training the members train as one stacked network (`stacking`); other defences (DP-SGD, ABL, the
sanitisers: defences whose plug-in does not declare `stacks`) and recipes that trace per-sample losses train the
members one after another in the cohort's process.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .layout import Victim

Member = tuple[str, int, str]  # (attack, target, amount)


def _order(m: Member) -> tuple[str, str, int]:
    """Members in (attack, amount, target) order: one rate of one attack is one run."""
    return m[0], m[2], m[1]


def _hash(obj: object) -> str:
    """A stable hex digest of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


@dataclass(frozen=True)
class Cohort:
    """Victims trained together in one job and evaluated together in another."""

    dataset: str
    recipe: str
    defence: str
    seed: int
    members: tuple[Member, ...]  # in training order

    @property
    def digest(self) -> str:
        """A short hash of the member list (the cohort's name within its group)."""
        return _hash(self.members)[:10]

    @property
    def path(self) -> Path:
        """The cohort's folder: models/ (training) and metrics/ (evaluation)."""
        return Path(layout.cohort(self.dataset, self.recipe, self.defence, self.seed, self.digest))

    @property
    def victims(self) -> list[Victim]:
        """The members as victims."""
        return [Victim(self.dataset, a, self.recipe, self.defence, t, n, self.seed) for a, t, n in self.members]


def member_name(attack: str, target: int, amount: str) -> str:
    """A member's path stem inside its cohort's folders."""
    return f"{attack}/t{target}-{amount}"


def chunks(members: list[Member], size: int) -> list[list[Member]]:
    """Content-defined cuts of an ordered member list into pieces of at most `size`."""
    out: list[list[Member]] = [[]]
    for m in members:
        out[-1].append(m)
        if len(out[-1]) == size or int(_hash(m), 16) % size == 0:
            out.append([])
    return [c for c in out if c]


def plan(victims: Iterable[Victim], size: int, apart: Mapping[Victim, Hashable] | None = None) -> dict[Victim, Cohort]:
    """Each victim's cohort: at most `size` victims of one (dataset, recipe, defence, seed), and of one value of
    `apart` where given (the figures needing each victim: then a one-figure run trains only that figure's victims)."""
    groups: dict[tuple, list[Member]] = {}
    for v in set(victims):
        key = (v.dataset, v.recipe, v.defence, v.seed, apart[v] if apart is not None else None)
        groups.setdefault(key, []).append((v.attack, v.target, v.amount))
    cohorts = [Cohort(*key[:4], tuple(chunk)) for key, members in groups.items()
               for chunk in chunks(sorted(members, key=_order), size)]
    return {v: c for c in cohorts for v in c.victims}
