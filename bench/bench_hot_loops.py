"""Hot-loop benchmark (issue 29): milliseconds per step of each loop moved onto the device without a per-step host
sync, as it ran before and as it runs now, and their ratio: DP-SGD's lots, Neural Cleanse's trigger reversal,
STRIP's superimpositions, ANP's mask steps and the input-aware trigger. On the CIFAR-10 subset when present, else
on random 32x32 images; random weights (the cost does not depend on what a network learned).

    python bench/bench_hot_loops.py          # about a minute on 2 CPU cores

The loops as they were are kept here, verbatim but for names and docstrings: tests/test_hot_loops.py checks that
the new ones give their numbers. Runs on a leased GPU when there is one.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from bench_perturb import images  # the same data as the other benchmarks
from torch import nn

from pipeline_lib import devices, models
from pipeline_lib.defences.anp import PASS, Config as AnpConfig, MaskedNorms, optimise_masks
from pipeline_lib.defences.neural_cleanse import EPS, Config as NcConfig, reverse_trigger, stamp
from pipeline_lib.defences.strip import entropy, strip_entropy
from pipeline_lib.models import batched, to_float
from pipeline_lib.privacy import lots
from pipeline_lib.train import Steps
from pipeline_lib.trigger_nets import DynamicTrigger, TriggerNet, apply_trigger


def old_lots(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless fixed-size lots from a reshuffled training set (the last partial lot of each pass dropped)."""
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def old_reverse_trigger(model: torch.nn.Module, x: torch.Tensor, label: int, c: NcConfig,
                        gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """Neural Cleanse's reversal as it was: the hits read to the host after every step."""
    def to_tanh(u: torch.Tensor) -> torch.Tensor:   # the authors' arctanh((v - 0.5) (2 - eps))
        return torch.atanh((u - 0.5) * (2 - EPS))
    _, ch, h, w = x.shape
    mask_t = to_tanh(torch.rand(1, 1, h, w, generator=gen, device=x.device)).requires_grad_(True)
    pattern_t = to_tanh(torch.rand(1, ch, h, w, generator=gen, device=x.device)).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pattern_t], lr=c.lr, betas=(0.5, 0.9))
    target = torch.full((c.batch_size,), label, device=x.device)
    cost, cost_set, up, down = 0.0, 0, 0, 0
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(c.epochs):
        order = torch.randperm(len(x), generator=gen, device=x.device)
        hits, seen = 0, 0
        for i in range(0, len(x), c.batch_size):
            xb = x[order[i:i + c.batch_size]]
            mask = torch.tanh(mask_t) / (2 - EPS) + 0.5
            pattern = torch.tanh(pattern_t) / (2 - EPS) + 0.5
            out = model(stamp(xb, mask, pattern))
            loss = torch.nn.functional.cross_entropy(out, target[:len(xb)]) + cost * mask.abs().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hits += int((out.argmax(1) == label).sum())
            seen += len(xb)
        with torch.no_grad():
            mask = torch.tanh(mask_t) / (2 - EPS) + 0.5
            pattern = torch.tanh(pattern_t) / (2 - EPS) + 0.5
        reached = hits / seen >= c.success
        if reached and (best is None or float(mask.sum()) < best[2]):
            best = (mask.clone(), pattern.clone(), float(mask.sum()))
        if cost == 0 and reached:                 # the authors' schedule, counter for counter
            cost_set += 1
            if cost_set >= c.patience:
                cost, up, down = c.init_cost, 0, 0
        else:
            cost_set = 0
        up, down = (up + 1, 0) if reached else (0, down + 1)
        if up >= c.patience:
            up, cost = 0, cost * 2
        elif down >= c.patience:
            down, cost = 0, cost / 2 ** 1.5
    if best is None:
        return mask, pattern, float(mask.sum()), False
    return (*best, True)


def old_strip_entropy(model: torch.nn.Module, x: np.ndarray, pool: np.ndarray, n: int, seed: int,
                      device: torch.device) -> np.ndarray:
    """STRIP's entropies as they were: one input a forward pass, its entropies copied to the host each."""
    rng = np.random.default_rng(seed)
    model.eval().to(device)
    pool_t = to_float(torch.from_numpy(pool)).to(device)
    out = np.empty(len(x))
    with torch.no_grad():
        for i in range(len(x)):
            overlay = pool_t[torch.from_numpy(rng.integers(0, len(pool), n)).to(device)]
            mixed = to_float(torch.from_numpy(x[i:i + 1])).to(device) + overlay
            out[i] = entropy(torch.softmax(model(mixed).float(), 1).cpu().numpy()).mean()
    return out


