"""GPU speed options of the training loops: bf16 autocast, channels-last, torch.compile and CUDA graphs.

Each option acts on CUDA devices only, so CPU training is the same arithmetic whatever the options say.
CUDA graphs come through torch.compile's 'reduce-overhead' mode (the compiled forward and backward are captured
and replayed, which removes the kernel-launch cost of small-batch steps); they imply compilation.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Accel:
    """Which GPU speed options a training loop uses (each ignored off CUDA)."""

    bf16: bool = True            # forward passes under bfloat16 autocast
    channels_last: bool = True   # model weights in NHWC memory order
    compile: bool = False        # the forward pass through torch.compile
    cuda_graphs: bool = False    # torch.compile's 'reduce-overhead' mode: CUDA graphs (implies compile)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of a forward pass on `device`."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16 and device.type == "cuda")

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model (already on `device`) in the memory format the options ask for."""
        if self.channels_last and device.type == "cuda":
            return model.to(memory_format=torch.channels_last)
        return model

    def forward(self, model: nn.Module, device: torch.device) -> Callable[..., torch.Tensor]:
        """The callable a training step runs the model through: the model itself, or its compiled version."""
        if device.type != "cuda" or not (self.compile or self.cuda_graphs):
            return model
        return torch.compile(model, mode="reduce-overhead" if self.cuda_graphs else None)

    @property
    def label(self) -> str:
        """A short name of the options switched on ('fp32' when none is)."""
        on = [name for name, flag in (("bf16", self.bf16), ("cl", self.channels_last), ("compile", self.compile),
                                      ("graphs", self.cuda_graphs)) if flag]
        return "+".join(on) or "fp32"


TRAIN_DEFAULT = Accel()                          # train.train's options before they were options
STACKED_DEFAULT = Accel(channels_last=False)     # stacking.train_stacked's: bf16 autocast only
