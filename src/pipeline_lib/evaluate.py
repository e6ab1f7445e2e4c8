"""Victim evaluation: clean accuracy, both attack-success-rate definitions (thesis 2.1.1), robust accuracy, the
losses on clean and triggered test images and the fit to the training set (the 003 seed's table)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import devices, models, plugins
from .artifacts import load_json, save_json
from .data import load_prepared
from .fit import mean_with_se, rate
from .input_aware import cross_accuracy
from .layout import CLEAN_AMOUNT, Amount
from .models import predict_with_loss
from .poisons import load_trigger
from .trigger_nets import DynamicTrigger


def attack_metrics(y: np.ndarray, clean_pred: np.ndarray, triggered_pred: np.ndarray,
                   target: int, num_classes: int) -> dict[str, object]:
    """All metrics from labels and the predictions on clean and triggered test images, each rate with the counts it
    was measured on (`<rate>_hits` of `<rate>_n` test images: the scorecard's intervals need them); without
    triggered predictions (a clean victim) the attack rates are NaN over 0 images.

    asr_labelled:    share of images *labelled* other than the target classified as the target
                     once triggered (the thesis's first definition, used in chapters 2-4);
    asr_classified:  the same over images not *classified* as the target before the trigger
                     (the second definition, used for the DP-SGD experiments);
    robust_accuracy: share of non-target images still classified as their true label when triggered;
    target_accuracy: clean accuracy on the target class's own test images (the 001 seed's "clean zeros").
    """
    not_target = y != target
    not_pred_target = clean_pred != target
    if not len(triggered_pred):  # a clean victim: no triggered images, attack rates over none
        not_target = not_pred_target = np.zeros(0, bool)
    outcomes = {
        "clean_accuracy": clean_pred == y,
        "asr_labelled": triggered_pred[not_target] == target,
        "asr_classified": triggered_pred[not_pred_target] == target,
        "robust_accuracy": triggered_pred[not_target] == y[not_target],
        "target_accuracy": clean_pred[y == target] == target,
    }
    metrics: dict[str, object] = {}
    for name, hits in outcomes.items():
        metrics |= rate(name, hits)
    metrics["per_class_accuracy"] = [rate("c", clean_pred[y == c] == c)["c"] for c in range(num_classes)]
    return metrics


def test_metrics(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, triggered: np.ndarray, target: int,
                 num_classes: int, device: torch.device) -> dict[str, object]:
    """`attack_metrics` of a model on the clean test images and the same images triggered (none for a clean
    victim), with the ABL release's clean and backdoor test losses: `test_loss` (clean images, true labels) and
    `triggered_loss` (triggered images not of the target, against the target)."""
    clean, clean_losses = predict_with_loss(model, x, y, device)
    triggered_pred, to_target = predict_with_loss(model, triggered, np.full(len(triggered), target), device)
    others = y != target if len(triggered) else np.zeros(0, bool)
    return {**attack_metrics(y, clean, triggered_pred, target, num_classes), **mean_with_se("test_loss", clean_losses),
            **mean_with_se("triggered_loss", to_target[others])}


def evaluate_cohort(data_path: str, model_paths: list[str], log_paths: list[str], members: list[dict[str, Any]],
                    defence: dict[str, Any], out_dir: str) -> None:
    """Stage 5 for every victim of a cohort, the test set loaded once: clean accuracy, both ASRs and robust
    accuracy, what a test-time defence (`assess`) measures, with the run's description, to
    out_dir/<member name>.json. A member is {describe, trigger, trigger_net, name}; an input-aware attack's test
    images each get the trigger its generator draws for them."""
    ds = load_prepared(data_path)
    method, settings = plugins.settings("defence", defence)
    triggered_sets: dict[str, np.ndarray] = {}  # test set under each fixed trigger, made once
    with devices.acquire() as device:
        for model_path, log_path, member in zip(model_paths, log_paths, members, strict=True):
            describe, trigger, net = member["describe"], member["trigger"], member["trigger_net"]
            if plugins.method("attack", describe["method"]).trigger == "none":  # a clean victim: no attack rates
                test_triggered = ds.x_test[:0]
            elif net is None:
                key = json.dumps(trigger, sort_keys=True)
                if key not in triggered_sets:
                    triggered_sets[key] = load_trigger(trigger).apply(ds.x_test)
                test_triggered = triggered_sets[key]
            else:
                test_triggered = load_trigger(trigger, net, device).apply(ds.x_test)
            model, log = models.load_model(model_path), load_json(log_path)
            target, poison = int(describe["target"]), log["poison"]
            with models.non_finite_outputs_named(model_path, "no metric of it is recorded"):
                metrics = test_metrics(model, ds.x_test, ds.y_test, test_triggered, target, ds.num_classes, device)
                assessed = (method.assess(model, settings, ds.x_test, test_triggered[ds.y_test != target], device)
                            if method.assess is not None and len(test_triggered) else {})
            measured = {**log.get("defence", {}), **assessed}  # what the defence measured: epsilon, detection rates
            if clash := sorted(plugins.RESERVED_MEASURES.intersection(measured)):
                raise ValueError(f"{log_path}: defence '{method.name}' measured '{clash[0]}', a core metric's name; "
                                 "no metric of this victim is recorded")
            save_json(Path(out_dir) / f"{member['name']}.json", {
                **describe, "defence_method": method.name, **metrics,
                "model": log["arch"]["name"], "target_name": ds.classes[target],
                "trigger": trigger.get("pattern", describe["method"]),
                "amplitude": trigger.get("amplitude", 255) if trigger else None,
                "rate": Amount.parse(describe["amount"]).rate, "count": poison["count"],
                "fraction_of_class": poison["count"] / poison["class_size"],
                "fraction_of_train": poison["count"] / poison["train_size"],
                "train_seconds": log["seconds"], "device": log["device"], **log["fit"],
                **measured,
                **final_losses(log.get("loss_trace", [])),
            })


def evaluate_attacker(data_path: str, model_path: str, trigger_path: str, log_path: str, describe: dict[str, Any],
                      out: str) -> None:
    """An input-aware attack's own classifier scored as a victim's row (`describe` names its dataset, attack, recipe,
    target and seed; no defence; amount n0: no fixed poison set, the attacker poisons each batch as it trains): its
    rates and losses on the test set, each image triggered by the trigger drawn for it, and its cross-trigger
    accuracy (an image carrying another image's trigger should keep its label)."""
    ds = load_prepared(data_path)
    target, log = int(describe["target"]), load_json(log_path)
    with devices.acquire() as device:
        model, trigger = models.load_model(model_path), DynamicTrigger.load(trigger_path).to(device)
        with models.non_finite_outputs_named(model_path, "no metric of it is recorded"):
            metrics = test_metrics(model, ds.x_test, ds.y_test, trigger.apply(ds.x_test), target, ds.num_classes,
                                   device)
            cross = cross_accuracy(model, trigger, ds.x_test, ds.y_test, device)
    save_json(out, {**describe, "defence": "none", "defence_method": "none", "amount": CLEAN_AMOUNT, **metrics,
                    "cross_trigger_accuracy": cross, "model": log["arch"]["name"], "target_name": ds.classes[target],
                    "trigger": describe["method"], "train_seconds": log["seconds"], "device": log["device"]})


def final_losses(trace: list[dict[str, Any]]) -> dict[str, float]:
    """The median training loss of each traced group (poisoned, poisoned_without_trigger, all) at the end of
    training (thesis Figure 4-1), as `final_loss_<group>` with its standard error `final_loss_<group>_se`; nothing
    when the recipe traced no losses."""
    if not trace:
        return {}
    return {f"final_loss_{group}{part}": q[f"median{part}"] for group, q in trace[-1].items() if group != "step"
            for part in ("", "_se")}
