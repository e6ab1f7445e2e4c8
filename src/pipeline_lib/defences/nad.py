"""Neural Attention Distillation (Li et al., ICLR 2021; bboylyg/NAD): fine-tune a copy of the backdoored victim on
the defender's clean share into a teacher (the authors' loop with the distillation terms off), then fine-tune the
victim itself on the share with cross-entropy plus, per distilled layer, beta times the mean squared difference of
its attention map from the teacher's. An attention map sums |activation|^p over channels and is scaled to unit L2
norm over the pixels of each image (the authors' at.py).

The authors distil the outputs of WRN-16-1's three residual groups. A model here has no named groups, so the
distilled layers are found on the forward pass: at each spatial size of the feature maps, the map of that size
output last by the shallowest modules of the model's `features` (a stage or a residual unit, its sum included: the
stage outputs of ResNet-18 and airbench, the last unit of each size of the pre-activation ResNets and MobileNetV2,
the last conv-BN-ReLU of each size of the small CNN), and of those the last three sizes above one pixel (a 1 x 1
map normalises to the constant 1 and distils nothing: BackdoorBench's choice of the pooled output for ResNet-18;
a global adaptive pool is no stage). Fewer sizes, fewer layers (the last betas).

Schedule as the authors' main.py: SGD (momentum 0.9, nesterov, weight decay 1e-4), batch 64, learning rate 0.1
for two epochs then 0.01; the recipe's augmentation (the authors crop, flip and cut out)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..blocks import MAX_BATCH, key
from ..plugins import Defence, Job
from . import Trained, clean_share

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Config:
    """The authors' defaults (bboylyg/NAD config.py)."""

    clean_ratio: float = key(0.05, "the defender's clean share of the training set", exclusiveMinimum=0, maximum=1)
    teacher_epochs: float = key(10, "epochs fine-tuning the teacher (the authors: 5 to 10)", exclusiveMinimum=0)
    epochs: float = key(20, "epochs distilling into the victim", minimum=0)
    batch_size: int = key(64, "images per step", minimum=1, maximum=MAX_BATCH)
    lr: float = key(0.1, "learning rate of the first `drop_epoch` epochs, x0.1 after", exclusiveMinimum=0)
    drop_epoch: float = key(2, "the epoch from which the rate is x0.1", minimum=0)
    weight_decay: float = key(1e-4, "SGD weight decay", minimum=0)
    p: float = key(2.0, "power of |activation| in the attention map", exclusiveMinimum=0)
    betas: tuple[float, ...] = key((500.0, 1000.0, 1000.0), "weight of each distilled layer's attention loss, "
                                   "from the largest map to the smallest", minItems=1,
                                   items={"type": "number", "minimum": 0})


def attention(fm: torch.Tensor, p: float) -> torch.Tensor:
    """(N, H*W) attention maps: sum over channels of |fm|^p, unit L2 norm per image (eps 1e-6, as the authors)."""
    am = fm.abs().pow(p).sum(1).flatten(1)
    return am / (am.norm(dim=1, keepdim=True) + 1e-6)


class StageMaps:
    """Forward hooks on a model's feature layers keeping, per spatial size above one pixel, the map of that size
    output last by the shallowest modules (global adaptive pools left out) in the latest forward pass."""

    def __init__(self, model: nn.Module) -> None:
        from functools import partial

        from torch import nn

        self.latest: dict[int, tuple[int, torch.Tensor]] = {}   # size -> (module depth, map)
        self.handles = [model.features.register_forward_pre_hook(lambda *_: self.latest.clear())]
        self.handles += [m.register_forward_hook(partial(self._keep, name.count(".") + 1))
                         for name, m in model.features.named_modules()
                         if name and not isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]

    def _keep(self, depth: int, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if output.dim() == 4 and min(output.shape[-2:]) > 1:
            size = output.shape[-2] * output.shape[-1]
            if size not in self.latest or depth <= self.latest[size][0]:
                self.latest[size] = (depth, output)

    def last(self, n: int) -> list[torch.Tensor]:
        """The maps of the n smallest sizes, the largest of them first."""
        return [self.latest[s][1] for s in sorted(self.latest, reverse=True)[-n:]]

    def close(self) -> None:
        """Remove the hooks."""
        for h in self.handles:
            h.remove()


def distillation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], betas: tuple[float, ...],
                      p: float) -> torch.Tensor:
    """Sum over layers of beta x mean squared difference of the attention maps (the last len(student) betas)."""
    import torch

    pairs = zip(betas[len(betas) - len(student):], student, teacher, strict=True)
    return sum((b * torch.nn.functional.mse_loss(attention(s.float(), p), attention(t.float(), p))
                for b, s, t in pairs), torch.zeros((), device=student[0].device))


def fit(job: Job, config: Config) -> Trained:
    """Fine-tune a teacher on the clean share, then distil its attention into the backdoored victim."""
    import torch

    from .. import models
    from ..train import train

    t0 = time.perf_counter()
    x, y = clean_share(job, config.clean_ratio, job.seed)
    recipe = dataclasses.replace(job.recipe, epochs=config.teacher_epochs, batch_size=config.batch_size, lr=config.lr,
                                 momentum=0.9, nesterov=True, weight_decay=config.weight_decay, schedule="step",
                                 milestones=(config.drop_epoch,), gamma=0.1, label_smoothing=0.0, bias_lr_scale=1.0,
                                 trace_per_epoch=0)
    accel = dataclasses.replace(job.accel, compile=False, cuda_graphs=False)   # hooks read the eager forward pass
    teacher, _ = train(x, y, job.num_classes, recipe, job.seed, job.device, init=models.load_model(job.base),
                       accel=accel)
    teacher = teacher.to(job.device).eval().requires_grad_(False)
    student = models.load_model(job.base)
    seen, taught = StageMaps(student), StageMaps(teacher)
    layers = len(config.betas)

    def distil(xb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher(xb)
        return distillation_loss(seen.last(layers), taught.last(layers), config.betas, config.p)
    try:
        with torch.no_grad():   # how many layers this model offers
            student.eval()(torch.zeros(1, *x.shape[3:], *x.shape[1:3]))
        distilled = len(seen.last(layers))
        if not distilled:
            raise ValueError("NAD needs feature maps larger than one pixel, and this model has none")
        model, info = train(x, y, job.num_classes, dataclasses.replace(recipe, epochs=config.epochs), job.seed,
                            job.device, init=student, accel=accel, extra_loss=distil)
    finally:
        seen.close()
        taught.close()
    return model, {**info, "seconds": time.perf_counter() - t0,
                   "defence": {"nad_layers": distilled, "nad_clean_images": len(y)}}


METHODS = [Defence(name="nad", summary="Neural Attention Distillation (Li et al. 2021): distil a clean-tuned "
                   "teacher's attention", config=Config, fit=fit, needs_base=True,
                   measures=("nad_layers", "nad_clean_images"))]
