"""Stage 4, victim training: a defence learns from the clean training set with the poison set spliced in."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import devices, models
from .artifacts import save_json
from .attacks import read_poison_set
from .data import load_prepared
from .defences import DEFENCES, Context
from .train import LossTrace, Recipe


def train_victim(data_path: str, poison_path: str, recipe: dict[str, Any], defence: dict[str, Any], seed: int,
                 model_out: str, log_out: str, threads: int, pretrained: str | None = None,
                 base: str | None = None) -> None:
    """Train under the defence; the log keeps the poison set's description and what the defence measured."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    ps, meta = read_poison_set(poison_path)
    x, y = ps.apply_to(ds.x_train, ds.y_train)
    r = Recipe.from_config(recipe)
    spec = {k: v for k, v in defence.items() if k != "method"}
    with devices.acquire() as device:
        trace = None
        if r.trace_per_epoch and defence["method"] == "none":  # Figure 4-1 traces plain training only
            sample = np.random.default_rng(seed).permutation(len(y))[:5000]
            trace = LossTrace({"poisoned": (ps.images, ps.labels), "poisoned_without_trigger": (ps.untriggered,
                               ps.labels), "all": (x[sample], y[sample])}, device)
        model, info = DEFENCES[defence["method"]](x, y, ds.num_classes, r, spec, seed, device,
                                                  Context(ps.mask(len(y)), pretrained, base, trace))
    models.save_weights(model_out, info["arch"], model)
    save_json(log_out, {"defence": {}, **info, "loss_trace": trace.points if trace else [],
                        "defence_method": defence["method"], "poison": {**meta, "count": len(ps.indices)}})
