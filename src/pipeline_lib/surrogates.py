"""Surrogate models the attacker (or the data filter) trains: standard, PGD-adversarially trained, black-box."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import devices, models
from .accel import Accel
from .adversarial import pgd_adversary
from .artifacts import save_json
from .data import load_prepared
from .models import predict, to_float
from .train import Recipe, train

DEFAULT_ROBUST_EVAL = {"norm": "linf", "eps": 8, "step": 2, "steps": 10, "random_start": True}  # Madry et al.'s CIFAR-10 threat model


def robust_accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, spec: dict[str, Any],
                    device: torch.device) -> float:
    """Accuracy under the PGD attack of the spec."""
    attack = pgd_adversary(spec)
    model.eval().to(device)
    correct = 0
    for i in range(0, len(x), 500):
        xb = to_float(torch.from_numpy(x[i:i + 500])).to(device)
        yb = torch.from_numpy(y[i:i + 500]).to(device)
        x_adv = attack(model, xb, yb)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


def split_of(ds: Any, split: str, size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, eval x, eval y): the surrogate's training split (optionally subsampled) and the other."""
    x, y, x_ev, y_ev = ((ds.x_train, ds.y_train, ds.x_test, ds.y_test) if split == "train"
                        else (ds.x_test, ds.y_test, ds.x_train, ds.y_train))
    if size is not None:
        if size > len(y):
            raise ValueError(f"surrogate size {size} exceeds the {len(y)} images of the '{split}' split")
        keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:size])
        x, y = x[keep], y[keep]
    return x, y, x_ev, y_ev


def train_surrogate(data_path: str, spec: dict[str, Any], recipe: dict[str, Any], seed: int, model_out: str,
                    metrics_out: str, threads: int, eval_images: int = 1000,
                    gpu: dict[str, bool] | None = None) -> None:
    """Stage 1: train a surrogate; record its clean and PGD-robust accuracy on the other split (`gpu`: the config's
    GPU speed options)."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    x, y, x_ev, y_ev = split_of(ds, spec.get("split", "train"), spec.get("size"), seed)
    adversarial = spec.get("adversarial")
    robust_spec = spec.get("robust_eval") or adversarial or DEFAULT_ROBUST_EVAL
    pick = np.random.default_rng(seed).permutation(len(y_ev))[:eval_images]
    with devices.acquire() as device:
        model, info = train(x, y, ds.num_classes, Recipe.from_config(recipe), seed, device,
                            adversary=pgd_adversary(adversarial, seed) if adversarial else None,
                            accel=Accel(**gpu or {}))
        with models.non_finite_outputs_named(model_out, "training diverged, nothing saved"):
            clean = float(np.mean(predict(model, x_ev, device) == y_ev))
        robust = robust_accuracy(model, x_ev[pick], y_ev[pick], robust_spec, device)
    models.save_weights(model_out, info["arch"], model.cpu())
    save_json(metrics_out, {"clean_accuracy": clean, "robust_accuracy": robust, "robust_eval": robust_spec,
                            "adversarial": adversarial, "train_images": len(y), "eval_images": len(y_ev),
                            "robust_eval_images": len(pick), **{k: info[k] for k in ("device", "seconds", "epochs")}})
