"""Defence registry: how a victim learns from a possibly poisoned training set.

none                   plain training under the recipe
adv_training           PGD adversarial training (Madry et al.; the 001 seed)
dp_sgd, frozen_sgd     the thesis's DP-SGD defence (5.2, 7.10) with opacus and its SGD baseline: a model
                       pretrained on public data, all but its last layers frozen, big-lot training
abl                    Anti-Backdoor Learning (Li et al. 2021; the 003 seed)
spectral, activation_clustering
                       data sanitisation (Tran et al. 2018; Chen et al. 2018): flag examples from the
                       representations of the undefended victim, drop them, retrain
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models
from .accel import TRAIN_DEFAULT, Accel
from .adversarial import pgd_adversary
from .models import batched, to_float
from .runlog import Progress
from .train import Recipe, Tracer, arch_of, augment, optimizer_for, seed_everything, train

# --------------------------------------------------------------------------- shared helpers


def detection(flagged: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """Precision and recall of flagged examples (boolean masks over the training set) as poison detectors."""
    hits = int((flagged & poisoned).sum())
    return {"flagged": int(flagged.sum()), "precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / max(int(poisoned.sum()), 1)}


def per_sample_loss(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> np.ndarray:
    """Cross-entropy of every example under a model in eval mode."""
    model.eval().to(device)
    return batched(lambda xb, yb: nn.functional.cross_entropy(model(xb).float(), yb, reduction="none"), x, y,
                   device=device).numpy()


def embeddings(model: models.Classifier, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Penultimate-layer activations of every example."""
    model.eval().to(device)
    return batched(lambda xb: model.embed(xb).float(), x, device=device).numpy()


# --------------------------------------------------------------------------- Anti-Backdoor Learning


def lga(loss: torch.Tensor, gamma: float) -> torch.Tensor:
    """ABL's local gradient ascent: descend while the batch loss is above gamma, ascend below it."""
    return torch.sign(loss - gamma) * loss


def isolate_lowest(losses: np.ndarray, ratio: float) -> np.ndarray:
    """Indices of the `ratio` share of examples with the lowest loss (at least one)."""
    return np.argsort(losses, kind="stable")[:max(1, int(len(losses) * ratio))]


# --------------------------------------------------------------------------- data sanitisation


