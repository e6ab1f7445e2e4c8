"""STRIP (Gao et al., ACSAC 2019; garrisongys/STRIP): a test-time input detector. Each input is superimposed on N
clean images (a plain sum of [0, 1] images, unclipped, as the authors' cv2.addWeighted(x, 1, overlay, 1, 0)); a
triggered input keeps its prediction whatever it is mixed with, so the mean entropy (base 2) of the N predictions
is low. The entropy threshold is the 1% quantile of a normal fitted to clean inputs' entropies (the authors'
preset false rejection rate); inputs at or below it are rejected. The victim is the undefended model, unchanged.

Measured on the test set, split by a seeded permutation into overlay images, clean inputs the threshold is fitted
on, and held-out clean inputs: the false rejection rate on the held-out clean inputs, the false acceptance rate on
triggered test images of the other classes, and the AUROC of the entropy between the two."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..blocks import key
from ..plugins import Defence, Job
from . import Trained

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Config:
    """STRIP's keys: the authors' N and false rejection rate."""

    overlays: int = key(100, "clean images each input is superimposed on (the authors' N)", minimum=2,
                       maximum=10_000)  # 100 times the authors' N; each input's overlays are one forward pass
    frr: float = key(0.01, "preset false rejection rate: the threshold's quantile of the clean entropies' normal",
                     exclusiveMinimum=0, exclusiveMaximum=0.5)
    inputs: int = key(2000, "at most this many inputs of each kind scored (the authors fit on 2000)", minimum=10)
    seed: int = key(0, "the split of the test set and the overlay draws", minimum=0, maximum=2 ** 32 - 1)


# superimposed images a forward pass: on a GPU as many as models.batched takes; on a CPU fewer, as its caches hold
# (500 images of 32x32 ran 1.2-1.5x slower per image than 250, 1000 2-2.5x)
PASS_IMAGES = {"cpu": 250, "gpu": 1000}


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each row of class probabilities (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(probs * np.log2(probs), axis=-1)


def strip_entropy(model: torch.nn.Module, x: np.ndarray, pool: np.ndarray, n: int, seed: int,
                  device: torch.device) -> np.ndarray:
    """Each uint8 input's mean prediction entropy over n superimpositions with images drawn from `pool`: those of
    whole inputs, about PASS_IMAGES, a forward pass; the probabilities come to the host once."""
    import torch

    from ..models import NonFiniteOutputs, to_float

    model.eval().to(device)
    pool_t, x_t = to_float(torch.from_numpy(pool).to(device)), torch.from_numpy(x).to(device)
    # every input's draws at once: numpy's bounded integers come out as they did drawn input by input
    picks = torch.from_numpy(np.random.default_rng(seed).integers(0, len(pool), (len(x), n))).to(device)
    per, probs = max(1, PASS_IMAGES["cpu" if device.type == "cpu" else "gpu"] // n), []   # inputs a forward pass
    with torch.no_grad():
        for i in range(0, len(x), per):
            # the overlays plus their inputs, in place: the memory layout the per-input batches had (a grey batch
            # whose channel stride differs takes another convolution kernel, which rounds otherwise)
            mixed = pool_t[picks[i:i + per].flatten()]
            mixed.view(-1, n, *mixed.shape[1:]).add_(to_float(x_t[i:i + per])[:, None])
            probs.append(torch.softmax(model(mixed).float(), 1))
    if not probs:
        return np.empty(0)
    mixed_probs = torch.cat(probs).view(len(x), n, -1).cpu().numpy()
    if not np.isfinite(mixed_probs).all():  # nansum would read NaN probabilities as certainty: a perfect detector
        raise NonFiniteOutputs("the model's outputs hold NaN or infinite values on superimposed images")
    # the entropy on the host, by numpy, as before: numpy's log2 and its pairwise sums are not torch's
    return entropy(mixed_probs).mean(1).astype(np.float64)


def strip_rates(clean_fit: np.ndarray, clean_held: np.ndarray, triggered: np.ndarray,
                frr: float) -> dict[str, float]:
    """The threshold at `frr` of the normal fitted to clean_fit; FRR on clean_held, FAR on triggered, AUROC."""
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    threshold = float(norm.ppf(frr, *norm.fit(clean_fit)))
    scores = -np.concatenate([clean_held, triggered])   # low entropy = triggered
    truth = np.r_[np.zeros(len(clean_held)), np.ones(len(triggered))]
    rejected, accepted = clean_held <= threshold, triggered > threshold
    return {"strip_threshold": threshold, "strip_frr": float(rejected.mean()), "strip_far": float(accepted.mean()),
            "strip_auroc": float(roc_auc_score(truth, scores)),
            # the inputs each rate was measured on (the scorecard's intervals)
            "strip_frr_hits": int(rejected.sum()), "strip_frr_n": len(rejected),
            "strip_far_hits": int(accepted.sum()), "strip_far_n": len(accepted)}


def assess(model: torch.nn.Module, config: Config, x_test: np.ndarray, x_triggered: np.ndarray,
           device: torch.device) -> dict[str, float]:
    """STRIP's rates on the test set (its clean images split three ways) and on the triggered test images."""
    order = np.random.default_rng(config.seed).permutation(len(x_test))
    pool, fit_idx, held = np.array_split(order, 3)
    k = config.inputs
    pick = np.random.default_rng(config.seed + 1).permutation(len(x_triggered))[:k]
    score = lambda x, s: strip_entropy(model, x, x_test[pool], config.overlays, config.seed + s, device)  # noqa: E731
    return strip_rates(score(x_test[fit_idx[:k]], 2), score(x_test[held[:k]], 3), score(x_triggered[pick], 4),
                       config.frr)


def fit(job: Job, config: Config) -> Trained:
    """The undefended victim, unchanged: STRIP acts on inputs at test time."""
    from .. import models

    t0 = time.perf_counter()
    return models.load_model(job.base), {"arch": models.load_weights(job.base)[0], "device": "cpu",
                                          "seconds": time.perf_counter() - t0, "epochs": []}


METHODS = [Defence(name="strip", summary="STRIP (Gao et al. 2019): test-time detection by superimposition entropy",
                   config=Config, fit=fit, assess=assess, needs_base=True,
                   measures=("strip_threshold", "strip_frr", "strip_far", "strip_auroc", "strip_frr_hits",
                             "strip_frr_n", "strip_far_hits", "strip_far_n"))]
