"""Perturbation-stage benchmark: images per second of PGD poisons (per surrogate architecture and step
count) and of the GAN encoder, on the CIFAR-10 subset when present, else on random 32x32 images.

    python bench/bench_perturb.py                  # 500 images, 10-step l2 PGD, 100-step encoding
    python bench/bench_perturb.py --images 5000 --steps 100 --encode-steps 1000   # the thesis's settings

Weights are random: PGD and encoding cost does not depend on what the networks learned.
Runs on a leased GPU when there is one.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pipeline_lib import devices, models
from pipeline_lib.adversarial import pgd_adversary
from pipeline_lib.artifacts import load_npz
from pipeline_lib.gan import Generator, encode
from pipeline_lib.models import to_float

CIFAR_SUBSET = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10_subset.npz"
SURROGATES = {
    "thesis_resnet": {"name": "thesis_resnet", "norm": "per_image"},
    "airbench w64": {"name": "airbench", "norm": "channel", "width": 64},
    "vgg w64": {"name": "vgg", "norm": "per_image", "width": 64, "stages": [2, 2, 3]},
}


def images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n CIFAR-10 subset images and labels, or random ones of the same shape."""
    if CIFAR_SUBSET.is_file():
        z = load_npz(CIFAR_SUBSET, only=("x_train", "y_train"))
        return z["x_train"][:n], z["y_train"][:n]
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def timed(fn, device: torch.device) -> float:
    """Wall seconds of fn(), synchronising CUDA."""
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    """Print one line per (stage, network): images, seconds, images per second."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=10, help="PGD steps per image")
    ap.add_argument("--encode-steps", type=int, default=100, help="latent-search steps per image")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = images(args.images)
    attack = pgd_adversary({"norm": "l2", "eps": 300, "steps": args.steps})
    with devices.acquire() as device:
        print(f"device: {device}, {len(x)} images, PGD l2 eps 300 x {args.steps} steps, "
              f"encoder {args.encode_steps} steps")
        xs, ys = to_float(torch.from_numpy(x)).to(device), torch.from_numpy(y).to(device)
        for label, spec in SURROGATES.items():
            net = models.build({**spec, "in_channels": 3, "num_classes": 10}).to(device).eval()
            s = timed(lambda: [attack(net, xs[i:i + 500], ys[i:i + 500]) for i in range(0, len(xs), 500)], device)
            print(f"perturb_class  pgd/{label:14s} {s:8.1f} s {len(xs) / s:9.1f} images/s")
        g = Generator((3, 32, 32), latent=128, width=64).to(device)
        s = timed(lambda: encode(g, xs, args.encode_steps, 0.1, seed=0), device)
        print(f"encode_class   wgan/dcgan w64    {s:8.1f} s {len(xs) / s:9.1f} images/s")


if __name__ == "__main__":
    main()
