"""The victim stages: train a model on a poisoned training set, then evaluate it."""
from __future__ import annotations

from typing import Any

import torch

from . import devices, evaluate, models
from .artifacts import load_json, save_json
from .attacks import Amount, read_poison_set
from .data import load_prepared
from .train import Recipe, train
from .triggers import Trigger


def train_victim(data_path: str, poison_path: str, recipe: dict[str, Any], seed: int,
                 model_out: str, log_out: str, threads: int) -> None:
    """Stage 4: train on the clean training set with the poison set spliced in."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    ps, meta = read_poison_set(poison_path)
    x, y = ps.apply_to(ds.x_train, ds.y_train)
    r = Recipe.from_config(recipe)
    with devices.acquire() as device:
        model, info = train(x, y, ds.num_classes, r, seed, device)
    models.save_weights(model_out, info["arch"], model)
    save_json(log_out, {**info, "poison": {**meta, "count": len(ps.indices)}})


def evaluate_victim(model_path: str, data_path: str, log_path: str, trigger: dict[str, Any],
                    describe: dict[str, Any], out: str) -> None:
    """Stage 5: clean accuracy, both ASRs and robust accuracy on the test set, with the run's description."""
    ds = load_prepared(data_path)
    arch, state = models.load_weights(model_path)
    model = models.build(arch)
    model.load_state_dict(state)
    log = load_json(log_path)
    target, poison = int(describe["target"]), log["poison"]
    with devices.acquire() as device:
        clean = evaluate.predict(model, ds.x_test, device)
        triggered = evaluate.predict(model, Trigger(**trigger).apply(ds.x_test), device)
    metrics = evaluate.attack_metrics(ds.y_test, clean, triggered, target, ds.num_classes)
    amount = Amount.parse(describe["amount"])
    save_json(out, {
        **describe, **metrics,
        "model": arch["name"], "target_name": ds.classes[target],
        "trigger": trigger["pattern"], "amplitude": trigger.get("amplitude", 255),
        "rate": amount.rate, "count": poison["count"],
        "fraction_of_class": poison["count"] / poison["class_size"],
        "fraction_of_train": poison["count"] / poison["train_size"],
        "train_seconds": log["seconds"], "device": log["device"],
    })
