"""What every model shares: input standardisation, the Classifier frame (every model maps float images in [0, 1]
(NCHW) to logits and splits into `features`, the penultimate activations, and `classifier`, the last linear layer),
the layers several architectures use, building a model from its spec (the architectures themselves: one module
each in `architectures`) and the model file format."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import plugins
from .artifacts import load_torch, non_finite, save_torch


class NonFiniteOutputs(ArithmeticError):
    """A model's logits hold a NaN or infinity: nothing is measured from it (argmax would quietly say class 0)."""


class InputNorm(nn.Module):
    """Input standardisation inside the model, so saved weights carry their preprocessing."""

    def __init__(self, kind: str, channels: int) -> None:
        super().__init__()
        if kind not in ("per_image", "channel", "none"):
            raise ValueError(f"unknown input normalisation '{kind}'")
        self.kind = kind
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def fit(self, x: torch.Tensor) -> None:
        """Set the per-channel statistics from training images (used by kind 'channel')."""
        self.mean.copy_(x.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "per_image":  # tf.image.per_image_standardization, as in the thesis (7.7)
            n = x[0].numel()
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True, correction=0).clamp_min(n ** -0.5)
            return (x - mean) / std
        if self.kind == "channel":
            return (x - self.mean) / self.std
        return x


class Classifier(nn.Module):
    """norm -> features -> linear classifier (optionally scaled)."""

    def __init__(self, norm: InputNorm, features: nn.Module, width: int, num_classes: int,
                 bias: bool = True, scale: float = 1.0) -> None:
        super().__init__()
        self.norm, self.features = norm, features
        self.classifier = nn.Linear(width, num_classes, bias=bias)
        self.scale = scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations."""
        return self.features(self.norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x)) * self.scale


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return x.permute(0, 3, 1, 2).float().div_(255)


# ---------------------------------------------------------------- the thesis ResNet's and PreActResNet-18's unit

class PreActBlock(nn.Module):
    """ResNet v2 unit: BN-ReLU-conv-BN-ReLU-conv plus shortcut (projection in a group's first unit)."""

    def __init__(self, c_in: int, c_out: int, stride: int, project: bool, momentum: float = 0.003) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in, momentum=momentum), nn.BatchNorm2d(c_out, momentum=momentum)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.project = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        shortcut = self.project(a) if self.project is not None else x
        return self.conv2(torch.relu(self.bn2(self.conv1(a)))) + shortcut


# ---------------------------------------------------------------- airbench94-style fast network

