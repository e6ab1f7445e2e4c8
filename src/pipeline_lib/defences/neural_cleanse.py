"""Neural Cleanse (Wang et al., S&P 2019; bolunwang/backdoor): for every label, reverse-engineer the smallest
trigger (a mask m and a pattern p, x' = (1 - m) x + m p) that sends the defender's clean images to it; a label
whose mask's L1 norm is an outlier below the median (MAD anomaly index > 2) is flagged as a backdoor target. The
victim is then unlearned (BackdoorBench's procedure; the authors release none): a random 20% of the clean share
carries the flagged labels' reversed triggers (shared out in turn) with their true labels, and the model is
fine-tuned on the share. No label flagged: the undefended victim is kept. `nc_names_target` is 1 when the most
anomalous label is flagged and is the attack's target (scored against the label the poisoned examples carry).

The optimisation follows the authors' visualizer: mask and pattern drawn uniform in [0, 1] and optimised in tanh
space, Adam (lr 0.1, betas 0.5 / 0.9), the L1 cost starting at 0, set to 1e-3 once the reversed trigger has
reached the success threshold for `patience` epochs, then doubled after `patience` successful epochs and divided
by 2^1.5 after `patience` failing ones; the smallest-norm mask that reached the threshold is kept. A label none
of whose masks reached it keeps its last mask's norm and is counted (`nc_unreached`). Epochs are BackdoorBench's
(80 over a 5% clean share); the authors' early stop is left out."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..blocks import MAX_BATCH, key
from ..plugins import Defence, Job
from . import Trained, clean_share

if TYPE_CHECKING:
    import torch

EPS = 1e-7  # keeps tanh-space values finite (the authors' epsilon)


@dataclass(frozen=True)
class Config:
    """The authors' optimisation settings, BackdoorBench's clean share, epochs and unlearning."""

    clean_ratio: float = key(0.05, "the defender's clean share of the training set", exclusiveMinimum=0, maximum=1)
    epochs: int = key(80, "passes over the clean share per label", minimum=1)
    batch_size: int = key(32, "images per optimisation step", minimum=1, maximum=MAX_BATCH)
    lr: float = key(0.1, "Adam's learning rate for mask and pattern", exclusiveMinimum=0)
    init_cost: float = key(1e-3, "the L1 cost once the trigger first succeeds", exclusiveMinimum=0)
    success: float = key(0.99, "attack success rate a reversed trigger must reach", exclusiveMinimum=0, maximum=1)
    patience: int = key(5, "epochs before the cost is set, raised or lowered", minimum=1)
    anomaly: float = key(2.0, "MAD anomaly index above which a label is flagged", exclusiveMinimum=0)
    unlearn_ratio: float = key(0.2, "share of the clean share stamped with the reversed trigger", minimum=0,
                               maximum=1)
    unlearn_epochs: float = key(100, "fine-tuning epochs over the clean share", minimum=0)
    unlearn_lr: float = key(0.01, "fine-tuning learning rate (constant; BackdoorBench anneals it on a cosine)",
                            exclusiveMinimum=0)


def anomaly_index(norms: np.ndarray) -> np.ndarray:
    """The authors' MAD outlier score of each label's mask norm: |norm - median| / (1.4826 MAD), 0 above the median
    (only small triggers are suspicious)."""
    median = np.median(norms)
    mad = 1.4826 * np.median(np.abs(norms - median))
    index = np.abs(norms - median) / max(mad, 1e-12)
    return np.where(norms > median, 0.0, index)


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Float images with the trigger: (1 - m) x + m p."""
    return (1 - mask) * x + mask * pattern


