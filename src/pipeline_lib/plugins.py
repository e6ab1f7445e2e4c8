"""The method catalogue: every attack, trigger, defence and model with its traits and config keys, collected from
the modules of the packages `attacks`, `triggers`, `defences` and `architectures` and from the modules a config
names under `plugins`.

A method module declares `METHODS`, a list of Attack, Trigger, Defence or Model entries; each entry names a frozen
dataclass whose fields are the method's config keys (defaults, bounds and help written once, with
`blocks.key`). The schema of a method's config block, the checks made at planning, the table columns and the
method table of docs/methods.md all follow from these entries. Torch-free, like the method modules' top level: planning
imports the catalogue, and only the jobs that train or attack import torch (inside a method's functions).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from .blocks import defaults, from_block

if TYPE_CHECKING:
    import numpy as np
    import torch

    from .accel import Accel
    from .train import Recipe, Tracer

PACKAGES = {"attack": "attacks", "trigger": "triggers", "defence": "defences", "model": "architectures"}
# the key of a config block that names its method, per kind (a model's block: the recipe's model_options + `model`)
METHOD_KEY = {"attack": "method", "trigger": "pattern", "defence": "method", "model": "model"}
NOUN = {"attack": "attack method", "trigger": "trigger method", "defence": "defence method", "model": "model"}
LABELLED = ("attack", "defence")  # kinds whose config blocks may carry a display `label` beside the method's keys
NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # a method's or measure's name: the schema's $defs/name
MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # a plug-in: the schema's `plugins` items
RATES = ("clean_accuracy", "asr_labelled", "asr_classified", "robust_accuracy", "target_accuracy")
# A victim row's own columns, which evaluate.evaluate_cohort writes and the tables show: before what the defences
# measure (the run's description, the rates with the test images each was measured on, as hits of n: the
# scorecard's intervals; the fit to the training set and the test losses, the 003 seed's table), after it (the median
# training losses at the end of training of recipes that trace them, thesis Figure 4-1, with their standard errors,
# and BackdoorBench's defence effectiveness rating against the undefended twin, with the twin's counts), and metrics.json's
# list of accuracies per class (not one cell). A defence measuring one of these would overwrite a core metric.
LOSSES = ("train_loss", "test_loss", "triggered_loss")  # mean cross-entropies, each with its standard error `_se`
VICTIM_COLUMNS = ("series", "dataset", "model", "recipe", "attack", "method", "trigger", "amplitude", "defence",
                  "defence_method", "target", "target_name", "amount", "rate", "count", "fraction_of_class",
                  "fraction_of_train", "seed", *RATES, "train_accuracy", *LOSSES, "train_seconds", "device",
                  *(f"{m}_{part}" for m in (*RATES, "train_accuracy") for part in ("hits", "n")),
                  *(f"{m}_se" for m in LOSSES))
FINAL_LOSSES = ("final_loss_poisoned", "final_loss_poisoned_without_trigger", "final_loss_all")
TAIL_COLUMNS = (*FINAL_LOSSES, *(f"{m}_se" for m in FINAL_LOSSES), "der",
                *(f"twin_{m}_{part}" for m in ("asr_labelled", "clean_accuracy") for part in ("hits", "n")))
DROPPED = ("per_class_accuracy",)
RESERVED_MEASURES = frozenset({*VICTIM_COLUMNS, *TAIL_COLUMNS, *DROPPED})


class PluginError(ValueError):
    """A method module or a method's config block is wrong; the message names the module or key."""


@dataclass(frozen=True, kw_only=True)
class Method:
    """What every method declares: its name (the value of its block's `method` or `pattern`), one line for the
    method table (docs/methods.md), and the frozen dataclass of its config keys."""

    name: str
    summary: str
    config: type
    module: str = ""             # filled in when registered: the module declaring it (its code version)


@dataclass(frozen=True, kw_only=True)
class Trigger(Method):
    """A fixed trigger pattern: its config dataclass has `apply(uint8 NHWC images) -> triggered copies`."""