class GhostBN(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a learnable bias, as in airbench."""

    def __init__(self, c: int) -> None:
        super().__init__(c, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Sequential):
    """conv - maxpool - BN - GELU - conv - BN - GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        convs = [nn.Conv2d(c_in, c_out, 3, padding="same", bias=False),
                 nn.Conv2d(c_out, c_out, 3, padding="same", bias=False)]
        for conv in convs:  # identity init on the leading channels: an implicit residual path
            nn.init.dirac_(conv.weight.data[:conv.weight.size(1)])
        super().__init__(convs[0], nn.MaxPool2d(2), GhostBN(c_out), nn.GELU(),
                         convs[1], GhostBN(c_out), nn.GELU())


class Whitening(nn.Conv2d):
    """Frozen 2x2 conv initialised to the patch-PCA whitening of the training set (+ its negation)."""

    def __init__(self, c_in: int, k: int = 2) -> None:
        super().__init__(c_in, 2 * c_in * k * k, k, padding=0, bias=True)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the filters from patches of x (N, C, H, W)."""
        c, k = x.shape[1], self.kernel_size[0]
        patches = x.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, c * k * k).double()
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov)
        w = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None]).flip(0).reshape(-1, c, k, k)
        self.weight.copy_(torch.cat([w, -w]).to(self.weight.dtype))


def build(arch: dict) -> Classifier:
    """Instantiate a model from its spec {name, in_channels, num_classes, **options}, the options checked against
    the model's own keys (`architectures`); `group_norm: true` swaps every batch norm for a group norm the way
    opacus does for DP-SGD (per-sample gradients need no batch stats) and makes in-place activations (torchvision's
    ReLU, ReLU6) out-of-place, as opacus's backward hooks require."""
    spec = dict(arch)
    name, in_channels, num_classes = spec.pop("name"), spec.pop("in_channels"), spec.pop("num_classes")
    group_norm = spec.pop("group_norm", False)
    method, options = plugins.settings("model", {"model": name, **spec})
    model = method.build(options, in_channels, num_classes)
    if group_norm:
        from opacus.validators import ModuleValidator

        model = ModuleValidator.fix(model)
        for m in model.modules():
            if getattr(m, "inplace", False):
                m.inplace = False
    return model


@torch.no_grad()
def fit_to_data(model: Classifier, x: torch.Tensor) -> None:
    """Data-dependent initialisation: input statistics and, for airbench, the whitening filters."""
    model.norm.fit(x)
    for m in model.modules():
        if isinstance(m, Whitening):
            m.fit(model.norm(x[:5000]))


def save_weights(path: str | Path, arch: Mapping[str, Any], module: nn.Module) -> None:
    """Save a model's architecture spec and state dict atomically."""
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    save_torch(path, {"arch": dict(arch), "state_dict": state})


def flat_weights(model: nn.Module) -> torch.Tensor:
    """Every floating-point tensor of a model's state, in float64, end to end (for distances between models)."""
    return torch.cat([t.double().flatten() for t in model.state_dict().values() if t.is_floating_point()])


def check_shapes(make: Callable[[], nn.Module], state: Mapping[str, Any]) -> None:
    """Raise ValueError unless `state` holds exactly the tensors, in shape, of the module `make` builds; built on the
    meta device first, so a tampered spec never allocates more memory than the file holds."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in make().state_dict().items()}
    found = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in dict(state).items()}
    if found != expected:
        key = next(k for k in sorted(expected.keys() | found.keys()) if expected.get(k) != found.get(k))
        raise ValueError(f"tensor '{key}' has shape {found.get(key)}, its architecture needs {expected.get(key)}")


def load_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load (arch spec, state dict) without unpickling arbitrary objects."""
    return load_torch(path, lambda blob: (dict(blob["arch"]), dict(blob["state_dict"])))


def load_model(path: str | Path) -> Classifier:
    """Rebuild a saved model with its weights, in eval mode on the CPU; a file that does not fit, or whose weights
    hold a NaN or infinity (a diverged or tampered model), is refused by name."""
    def rebuild(blob: dict[str, Any]) -> Classifier:
        arch, state = dict(blob["arch"]), blob["state_dict"]
        check_shapes(lambda: build(arch), state)
        if (bad := non_finite(dict(state))) is not None:
            raise ValueError(f"tensor '{bad}' holds NaN or infinite values (a diverged or tampered model)")
        model = build(arch)
        model.load_state_dict(state)
        return model.eval()
    return load_torch(path, rebuild)


@torch.no_grad()
def batched(fn: Callable[..., torch.Tensor], images: np.ndarray | torch.Tensor, *extra: np.ndarray | torch.Tensor,
            device: torch.device | None = None, batch_size: int = 1000) -> torch.Tensor:
    """fn(float NCHW images in [0, 1], *the matching rows of `extra`) over uint8 NHWC images, batch by batch on
    `device` (default: where the images are), concatenated on the CPU."""
    target = device or torch.as_tensor(images[:0]).device

    def rows(a: np.ndarray | torch.Tensor, i: int) -> torch.Tensor:
        return torch.as_tensor(a[i:i + batch_size]).to(target)
    out = [fn(to_float(rows(images, i)), *(rows(e, i) for e in extra)).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def predict_with_loss(model: torch.nn.Module, x: np.ndarray, y: np.ndarray,
                      device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels for uint8 NHWC images and each image's cross-entropy against its label in `y` (float64);
    logits with a NaN or infinity raise NonFiniteOutputs."""
    model.eval().to(device)

    def labels_and_losses(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = model(xb).double()
        pred = torch.where(torch.isfinite(out).all(1), out.argmax(1), -1)  # -1: no label, checked below
        return torch.stack([pred.double(), torch.nn.functional.cross_entropy(out, yb.long(), reduction="none")], 1)
    both = batched(labels_and_losses, x, np.asarray(y), device=device).reshape(-1, 2).numpy()
    pred = both[:, 0].astype(np.int64)
    if (bad := int((pred < 0).sum())):
        raise NonFiniteOutputs(f"the model's outputs hold NaN or infinite values on {bad} of {len(x)} images")
    return pred, both[:, 1]


def predict(model: torch.nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Predicted labels for uint8 NHWC images; logits with a NaN or infinity raise NonFiniteOutputs."""
    return predict_with_loss(model, x, np.zeros(len(x), np.int64), device)[0]


@contextmanager
def non_finite_outputs_named(where: str, then: str) -> Iterator[None]:
    """Turn a NonFiniteOutputs raised inside into one naming `where` (the model's file) and saying `then` (what
    follows: nothing saved, no metric recorded)."""
    try:
        yield
    except NonFiniteOutputs as e:
        raise NonFiniteOutputs(f"{where}: {e}; {then}") from None