def reverse_trigger(model: torch.nn.Module, x: torch.Tensor, label: int, c: Config,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """The smallest-L1 mask (1, 1, H, W) and pattern (1, C, H, W) that send float images x to `label` at the success
    rate, the mask's L1 norm, and whether any mask reached the rate (if none did, the last one)."""
    import torch

    def to_tanh(u: torch.Tensor) -> torch.Tensor:   # the authors' arctanh((v - 0.5) (2 - eps))
        return torch.atanh((u - 0.5) * (2 - EPS))
    _, ch, h, w = x.shape
    mask_t = to_tanh(torch.rand(1, 1, h, w, generator=gen, device=x.device)).requires_grad_(True)
    pattern_t = to_tanh(torch.rand(1, ch, h, w, generator=gen, device=x.device)).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pattern_t], lr=c.lr, betas=(0.5, 0.9))
    target = torch.full((min(c.batch_size, len(x)),), label, device=x.device)
    cost, cost_set, up, down = 0.0, 0, 0, 0
    best: tuple[torch.Tensor, torch.Tensor, float] | None = None
    for _ in range(c.epochs):
        order = torch.randperm(len(x), generator=gen, device=x.device)
        hits = torch.zeros((), dtype=torch.int64, device=x.device)   # summed on the device: one read per epoch
        for i in range(0, len(x), c.batch_size):
            xb = x[order[i:i + c.batch_size]]
            mask = torch.tanh(mask_t) / (2 - EPS) + 0.5
            pattern = torch.tanh(pattern_t) / (2 - EPS) + 0.5
            out = model(stamp(xb, mask, pattern))
            loss = torch.nn.functional.cross_entropy(out, target[:len(xb)]) + cost * mask.abs().sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hits += (out.argmax(1) == label).sum()
        with torch.no_grad():
            mask = torch.tanh(mask_t) / (2 - EPS) + 0.5
            pattern = torch.tanh(pattern_t) / (2 - EPS) + 0.5
        reached = int(hits) / len(x) >= c.success
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


def fit(job: Job, config: Config) -> Trained:
    """Reverse a trigger per label, flag the outliers, unlearn the most anomalous one's trigger."""
    import torch

    from .. import models
    from ..models import to_float
    from ..train import seed_everything, train

    t0 = time.perf_counter()
    seed_everything(job.seed)
    model = models.load_model(job.base).to(job.device).eval().requires_grad_(False)
    x, y = clean_share(job, config.clean_ratio, job.seed)
    xf = to_float(torch.from_numpy(x)).to(job.device)
    gen = torch.Generator(device=job.device).manual_seed(job.seed)
    triggers = [reverse_trigger(model, xf, label, config, gen) for label in range(job.num_classes)]
    norms = np.array([t[2] for t in triggers])
    index = anomaly_index(norms)
    suspect, flagged = int(np.argmax(index)), np.flatnonzero(index > config.anomaly)
    poisoned_labels = job.y[job.poisoned]   # scoring only: the attack's target, where it relabelled to one
    target = int(np.bincount(poisoned_labels).argmax()) if len(poisoned_labels) else -1
    measured = {"nc_anomaly_index": float(index[suspect]), "nc_suspect": suspect, "nc_flagged": len(flagged),
                "nc_names_target": float(suspect == target and suspect in flagged),
                "nc_suspect_norm": float(norms[suspect]), "nc_median_norm": float(np.median(norms)),
                "nc_unreached": sum(not t[3] for t in triggers)}
    if not len(flagged):
        return model.cpu().requires_grad_(True), {"arch": models.load_weights(job.base)[0], "device": str(job.device),
                                                  "seconds": time.perf_counter() - t0, "epochs": [],
                                                  "defence": measured}
    pick = np.random.default_rng(job.seed).permutation(len(y))[:round(config.unlearn_ratio * len(y))]
    stamped = x.copy()
    with torch.no_grad():
        for k, label in enumerate(flagged):   # the flagged labels' triggers shared out over the picked images
            rows = pick[k::len(flagged)]
            mask, pattern = triggers[label][:2]
            marked = stamp(xf[rows], mask, pattern).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1)
            stamped[rows] = marked.cpu().numpy()
    recipe = dataclasses.replace(job.recipe, epochs=config.unlearn_epochs, lr=config.unlearn_lr, schedule="step",
                                 milestones=())
    model, trained = train(stamped, y, job.num_classes, recipe, job.seed, job.device,
                           init=model.cpu().requires_grad_(True), accel=job.accel)
    return model, {**trained, "seconds": time.perf_counter() - t0, "defence": measured}


METHODS = [Defence(name="neural_cleanse", summary="Neural Cleanse (Wang et al. 2019): reverse triggers, flag by MAD, "
                   "unlearn", config=Config, fit=fit, needs_base=True,
                   measures=("nc_anomaly_index", "nc_suspect", "nc_flagged", "nc_names_target", "nc_suspect_norm",
                             "nc_median_norm", "nc_unreached"))]
