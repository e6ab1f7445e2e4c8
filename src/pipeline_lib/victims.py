"""Stage 4, victim training: a defence learns from the clean training set with the poison set spliced in;
a cohort of victims that differ only in their poison sets trains as one stacked network."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import devices, models, plugins
from .accel import Accel
from .artifacts import save_json
from .cohorts import member_name
from .data import load_prepared
from .fit import training_fit
from .models import predict
from .plugins import Job
from .poisons import read_poison_set
from .stacking import train_stacked
from .train import LossTrace, Recipe

PROBE_IMAGES = 1000  # training images every undefended model a defence reads must give finite outputs on (a cheap
# forward pass; a trained model is checked on its whole training set, evaluation then checks every test image)
DIVERGED = "training diverged, nothing saved (is a learning rate or weight decay too large?)"


def train_cohort(data_path: str, poison_paths: list[str], members: list[tuple[str, int, str]],
                 attacks: dict[str, dict[str, Any]], recipe: dict[str, Any], defence: dict[str, Any], seed: int,
                 out_dir: str, threads: int, pretrained: str | None = None, bases: list[str] | None = None,
                 gpu: dict[str, bool] | None = None) -> None:
    """Train every member under the defence, as one stacked network where the defence and the model stack, else one
    after another, and write each member's model.pt and train_log.json (with its poison set's description and what the
    defence measured) to out_dir/<member name>/. `attacks`: the config's attack blocks by name, which every member's
    poison set is checked against before anything trains; `gpu`: the config's GPU speed options (accel.Accel's
    fields)."""
    accel = Accel(**gpu or {})
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    sets = [read_poison_set(p, ds, attacks[attack], target, amount)
            for p, (attack, target, amount) in zip(poison_paths, members, strict=True)]
    r = Recipe.from_config(recipe)
    method, settings = plugins.settings("defence", defence)
    probe = ds.x_train[:PROBE_IMAGES]
    files = [Path(out_dir) / member_name(*member) / "model.pt" for member in members]
    with devices.acquire() as device:
        for base in dict.fromkeys(bases or []):  # a defence reads only undefended models with finite outputs
            with models.non_finite_outputs_named(base, "refused as the undefended model this defence reads"):
                predict(models.load_model(base), probe, device)
        if len(sets) > 1 and method.stacks and plugins.method("model", r.model).stacks and not r.trace_per_epoch:
            adversary = method.adversary(settings, seed) if method.adversary else None
            trained, infos = train_stacked(ds.x_train, ds.y_train, [ps for ps, _ in sets], ds.num_classes, r, seed,
                                           device, adversary, accel)
            traces: list[LossTrace | None] = [None] * len(sets)
        else:  # one after another, each as its own run
            trained, infos, traces = [], [], []
            for (ps, _), base, file in zip(sets, bases or [None] * len(sets), files, strict=True):
                x, y = ps.apply_to(ds.x_train, ds.y_train)
                trace = None
                if r.trace_per_epoch and method.name == "none":  # Figure 4-1 traces plain training only
                    sample = np.random.default_rng(seed).permutation(len(y))[:5000]
                    n = ps.count  # the backdoored examples, not WaNet's noise-mode images
                    trace = LossTrace({"poisoned": (ps.images[:n], ps.labels[:n]), "poisoned_without_trigger":
                                       (ps.untriggered[:n], ps.labels[:n]), "all": (x[sample], y[sample])}, device)
                with models.non_finite_outputs_named(str(file), DIVERGED):  # what the defence measures on the way
                    model, info = method.fit(Job(x, y, ds.num_classes, r, seed, device, ps.mask(len(y)), pretrained,
                                                 base, trace, accel, (ds.x_train, ds.y_train)), settings)
                trained.append(model)
                infos.append(info)
                traces.append(trace)
        fits = []  # each model's fit to its own training set; a last update can leave finite weights, NaN outputs
        for file, model, (ps, _) in zip(files, trained, sets, strict=True):
            with models.non_finite_outputs_named(str(file), DIVERGED):
                fits.append(training_fit(model, *ps.apply_to(ds.x_train, ds.y_train), device))
    for file, model, info, trace, (ps, meta), fit in zip(files, trained, infos, traces, sets, fits, strict=True):
        models.save_weights(file, info["arch"], model)
        save_json(file.with_name("train_log.json"), {"defence": {}, **info, "fit": fit,
                                                     "loss_trace": trace.points if trace else [],
                                                     "defence_method": method.name,
                                                     "poison": {**meta, "count": ps.count, "crossed": ps.crossed}})
