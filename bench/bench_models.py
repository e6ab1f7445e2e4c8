"""Victim-training benchmark: seconds, images per second and test accuracy per recipe, side by side.

    python bench/bench_models.py                       # thesis ResNet (20 epochs) vs fast net on the CIFAR subset
    python bench/bench_models.py --data digits config/demo.yaml:digits_cnn
    python bench/bench_models.py --epochs thesis_resnet=100 config.yaml:thesis_resnet config.yaml:fast
    python bench/bench_models.py config.yaml:thesis_resnet@resnet18 config.yaml:thesis_resnet@mobilenet_v2

A recipe is FILE:NAME (a `recipes` entry of a config file), or FILE:NAME@MODEL for that recipe's schedule with
another registered model at its default options. `--epochs NAME=N` shortens or lengthens a recipe, scaling its
step-schedule milestones with it. Runs on a leased GPU when there is one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline_lib import devices
from pipeline_lib.config import read_config
from pipeline_lib.data import load_source
from pipeline_lib.models import predict
from pipeline_lib.train import Recipe, train

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = ROOT.parent / "shared/data/cifar10_subset.npz"
DEFAULT_RECIPES = ["config.yaml:thesis_resnet", "config/shared_subsets.yaml:fast"]
DEFAULT_EPOCHS = ["thesis_resnet=20"]  # the full 100 epochs take about 40 minutes on 2 CPU cores


def load_recipe(spec: str, epochs: dict[str, float]) -> tuple[str, Recipe]:
    """FILE:NAME[@MODEL] -> (NAME, Recipe), with an optional epoch override that rescales milestones."""
    file, rest = spec.rsplit(":", 1)
    name, _, model = rest.partition("@")
    block = dict(read_config(ROOT / file, ROOT)["recipes"][name])
    if model:
        block.update(model=model, model_options={})
    if name in epochs:
        scale = epochs[name] / block["epochs"]
        block["epochs"] = epochs[name]
        block["milestones"] = [m * scale for m in block.get("milestones", [])]
    return name, Recipe.from_config(block)


def main() -> None:
    """Train each recipe once on the same data and print one row per recipe."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="*", default=DEFAULT_RECIPES)
    p.add_argument("--data", default=f"npz:{CIFAR_SUBSET}" if CIFAR_SUBSET.is_file() else "digits",
                   help="dataset source: a registry name or npz:<path>")
    p.add_argument("--epochs", action="append", default=None, metavar="NAME=N")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    epochs = {k: float(v) for k, v in (e.split("=") for e in (args.epochs or DEFAULT_EPOCHS))}
    torch.set_num_threads(args.threads)
    ds = load_source(args.data, ROOT / "data/torchvision")
    print(f"data {args.data}: {len(ds.x_train)} train / {len(ds.x_test)} test images {ds.x_train.shape[1:]}")
    print(f"{'recipe':<16}{'model':<15}{'epochs':>7}{'seconds':>10}{'images/s':>10}{'test acc':>10}  device")
    for spec in args.recipes:
        name, recipe = load_recipe(spec, epochs)
        with devices.acquire() as device:
            model, info = train(ds.x_train, ds.y_train, ds.num_classes, recipe, args.seed, device)
            acc = float(np.mean(predict(model, ds.x_test, device) == ds.y_test))
        print(f"{name:<16}{recipe.model:<15}{recipe.epochs:>7g}{info['seconds']:>10.1f}"
              f"{info['images_per_second']:>10.0f}{100 * acc:>9.2f}%  {info['device']}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
