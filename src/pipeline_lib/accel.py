"""GPU speed options of the training loops: bf16 autocast, channels-last, torch.compile and CUDA graphs.

Each option acts on CUDA devices only, so CPU training is the same arithmetic whatever the options say; `on_cpu`
applies them on the CPU too, which is how the tests and the GPU check's smoke run exercise every option without a
GPU. CUDA graphs come through torch.compile's 'reduce-overhead' mode (the compiled forward and backward are captured
and replayed, which removes the kernel-launch cost of small-batch steps); they imply compilation. On the CPU,
compilation is dynamo's graph capture and AOT autograd with the eager backend: what a GPU run traces, without
inductor's C++ build (about 30 s a graph on 2 cores), and CUDA graphs have nothing to capture there.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


def to_channels_last(model: nn.Module) -> nn.Module:
    """`model` with every 4-D parameter and buffer in NHWC memory order, the others untouched (values unchanged).

    `Module.to(memory_format=channels_last)` refuses any 5-D tensor, such as a stacked cohort's input-norm buffers."""
    return model._apply(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)


@dataclass(frozen=True)
class Accel:
    """Which GPU speed options a training loop uses (each ignored off CUDA unless `on_cpu`)."""

    bf16: bool = True            # forward passes under bfloat16 autocast
    channels_last: bool = True   # model weights in NHWC memory order
    compile: bool = False        # the forward pass through torch.compile
    cuda_graphs: bool = False    # torch.compile's 'reduce-overhead' mode: CUDA graphs (implies compile)
    on_cpu: bool = False         # apply the options on the CPU as well (tests, the GPU check's smoke run)

    def acts(self, device: torch.device) -> bool:
        """Whether the options apply on `device`."""
        return device.type == "cuda" or (self.on_cpu and device.type == "cpu")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass on `device`."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16 and self.acts(device))

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model (already on `device`) in the memory format the options ask for."""
        return to_channels_last(model) if self.channels_last and self.acts(device) else model

    def forward(self, model: nn.Module, device: torch.device) -> Callable[..., torch.Tensor]:
        """The callable a training step runs the model through: the model itself, or its compiled version."""
        if not self.acts(device) or not (self.compile or self.cuda_graphs):
            return model
        if device.type == "cpu":  # dynamo's capture and AOT autograd, as on CUDA, without inductor's C++ build
            return torch.compile(model, backend="aot_eager")
        return torch.compile(model, mode="reduce-overhead" if self.cuda_graphs else None)

    @property
    def label(self) -> str:
        """A short name of the options switched on ('fp32' when none is)."""
        on = [name for name, flag in (("bf16", self.bf16), ("cl", self.channels_last), ("compile", self.compile),
                                      ("graphs", self.cuda_graphs)) if flag]
        return "+".join(on) or "fp32"


# What each option promises against fp32 from the same seed: the weights after the first steps (3 in the tests, 4 in
# the GPU check, so that CUDA graphs are replayed; 1 under bf16) land within this share of fp32's update (l2 norms).
# Channels-last and compilation keep fp32 arithmetic in other kernels: 1e-4 on the CPU (measured at most 2e-6), 1e-2
# on CUDA, where cuDNN's convolutions run in TF32 (10-bit mantissas) in both runs and the option picks other kernels.
# bf16 rounds every product's operands to 8 bits and batch norms over a few channels amplify it: 0.5 (measured
# 0.02-0.18 on shallow models, 0.44 on the thesis ResNet-32 on noise, close to the bound: provisional until a GPU
# measures it; a broken option lands near 1, fp32's whole update).
# tests/test_accel.py and bench/gpu_check.py hold them to it.
STEP_BOUNDS = {"cpu": 1e-4, "cuda": 1e-2, "bf16": 0.5}


def update_gap(got: nn.Module, ref: nn.Module, start: nn.Module) -> float:
    """|got - ref| over |ref - start| (l2 norms of the float weights): how far an option's run lands from fp32's
    run `ref` from `start`, in units of fp32's update; what STEP_BOUNDS bound."""
    from .models import flat_weights

    got, ref, start = flat_weights(got), flat_weights(ref), flat_weights(start)
    return float((got - ref).norm() / (ref - start).norm())

TRAIN_DEFAULT = Accel()                          # train.train's options before they were options
STACKED_DEFAULT = Accel(channels_last=False)     # stacking.train_stacked's: bf16 autocast only
