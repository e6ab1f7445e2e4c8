"""Defence benchmark: seconds and training images per second of one victim of the thesis ResNet (or any model)
trained plainly, with PGD adversarial training and with DP-SGD through opacus (per-sample gradients of the last
three layers of a 'pretrained' model, and of the whole model with group norms), on the CIFAR-10 subset when
present, else on random 32x32 images.

    python bench/bench_defences.py                       # 1024 images, one epoch / 2 lots each
    python bench/bench_defences.py --images 5000 --pgd-steps 7 --lots 10

Runs on a leased GPU when there is one.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_perturb import images  # the same data as the perturbation benchmark

from pipeline_lib import devices, models
from pipeline_lib import plugins
from pipeline_lib.plugins import Job
from pipeline_lib.train import Recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--model", default="thesis_resnet")
    ap.add_argument("--pgd-steps", type=int, default=7)
    ap.add_argument("--lots", type=int, default=2, help="DP-SGD steps of lot size images/2")
    args = ap.parse_args()
    x, y = images(args.images)
    recipe = Recipe(model=args.model, epochs=1, batch_size=128, lr=0.1, model_options={"norm": "per_image"})
    lot = args.images // 2
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "lot_size": lot, "steps": args.lots, "lr": 0.1,
          "physical_batch": 256, "delta": 1e-5, "trainable_layers": 3}  # the thesis's, as config blocks
    with tempfile.TemporaryDirectory() as tmp, devices.acquire() as device:
        pretrained = Path(tmp) / "pretrained.pt"
        arch = {"name": args.model, "in_channels": 3, "num_classes": 20, "norm": "per_image"}
        models.save_weights(pretrained, arch, models.build(arch))
        runs = {
            "plain (1 epoch)": ("none", {}, None, args.images),
            f"adversarial, {args.pgd_steps}-step PGD (1 epoch)": (
                "adv_training", {"norm": "linf", "eps": 8, "steps": args.pgd_steps}, None, args.images),
            f"DP-SGD last 3 layers ({args.lots} lots of {lot})": ("dp_sgd", dp, str(pretrained), args.lots * lot),
            f"DP-SGD whole model, group norms ({args.lots} lots)": ("dp_sgd", dp, None, args.lots * lot),
        }
        print(f"device {device}, model {args.model}, {args.images} images")
        for name, (method, spec, public, seen) in runs.items():
            defence, config = plugins.settings("defence", {"method": method, **spec})
            t0 = time.perf_counter()
            defence.fit(Job(x, y, 10, recipe, 0, device, np.zeros(len(y), bool), public), config)
            if device.type == "cuda":
                torch.cuda.synchronize()
            s = time.perf_counter() - t0
            print(f"{name:55s} {s:8.1f} s {seen / s:9.1f} images/s")


if __name__ == "__main__":
    main()