def spectral_scores(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection on the top singular vector of each class's centred features."""
    scores = np.zeros(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        centred = features[idx] - features[idx].mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        scores[idx] = (centred @ vt[0]) ** 2
    return scores


def flag_spectral(scores: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """Flag the 1.5 * eps * n highest-scoring examples of every class (Tran et al., eps = assumed poison share)."""
    flagged = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx), round(1.5 * eps * len(idx)))
        flagged[idx[np.argsort(-scores[idx], kind="stable")[:k]]] = True
    return flagged


def flag_clusters(features: np.ndarray, labels: np.ndarray, components: int, max_size: float,
                  seed: int) -> np.ndarray:
    """Chen et al.'s activation clustering: per class, ICA to a few dimensions, 2-means, flag the smaller
    cluster when it holds at most `max_size` of the class."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA

    flagged = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < max(4, components):
            continue
        reduced = FastICA(n_components=components, random_state=seed, max_iter=1000,
                          whiten="unit-variance").fit_transform(features[idx])
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        small = int(np.bincount(assign, minlength=2).argmin())
        if (assign == small).mean() <= max_size:
            flagged[idx[assign == small]] = True
    return flagged


# --------------------------------------------------------------------------- DP-SGD and its SGD baseline


def freeze_all_but_last(model: models.Classifier, trainable: int) -> list[nn.Parameter]:
    """Freeze every parameter except those of the last `trainable` convolution/linear layers (their biases
    included); batch norms stay frozen. Returns the parameters left to train."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in layers[-trainable:] for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def from_pretrained(path: str, num_classes: int, seed: int) -> models.Classifier:
    """A pretrained model with a fresh classifier for this task's classes."""
    model = models.load_model(path)
    if model.classifier.out_features != num_classes:
        torch.manual_seed(seed)
        model.classifier = nn.Linear(model.classifier.in_features, num_classes,
                                     bias=model.classifier.bias is not None)
    return model


def frozen_batch_norms(model: nn.Module) -> nn.Module:
    """Training mode (opacus records per-sample gradients only then) with every batch norm in eval mode."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def microbatch_count(spec: dict[str, Any]) -> int:
    """Microbatches per lot: the spec's `microbatches`, else one per example (opacus's per-example clipping)."""
    return spec.get("microbatches") or spec["lot_size"]


def clipped_microbatch_sum(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor,
                           microbatches: int, bound: float) -> list[torch.Tensor]:
    """TF Privacy's DP query on one lot (or a whole number of its microbatches): the lot is cut into contiguous
    microbatches, each microbatch's mean-loss gradient over all `params` is scaled to l2 norm at most `bound`
    (clip_by_global_norm), and the clipped gradients are summed."""
    losses = nn.functional.cross_entropy(model(x), y, reduction="none").view(microbatches, -1).mean(1)
    total = [torch.zeros_like(p) for p in params]
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, params, retain_graph=i + 1 < microbatches)
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = bound / torch.clamp(norm, min=bound)
        for t, g in zip(total, grads):
            t.add_(g * scale)
    return total


def noised_mean(total: list[torch.Tensor], microbatches: int, std: float, gen: torch.Generator) -> list[torch.Tensor]:
    """Gaussian noise of `std` added to a sum of clipped gradients, then divided by the microbatches (TF Privacy's
    GaussianSumQuery followed by DPOptimizer's normalisation)."""
    return [(t + torch.randn(t.shape, generator=gen, device=t.device) * std) / microbatches for t in total]


def lots(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless fixed-size lots from a reshuffled training set (the last partial lot of each pass dropped)."""
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def _frozen_model(x: np.ndarray, recipe: Recipe, spec: dict[str, Any], seed: int, device: torch.device,
                  pretrained: str | None, num_classes: int) -> tuple[nn.Module, dict[str, Any], list[nn.Parameter]]:
    """The model DP-SGD and its baseline train: the pretrained one with all but its last layers frozen, or without
    one the recipe's model whole, its batch norms made group norms."""
    if pretrained is None:
        arch = arch_of(recipe, x, num_classes) | {"group_norm": True}
        model = models.build(arch)
        models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
        model = frozen_batch_norms(model.to(device))
        return model, arch, [p for p in model.parameters() if p.requires_grad]
    arch = models.load_weights(pretrained)[0] | {"num_classes": num_classes}
    model = frozen_batch_norms(from_pretrained(pretrained, num_classes, seed).to(device))
    return model, arch, freeze_all_but_last(model, spec["trainable_layers"])


def _per_example_steps(model: nn.Module, opt: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray, recipe: Recipe,
                       spec: dict[str, Any], seed: int, device: torch.device, gen: torch.Generator,
                       log: list[dict[str, float]], t0: float) -> tuple[nn.Module, Any]:
    """DP-SGD through opacus: Poisson-sampled lots, every example's gradient clipped. Returns the trained module and
    opacus's accountant."""
    from opacus import PrivacyEngine
    from opacus.utils.batch_memory_manager import BatchMemoryManager

    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=spec["lot_size"],
                                         generator=torch.Generator().manual_seed(seed))
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                             noise_multiplier=spec["noise_multiplier"],
                                             max_grad_norm=spec["max_grad_norm"], poisson_sampling=True,
                                             noise_generator=torch.Generator(device).manual_seed(seed))
    step, progress = 0, Progress("DP-SGD", spec["steps"], "lots")
    while step < spec["steps"]:
        frozen_batch_norms(model)
        with BatchMemoryManager(data_loader=loader, max_physical_batch_size=spec["physical_batch"],
                                optimizer=opt) as batches:
            for xb, yb in batches:
                xb, yb = to_float(xb.to(device)), yb.to(device)
                xb = augment(xb, recipe, gen) if recipe.augment else xb
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
                if not opt._is_last_step_skipped:
                    step += 1
                    progress.update(step)
                if step >= spec["steps"]:
                    break
        log.append({"step": step, "seconds": time.perf_counter() - t0})
    return model._module, engine.accountant


