"""Cohorts: at most cohort_size victims of one (dataset, recipe, defence, seed) per job, cut by content, so that
adding victims changes only the cohorts they land in; with cohort_by_figure, only victims the same figures need."""
import pytest

from conftest import load_config
from pipeline_lib.cohorts import chunks, plan
from pipeline_lib.config import other_datasets, cohort_plan, trained_victims
from pipeline_lib.layout import Amount, Victim


def grid(attacks=("a", "b", "c"), targets=range(10), rates=(0.1, 0.25, 0.5), recipe="r", defence="none"):
    return [Victim("d", a, recipe, defence, t, Amount(rate=r).token, 0) for a in attacks for t in targets for r in rates]


def test_every_victim_has_one_cohort_of_its_own_group_and_no_cohort_exceeds_the_size():
    victims = grid() + grid(recipe="q") + grid(defence="dp")
    cohorts = plan(victims, 16)
    assert set(cohorts) == set(victims)
    for v, c in cohorts.items():
        assert v in c.victims and len(c.members) <= 16
        assert (c.dataset, c.recipe, c.defence, c.seed) == (v.dataset, v.recipe, v.defence, v.seed)
    sizes = [len(c.members) for c in set(cohorts.values())]
    assert sum(sizes) == len(victims) and max(sizes) == 16 and len(sizes) < len(victims) / 5


def test_cohort_size_one_is_one_victim_per_job():
    assert all(len(c.members) == 1 for c in plan(grid(), 1).values())


def test_the_same_victims_give_the_same_cohorts_in_any_order():
    victims = grid()
    a, b = plan(victims, 8), plan(list(reversed(victims)), 8)
    assert {v: c.path for v, c in a.items()} == {v: c.path for v, c in b.items()}


GROUP = grid(attacks=[f"a{i}" for i in range(10)], rates=(0.05, 0.1, 0.25, 0.5, 1.0))  # 500, as CIFAR's largest


@pytest.mark.parametrize("added", [
    grid(attacks=("a3",), rates=(0.4,)),   # one figure's attack gains a rate: 10 victims
    grid(attacks=("a3b",), rates=(0.1, 0.5)),  # a new attack: 20 victims
    grid(attacks=("a3",), targets=(10,), rates=(0.05, 0.1, 0.25, 0.5, 1.0)),  # a new target, one per rate
], ids=["rate", "attack", "target"])
def test_adding_one_figures_victims_retrains_only_the_cohorts_they_land_in(added):
    before, after = plan(GROUP, 16), plan(GROUP + added, 16)
    changed = {c for c in set(after.values()) if c not in set(before.values())}
    assert {v for c in changed for v in c.victims} >= set(added)
    retrained = {v for c in changed for v in c.victims} - set(added)
    assert all(after[v] == before[v] for v in before if v not in retrained)
    assert len(retrained) <= 64 and {v.attack for v in retrained} <= {"a2", "a3", "a4"}  # the stretch around them


def test_chunks_cut_after_hash_boundaries_and_when_full():
    members = [("a", t, "p0.1") for t in range(200)]
    pieces = chunks(members, 8)
    assert [m for p in pieces for m in p] == members and max(map(len, pieces)) == 8
    assert len(pieces) > 200 / 8  # content cuts come before the size cap, not only at it


def test_victims_kept_apart_never_share_a_cohort():
    victims = grid()
    apart = {v: v.target % 2 for v in victims}
    cohorts = plan(victims, 16, apart)
    assert all(len({apart[v] for v in c.victims}) == 1 for c in cohorts.values())
    assert len(set(cohorts.values())) > len(set(plan(victims, 16).values()))


@pytest.mark.parametrize("by_figure", [True, False])
def test_the_full_config_trains_its_victims_in_a_fraction_of_the_jobs(by_figure):
    cfg = load_config("config.yaml") | {"cohort_by_figure": by_figure}
    needs = trained_victims(cfg)
    cohorts = set(cohort_plan(cfg).values())
    assert len(needs) == 1028 and len(cohorts) < 1028 / 4 and sum(len(c.members) for c in cohorts) == 1028
    # by figure, every cohort's members are needed by the same figures, so a one-figure run trains only its own
    assert all(len({needs[v] for v in c.victims}) == 1 for c in cohorts) == by_figure
    # victims whose poisons need the CINIC-10 download never share a cohort with those that do not: a machine
    # without it still trains the fallback series
    assert all(len({"cinic10_imagenet" in other_datasets(cfg, v) for v in c.victims}) == 1 for c in cohorts)
    assert any("cinic10_imagenet" in other_datasets(cfg, v) for v in needs)