@dataclass(frozen=True, kw_only=True)
class Attack(Method):
    """How the poisoned training examples are chosen and labelled.

    select(y, target, n, rng) -> (indices, labels) of the n examples poisoned;
    relabels: poisons may come from every class (an amount's pool is the whole training set), else only from
    the target class; trigger: 'fixed' (its block names a trigger), 'trained' (a generator trained per target
    and seed, its block names the attacker's recipe) or 'none' (nothing poisoned: the clean victim). A
    `perturbation` key in its config makes the target-class images perturbed before the trigger.
    cross(x, y, selected indices, config, trigger, rng) -> (indices, images) of further examples the attack
    modifies without the backdoor, labels kept (WaNet's noise mode), or None; its config then has `crossed(n)`,
    how many for n poisons (checked at planning); patterns: the trigger patterns it works with (empty: any)."""

    select: Callable[[np.ndarray, int, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    relabels: bool = True
    trigger: str = "fixed"
    cross: Callable[[np.ndarray, np.ndarray, np.ndarray, Any, Any, np.random.Generator],
                    tuple[np.ndarray, np.ndarray]] | None = None
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """What a defence learns from: the (possibly poisoned) training set, the recipe, and what it may read."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    recipe: Recipe
    seed: int
    device: torch.device
    poisoned: np.ndarray         # mask of the poisoned examples: scores detection, never used to train
    pretrained: str | None = None  # weights of the model named by the block's `pretrained` key
    base: str | None = None      # weights of the undefended victim (defences that need_base)
    tracer: Tracer | None = None  # records per-sample losses during plain training (Figure 4-1)
    accel: Accel | None = None   # GPU speed options of the training loops that take them (None: the default)
    clean: tuple[np.ndarray, np.ndarray] | None = None  # the unpoisoned training set: a defender's clean share

    def __post_init__(self) -> None:
        if self.accel is None:
            from .accel import TRAIN_DEFAULT  # torch: a Job is only made where a defence trains

            object.__setattr__(self, "accel", TRAIN_DEFAULT)


@dataclass(frozen=True, kw_only=True)
class Defence(Method):
    """How a victim learns from a possibly poisoned training set.

    fit(job, config) -> (model, info): info as train.train returns it, with what the defence measured under
    info['defence'] (keys listed in `measures`: they become table columns);
    assess(model, config, clean test images, triggered test images, device) -> what an input-level detector
    measures at test time (keys listed in `measures`), merged into the victim's metrics;
    needs_base: it reads the undefended victim's model (planned and trained first);
    stacks: its training is train.train with at most a per-batch `adversary(config, seed)`, so a cohort's members
    train as one stacked network."""

    fit: Callable[[Job, Any], tuple[Any, dict[str, Any]]]
    assess: Callable[[Any, Any, np.ndarray, np.ndarray, Any], dict[str, Any]] | None = None
    measures: tuple[str, ...] = ()
    needs_base: bool = False
    stacks: bool = False
    adversary: Callable[[Any, int], Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Model(Method):
    """A network a recipe trains: build(config, in_channels, num_classes) -> models.Classifier (input norm ->
    features -> linear head), importing torch only when called; min_side(config): the smallest image side it
    takes; stacks: its layers are ones `stacking` can widen (convolutions, batch norms, parameter-free layers), so
    a cohort's members may train as one network, else they train in turn."""

    build: Callable[[Any, int, int], Any]
    min_side: Callable[[Any], int]
    stacks: bool = True


KIND_OF = {Attack: "attack", Trigger: "trigger", Defence: "defence", Model: "model"}


def _failure(e: BaseException) -> str:
    """An exception raised importing a module, in one line: its type and the first line of its message."""
    if isinstance(e, SystemExit):
        return f"SystemExit: the module called sys.exit({e.code!r})"
    lines = str(e).splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _register(found: dict[str, dict[str, Method]], module: str) -> None:
    """Add a module's METHODS to `found`, refusing a name two modules declare, a name that is no name and a
    defence measuring a core metric."""
    try:
        imported = importlib.import_module(module)
    except BaseException as e:  # the user's code: any failure to import, sys.exit and Ctrl-C too, ends with one line
        where = "" if module.startswith(f"{__package__}.") else "config key 'plugins': "
        missing = isinstance(e, ModuleNotFoundError) and f"{module}.".startswith(f"{e.name}.")  # not a dependency
        hint = ("; Python looks in the project root and on PYTHONPATH: export PYTHONPATH=<its folder> before "
                "snakemake" if missing else "")
        raise PluginError(f"{where}cannot import method module '{module}' ({_failure(e)}){hint}") from None
    declared = getattr(imported, "METHODS", None)
    if not isinstance(declared, list):
        raise PluginError(f"method module '{module}' declares no METHODS list")
    for m in declared:
        kind = KIND_OF.get(type(m))
        if kind is None:
            raise PluginError(f"method module '{module}': {m!r} is not an Attack, Trigger, Defence or Model")
        if not isinstance(m.name, str) or not NAME.fullmatch(m.name):
            raise PluginError(f"method module '{module}': {kind} method name {m.name!r} is not 1 to 64 letters, "
                              f"digits or '_'")
        if kind in LABELLED and "label" in {f.name for f in dataclasses.fields(m.config)}:
            raise PluginError(f"method module '{module}': {kind} '{m.name}' has a key 'label', the display name every "
                              f"{kind} block may carry; rename the key")
        if m.name in found[kind]:
            raise PluginError(f"{kind} method '{m.name}' is declared by both '{found[kind][m.name].module}' and "
                              f"'{module}'")
        if m.name == "none" and kind == "defence" and module != "pipeline_lib.defences.none":
            raise PluginError(f"method module '{module}': 'none' is plain training's name")
        if kind == "defence":
            if not isinstance(m.measures, tuple) or not all(isinstance(k, str) and NAME.fullmatch(k)
                                                            for k in m.measures):
                raise PluginError(f"method module '{module}': defence '{m.name}' measures {m.measures!r}, not a "
                                  f"tuple of names")
            if reserved := sorted(RESERVED_MEASURES.intersection(m.measures)):
                raise PluginError(f"method module '{module}': defence '{m.name}' measures '{reserved[0]}', a core "
                                  f"metric's name (a measure adds a metric, never replaces one)")
        found[kind][m.name] = dataclasses.replace(m, module=module)


_PLUGINS: tuple[str, ...] = ()  # the config's plug-in modules, set by use()


def use(modules: Sequence[str]) -> None:
    """Make the config's `plugins` modules part of this process's catalogue (planning and every job call it)."""
    global _PLUGINS
    for module in modules:  # all named properly before any is imported
        if not isinstance(module, str) or not MODULE.fullmatch(module):
            raise PluginError(f"config key 'plugins': {module!r} is not a dotted Python module name")
    _catalogue(tuple(modules))  # import them now: a bad module stops the run before any work
    _PLUGINS = tuple(modules)


def catalogue() -> dict[str, dict[str, Method]]:
    """Every method by kind and name: the package's own modules, then the plug-in modules in use."""
    return _catalogue(_PLUGINS)


@cache
def _catalogue(plugins: tuple[str, ...]) -> dict[str, dict[str, Method]]:
    """The package's own method modules (those not starting with '_'), then `plugins`, registered."""
    found: dict[str, dict[str, Method]] = {kind: {} for kind in PACKAGES}
    for package in PACKAGES.values():
        pkg = importlib.import_module(f"{__package__}.{package}")
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                _register(found, f"{pkg.__name__}.{info.name}")
    for module in plugins:
        _register(found, module)
    return found


def method(kind: str, name: str) -> Method:
    """One method of a kind by name, or an error listing the known ones."""
    known = catalogue()[kind]
    if name not in known:
        raise PluginError(f"unknown {NOUN[kind]} '{name}' (known: {', '.join(sorted(known))})")
    return known[name]


def settings(kind: str, block: dict[str, Any]) -> tuple[Any, Any]:
    """(method, its config dataclass instance) of a config block such as {method: abl, gamma: 0.5}; an attack's or
    defence's display `label` (what figures print) is no key of its method."""
    m = method(kind, block[METHOD_KEY[kind]])
    keys = {k: v for k, v in block.items() if k != METHOD_KEY[kind] and not (k == "label" and kind in LABELLED)}
    return m, from_block(m.config, keys, f"{kind} '{m.name}'")


def modules(kind: str) -> list[str]:
    """The modules declaring the methods of a kind, each once."""
    return list(dict.fromkeys(m.module for m in catalogue()[kind].values()))


def measures() -> list[str]:
    """Every key a defence declares it measures, in catalogue order, each once."""
    return list(dict.fromkeys(k for d in catalogue()["defence"].values() for k in d.measures))


def _shown(value: Any) -> str:
    """A default as a config file would write it."""
    if value is None:
        return "optional"
    return str(list(value)) if isinstance(value, tuple) else str(value)


def markdown() -> str:
    """The method table of docs/methods.md: kind, name, module, what it is, its keys with their defaults."""
    rows = ["| kind | method | module | what it is | keys (defaults) |", "| --- | --- | --- | --- | --- |"]
    for kind, methods in catalogue().items():
        for m in methods.values():
            have = defaults(m.config)
            keys = ", ".join(f"{f.name} ({_shown(have[f.name]) if f.name in have else 'required'})"
                             for f in dataclasses.fields(m.config))
            rows.append(f"| {kind} | `{m.name}` | `{m.module.removeprefix('pipeline_lib.')}` | "
                        f"{m.summary.rstrip('.')} | {keys or '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":  # docs/methods.md's table; run as a module, so read through the package's own copy
    from pipeline_lib import plugins

    print(plugins.markdown())
