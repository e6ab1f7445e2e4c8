"""Cohort benchmark: victims per hour when M victims train as one stacked network, M = 1, 4, 16, 64.

    python bench/bench_cohort.py                    # thesis ResNet on the CIFAR-10 subset and the digits CNN
    python bench/bench_cohort.py --sizes 1 16 --steps 20 --repeats 1 --case digits

Each row trains M BadNets victims (targets 0..9, then further seeds' poison sets) for a few steps and times the
steady-state step; a victim's cost is then (job start-up + its recipe's steps x step time) / M, where job
start-up is measured by starting a fresh process that imports torch and the library and loads the data.
The ratio is against M = 1 (today's one victim per job). Runs on a leased GPU when there is one.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline_lib import devices
from pipeline_lib.config import read_config
from pipeline_lib.poisons import poison
from pipeline_lib.data import Dataset, load_source
from pipeline_lib.layout import Amount
from pipeline_lib.stacking import train_stacked
from pipeline_lib.train import Recipe
from pipeline_lib.triggers import make_trigger

ROOT = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = ROOT.parent / "shared/data/cifar10_subset.npz"
# (label, data source, config file, recipe): the recipes the full reproduction and the demo train most
CASES = [("thesis ResNet, CIFAR-10 subset", f"npz:{CIFAR_SUBSET}", "config.yaml", "thesis_resnet"),
         ("digits CNN, digits", "digits", "config/demo.yaml", "digits_cnn")]


def startup_seconds(source: str) -> float:
    """Wall time of a fresh process that imports what a training job imports and loads the data."""
    code = f"import torch, pipeline_lib.victims; from pipeline_lib.data import load_source; load_source({source!r}, '.')"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def step_seconds(ds: Dataset, recipe: Recipe, size: int, steps: int, device: torch.device, repeats: int) -> float:
    """Seconds per training step of a stacked cohort of `size` victims: the best of `repeats` runs of 1 + steps
    steps less the best of `repeats` runs of 1 step (set-up cancels), after one warm-up run."""
    trigger = make_trigger(pattern="bottom_right", amplitude=255)
    sets = [poison("badnets", ds.x_train, ds.y_train, m % 10, Amount(count=50), trigger, m // 10)
            for m in range(size)]
    spe = len(ds.y_train) // recipe.batch_size

    def run(n: int) -> float:
        short = Recipe(**{**recipe.__dict__, "epochs": (n - 0.5) / spe})
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the leased GPU, not the default one
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the training's progress lines
            train_stacked(ds.x_train, ds.y_train, sets, ds.num_classes, short, 0, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run(2)  # warm-up: kernels, allocator, cuDNN autotuning
    return max(min(run(1 + steps) for _ in range(repeats)) - min(run(1) for _ in range(repeats)), 0) / steps


def main() -> None:
    """One table per case: seconds per step, seconds per victim and victims per hour at each cohort size."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--steps", type=int, default=4, help="timed steps per cohort size")
    p.add_argument("--repeats", type=int, default=3, help="runs per timing, the fastest kept")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--case", default="", help="run only the cases whose label contains this text")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with devices.acquire() as device:
        print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                      f" ({args.threads} threads)"))
        for label, source, file, name in (c for c in CASES if args.case in c[0]):
            if source.startswith("npz:") and not Path(source[4:]).is_file():
                print(f"\n{label}: skipped, {source[4:]} not found")
                continue
            recipe = Recipe.from_config(read_config(ROOT / file, ROOT)["recipes"][name])
            ds = load_source(source, ROOT / "data")
            startup = startup_seconds(source)
            total_steps = math.ceil(recipe.epochs * (len(ds.y_train) // recipe.batch_size))
            print(f"\n{label}: {file}:{name}, {total_steps} steps of batch {recipe.batch_size} per victim on "
                  f"{len(ds.y_train)} images; job start-up {startup:.1f} s")
            print(f"{'cohort':>6} {'s/step':>8} {'s/victim':>9} {'victims/h':>10} {'ratio':>6}")
            base = None
            for size in args.sizes:
                per_step = step_seconds(ds, recipe, size, args.steps, device, args.repeats)
                per_victim = (startup + total_steps * per_step) / size
                base = base or per_victim
                print(f"{size:>6} {per_step:>8.4f} {per_victim:>9.2f} {3600 / per_victim:>10.1f} "
                      f"{base / per_victim:>6.2f}")


if __name__ == "__main__":
    main()
