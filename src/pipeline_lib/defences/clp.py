"""Channel Lipschitzness-based pruning (Zheng et al., ECCV 2022): data-free. Every batch norm that normalises a
convolution's output gets, per channel, the upper bound of the channel's Lipschitz constant (UCLC: the largest
singular value of the channel's convolution weight scaled by |gamma| / running std); channels above
mean + u std of their layer have their batch-norm weight and bias zeroed.

The authors pair each batch norm with the convolution defined before it, assuming every convolution is followed
by a batch norm. Here a batch norm is paired only when its input is a convolution's output (through max-pools,
which are 1-Lipschitz per channel), traced on one forward pass: the pre-activation units of the thesis ResNet and
PreActResNet-18 normalise sums of two branches before their convolutions, so those batch norms are left unpruned
and counted (`clp_unpaired`) rather than scored against the wrong weights. The running std includes the batch
norm's eps (the authors take the bare square root of the running variance: a negligible difference)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..blocks import key
from ..plugins import Defence, Job
from . import Trained

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Config:
    """CLP's threshold."""

    u: float = key(3.0, "prune channels whose UCLC exceeds their layer's mean + u std (the authors' default 3)",
                   minimum=0)


def conv_bn_pairs(model: nn.Module, image: torch.Tensor) -> tuple[list[tuple[nn.Conv2d, nn.BatchNorm2d]], int]:
    """(convolution, batch norm) pairs where the batch norm's input is the convolution's output, possibly through
    max-pools, found on one forward pass of `image`; and the number of batch norms that have no such convolution."""
    import torch
    from torch import nn

    # id of an output -> (it, the conv it comes from); the tensor is kept so its id is never reused in the pass. An
    # in-place operation on a convolution's output before its batch norm would pass for the output itself: no
    # model of the catalogue has one.
    made_by: dict[int, tuple[torch.Tensor, nn.Conv2d]] = {}
    pairs, unpaired = [], 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal unpaired
        source = made_by.get(id(inputs[0]), (None, None))[1] if inputs else None
        if isinstance(module, nn.Conv2d):
            made_by[id(output)] = (output, module)
        elif isinstance(module, nn.MaxPool2d) and source is not None:
            made_by[id(output)] = (output, source)
        elif isinstance(module, nn.BatchNorm2d):
            if source is not None and source.out_channels == module.num_features:
                pairs.append((source, module))
            else:
                unpaired += 1
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for h in handles:
            h.remove()
    return pairs, unpaired


def uclc(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """The upper bound of each output channel's Lipschitz constant: the largest singular value of its weight
    (in_channels x kernel) times |gamma| / sqrt(running variance + eps)."""
    import torch

    w = conv.weight.detach().flatten(2)                                           # (out, in / groups, k*k)
    scale = (bn.weight.detach() / (bn.running_var + bn.eps).sqrt()).abs()
    return torch.linalg.matrix_norm(w, ord=2) * scale


def fit(job: Job, config: Config) -> Trained:
    """Prune the undefended victim's high-UCLC channels; no data and no training."""
    import torch

    from .. import models
    from ..models import to_float

    t0 = time.perf_counter()
    model = models.load_model(job.base)
    pairs, unpaired = conv_bn_pairs(model, to_float(torch.from_numpy(job.x[:1])))
    pruned = 0
    with torch.no_grad():
        for conv, bn in pairs:
            lips = uclc(conv, bn)
            cut = lips > lips.mean() + config.u * lips.std()
            bn.weight[cut], bn.bias[cut] = 0, 0
            pruned += int(cut.sum())
    arch = models.load_weights(job.base)[0]
    return model, {"arch": arch, "device": "cpu", "seconds": time.perf_counter() - t0, "epochs": [],
                   "defence": {"clp_pruned": pruned, "clp_layers": len(pairs), "clp_unpaired": unpaired}}


METHODS = [Defence(name="clp", summary="channel Lipschitzness-based pruning (Zheng et al. 2022), data-free",
                   config=Config, fit=fit, needs_base=True, measures=("clp_pruned", "clp_layers", "clp_unpaired"))]