def train_frozen(x: np.ndarray, y: np.ndarray, recipe: Recipe, spec: dict[str, Any], seed: int,
                 device: torch.device, pretrained: str | None, num_classes: int,
                 private: bool) -> tuple[models.Classifier, dict[str, Any]]:
    """Train the last layers of a pretrained model in lots of `lot_size` for `steps` steps; if `private`, by
    DP-SGD: with fewer `microbatches` than examples as TF Privacy runs it (fixed-size shuffled lots, each
    microbatch's gradient clipped to `max_grad_norm`, noise of std noise_multiplier x max_grad_norm on their sum,
    divided by the microbatches), with one microbatch per example through opacus (Poisson-sampled lots, per-example
    clipping). Privacy is accounted by opacus's RDP accountant at sampling rate lot_size / n."""
    from opacus.accountants import RDPAccountant

    seed_everything(seed)
    model, arch, params = _frozen_model(x, recipe, spec, seed, device, pretrained, num_classes)
    opt = torch.optim.SGD(params, lr=spec["lr"], momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    lot, microbatches, noise = spec["lot_size"], microbatch_count(spec), spec.get("noise_multiplier", 0.0)
    gen = torch.Generator(device=device).manual_seed(seed)
    t0, log = time.perf_counter(), []
    if private and microbatches == lot:
        model, accountant = _per_example_steps(model, opt, x, y, recipe, spec, seed, device, gen, log, t0)
    else:
        accountant, epoch = RDPAccountant(), max(1, len(y) // lot)
        # whole microbatches per forward pass, about `physical_batch` examples
        chunk = max(1, spec["physical_batch"] * microbatches // lot) * (lot // microbatches)
        progress = Progress("DP-SGD" if private else "frozen SGD", spec["steps"], "lots")
        frozen_batch_norms(model)  # batch norms keep their pretrained statistics (thesis 7.10)
        for step, (xb, yb) in zip(range(1, spec["steps"] + 1), lots(x, y, lot, seed)):
            xb, yb = to_float(xb.to(device)), yb.to(device)
            xb = augment(xb, recipe, gen) if recipe.augment else xb
            if private:
                total = [torch.zeros_like(p) for p in params]
                for i in range(0, lot, chunk):
                    part = clipped_microbatch_sum(model, params, xb[i:i + chunk], yb[i:i + chunk],
                                                  min(chunk, lot - i) * microbatches // lot, spec["max_grad_norm"])
                    total = [t + g for t, g in zip(total, part)]
                grads = noised_mean(total, microbatches, noise * spec["max_grad_norm"], gen)
                accountant.step(noise_multiplier=noise, sample_rate=lot / len(y))
            else:
                grads = list(torch.autograd.grad(nn.functional.cross_entropy(model(xb), yb), params))
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            progress.update(step)
            if step % epoch == 0 or step == spec["steps"]:
                log.append({"step": step, "seconds": time.perf_counter() - t0})
    info: dict[str, Any] = {"steps": log[-1]["step"], "lot_size": lot}
    if private:
        info |= {"microbatches": microbatches, "noise_multiplier": noise, "max_grad_norm": spec["max_grad_norm"],
                 "delta": spec["delta"], "epsilon": accountant.get_epsilon(spec["delta"])}
    return model.cpu(), {"arch": arch, "device": str(device), "seconds": time.perf_counter() - t0, "epochs": log,
                         "defence": info}


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Context:
    """What a defence may use beside the training set."""

    poisoned: np.ndarray        # mask of the poisoned training examples: scores detection, never used to train
    pretrained: str | None      # dp_sgd / frozen_sgd: weights of the model pretrained on public data
    base: str | None            # spectral / activation_clustering: weights of the undefended victim
    tracer: Tracer | None = None  # none: records per-sample losses during training (Figure 4-1)
    accel: Accel = TRAIN_DEFAULT  # GPU speed options of the training loops that take them


Array, Spec = np.ndarray, dict[str, Any]
Trained = tuple[models.Classifier, dict[str, Any]]
DefenceFn = Callable[[np.ndarray, np.ndarray, int, Recipe, dict[str, Any], int, torch.device, Context], Trained]


def _none(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
          ctx: Context) -> Trained:
    """Plain training."""
    return train(x, y, nc, recipe, seed, device, tracer=ctx.tracer, accel=ctx.accel)


def _adv_training(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
                  ctx: Context) -> Trained:
    """Every batch replaced by its PGD adversarial version (Madry et al.)."""
    return train(x, y, nc, recipe, seed, device, adversary=pgd_adversary(spec, seed), accel=ctx.accel)


def _dp_sgd(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
            ctx: Context) -> Trained:
    """DP-SGD on the last layers of the pretrained model."""
    return train_frozen(x, y, recipe, spec, seed, device, ctx.pretrained, nc, private=True)


def _frozen_sgd(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
                ctx: Context) -> Trained:
    """The DP-SGD setting with plain SGD (the thesis's baseline, learning rate divided by the microbatches)."""
    return train_frozen(x, y, recipe, spec, seed, device, ctx.pretrained, nc, private=False)


@dataclass(frozen=True)
class AblRecipe:
    """Anti-Backdoor Learning's schedule, the authors' release (bboylyg/ABL) unless noted; the victim's recipe
    gives only the architecture. One SGD optimiser carries its momentum through the three phases."""

    gamma: float = 0.5                          # LGA: descend above this loss, ascend below it
    isolation_ratio: float = 0.01               # share of lowest-loss examples isolated
    isolation_epochs: float = 20                # T_te of the paper (their config.py's quick default: 10)
    finetuning_epochs: float = 60               # retraining on the rest, with augmentation
    finetuning_milestones: tuple[float, ...] = (40,)  # its rate 0.1 -> 0.01 at epoch 40
    unlearning_epochs: float = 5                # gradient ascent on the isolated examples
    unlearning_lr: float = 5e-4
    batch_size: int = 128
    lr: float = 0.1                             # isolation (constant) and finetuning
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    cutout: int = 3                             # finetuning augmentation: 4-pixel crop, flip, Cutout(1, 3)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> AblRecipe:
        """The ABL keys of a defence's config block (the schema fills other defences' defaults in too)."""
        return cls(**{f.name: tuple(spec[f.name]) if isinstance(spec[f.name], list) else spec[f.name]
                      for f in dataclasses.fields(cls) if f.name in spec})

    def phases(self, recipe: Recipe) -> tuple[Recipe, Recipe, Recipe]:
        """Isolation (no augmentation, constant rate), finetuning and unlearning as recipes on `recipe`'s model."""
        base = dataclasses.replace(recipe, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                                   nesterov=self.nesterov, weight_decay=self.weight_decay, schedule="step",
                                   gamma=0.1, label_smoothing=0.0, bias_lr_scale=1.0, trace_per_epoch=0,
                                   crop_padding=4, pad_mode="constant", flip=True, rotation=0.0, cutout=0)
        return (dataclasses.replace(base, epochs=self.isolation_epochs, milestones=(), augment=False),
                dataclasses.replace(base, epochs=self.finetuning_epochs, milestones=self.finetuning_milestones,
                                    augment=True, cutout=self.cutout),
                dataclasses.replace(base, epochs=self.unlearning_epochs, lr=self.unlearning_lr, milestones=(),
                                    augment=False))


def _abl(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
         ctx: Context) -> Trained:
    """Isolate the lowest-loss examples after LGA training, finetune on the rest, unlearn the isolated ones."""
    t0 = time.perf_counter()
    abl = AblRecipe.from_spec(spec)
    isolation, finetuning, unlearning = abl.phases(recipe)
    seed_everything(seed)
    model = models.build(arch_of(recipe, x, nc))
    models.fit_to_data(model, to_float(torch.from_numpy(x[:10000])))
    opt = optimizer_for(model, isolation)
    model, _ = train(x, y, nc, isolation, seed, device, init=model, optimizer=opt,
                     loss_transform=lambda loss: lga(loss, abl.gamma), accel=ctx.accel)
    isolated = np.zeros(len(y), bool)
    isolated[isolate_lowest(per_sample_loss(model, x, y, device), abl.isolation_ratio)] = True
    model, info = train(x[~isolated], y[~isolated], nc, finetuning, seed, device, init=model, optimizer=opt,
                        accel=ctx.accel)
    model, _ = train(x[isolated], y[isolated], nc, unlearning, seed, device, init=model, optimizer=opt,
                     loss_transform=torch.neg, accel=ctx.accel)
    found = detection(isolated, ctx.poisoned)
    return model, {**info, "seconds": time.perf_counter() - t0,
                   "defence": {"isolated": found["flagged"], "isolation_precision": found["precision"],
                               "isolation_recall": found["recall"]}}


def _sanitised(flag: Callable[[np.ndarray, np.ndarray, dict[str, Any], int], np.ndarray]) -> DefenceFn:
    """A defence that drops the examples `flag` picks from the undefended victim's features, then retrains."""
    def defence(x: Array, y: Array, nc: int, recipe: Recipe, spec: Spec, seed: int, device: torch.device,
                ctx: Context) -> Trained:
        flagged = flag(embeddings(models.load_model(ctx.base), x, device), y, spec, seed)
        if flagged.all():
            raise ValueError(f"the defence flagged all {len(y)} training examples, leaving nothing to train on")
        model, info = train(x[~flagged], y[~flagged], nc, recipe, seed, device, accel=ctx.accel)
        found = detection(flagged, ctx.poisoned)
        return model, {**info, "defence": {"flagged": found["flagged"], "kept": int((~flagged).sum()),
                                           "detection_precision": found["precision"],
                                           "detection_recall": found["recall"]}}
    return defence


DEFENCES: dict[str, DefenceFn] = {
    "none": _none,
    "adv_training": _adv_training,
    "dp_sgd": _dp_sgd,
    "frozen_sgd": _frozen_sgd,
    "abl": _abl,
    "spectral": _sanitised(lambda f, y, spec, seed: flag_spectral(spectral_scores(f, y), y, spec["eps"])),
    "activation_clustering": _sanitised(
        lambda f, y, spec, seed: flag_clusters(f, y, spec["components"], spec["max_size"], seed)),
}