def old_optimise_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: AnpConfig, augment: object,
                       gen: torch.Generator) -> MaskedNorms:
    """ANP's mask optimisation as it was: every step's loss read to the host."""
    from torch.nn.functional import cross_entropy

    masked = MaskedNorms(model.train().requires_grad_(False))
    mask_opt = torch.optim.SGD(masked.masks, lr=c.lr, momentum=0.9)
    noise_opt = torch.optim.SGD(masked.noise, lr=max(c.eps, 1e-12))

    def step() -> float:
        idx = torch.randint(len(y), (c.batch_size,), generator=gen, device=y.device)
        xb, yb = augment(x[idx]), y[idx]
        robust = torch.zeros((), device=y.device)
        if c.eps > 0:   # one signed ascent step on the perturbation from a random start
            masked.redraw(c.eps, gen)
            noise_opt.zero_grad(set_to_none=True)
            (-cross_entropy(masked(xb, True), yb)).backward()
            for n in masked.noise:
                if n.grad is not None:   # a batch norm the forward pass never reached has none
                    n.grad = n.grad.sign()
            noise_opt.step()
            robust = cross_entropy(masked(xb, True), yb)
        loss = c.alpha * cross_entropy(masked(xb, False), yb) + (1 - c.alpha) * robust
        mask_opt.zero_grad(set_to_none=True)
        loss.backward()
        mask_opt.step()
        with torch.no_grad():
            for m in masked.masks:
                m.clamp_(0, 1)
        return float(loss.detach())
    loop = Steps(c.iterations, "ANP masks")
    while loop.running:
        loop.end_pass([float(np.mean([step() for _ in loop.take(range(PASS))]))])
    return masked


def old_apply(trigger: DynamicTrigger, images: np.ndarray) -> np.ndarray:
    """DynamicTrigger.apply as it was: the networks run where the images are, on the host."""
    with torch.no_grad():
        x = batched(lambda xb, src: apply_trigger(trigger.g, trigger.m, xb, source=to_float(src)), images, images)
        return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of fn(), the device synchronised at the end; its progress lines kept out of the table."""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def old_and_new(old: Callable[[], object], new: Callable[[], object], steps: int, device: torch.device,
                repeats: int = 3) -> tuple[float, float]:
    """Milliseconds per step of old() and new() (each running `steps` of them): the best of `repeats` runs each,
    taken in turn (a busy spell of the machine then slows both) after a warm-up run each."""
    runs = [[timed(fn, device) for fn in (old, new)] for _ in range(repeats + 1)][1:]
    best_old, best_new = (min(times) * 1000 / steps for times in zip(*runs))
    return best_old, best_new


def main() -> None:
    """Print a line per loop: the unit, old and new milliseconds per unit, and old / new."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = images(10000)
    cnn = {"name": "small_cnn", "in_channels": 3, "num_classes": 10, "width": 16}
    torch.manual_seed(0)
    with devices.acquire() as device:
        print(f"device: {device}, {args.threads} threads, {len(x)} images of {x.shape[1:]}")
        print(f"{'loop':22s} {'unit':22s} {'old ms':>9s} {'new ms':>9s} {'old/new':>8s}")

        def row(loop: str, unit: str, old: Callable[[], object], new: Callable[[], object], steps: int) -> None:
            old_ms, new_ms = old_and_new(old, new, steps, device)
            print(f"{loop:22s} {unit:22s} {old_ms:9.2f} {new_ms:9.2f} {old_ms / new_ms:8.2f}", flush=True)

        lot, count = 2000, 15
        xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        row("DP-SGD lots", f"lot of {lot}",
            lambda: [(to_float(xb.to(device)), yb.to(device)) for _, (xb, yb) in zip(range(count),
                                                                                     old_lots(x, y, lot, 0))],
            lambda: [(to_float(xs[i]), ys[i]) for _, i in zip(range(count), lots(len(y), lot, 0, device))], count)

        model = models.build(cnn).to(device).eval().requires_grad_(False)
        xf = to_float(xs[:320])
        nc = NcConfig(epochs=3)
        row("Neural Cleanse", f"step of {nc.batch_size}",
            lambda: old_reverse_trigger(model, xf, 0, nc, torch.Generator(device).manual_seed(0)),
            lambda: reverse_trigger(model, xf, 0, nc, torch.Generator(device).manual_seed(0)),
            nc.epochs * len(xf) // nc.batch_size)

        n, inputs = 100, 100
        row("STRIP", f"input x {n} overlays", lambda: old_strip_entropy(model, x[:inputs], x[-1000:], n, 0, device),
            lambda: strip_entropy(model, x[:inputs], x[-1000:], n, 0, device), inputs)

        anp = AnpConfig(iterations=PASS)

        def masks(optimise: Callable[..., MaskedNorms]) -> MaskedNorms:
            return optimise(models.build(cnn).to(device), xf, ys[:320], anp, lambda b: b,
                            torch.Generator(device).manual_seed(0))
        row("ANP", f"step of {anp.batch_size}", lambda: masks(old_optimise_masks), lambda: masks(optimise_masks),
            anp.iterations)

        # the old trigger's networks stay on the host, whatever the job's device
        old, new = (DynamicTrigger(TriggerNet(3, 3, 16, 2), TriggerNet(3, 1, 16, 2)) for _ in range(2))
        row("input-aware trigger", "image", lambda: old_apply(old, x[:500]), lambda: new.to(device).apply(x[:500]),
            500)


if __name__ == "__main__":
    main()
