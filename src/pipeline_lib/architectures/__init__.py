"""Victim and surrogate architectures, one module per model: its config dataclass (the recipe's `model_options`,
defaults written once), its traits (the smallest image it takes) and `build(options, in_channels, num_classes)`,
which imports torch only when called. The layers they share live in `pipeline_lib.models`."""
from __future__ import annotations

from dataclasses import dataclass

from ..blocks import key

NORM = key("channel", "input standardisation inside the model: per_image, channel (training-set statistics) or none",
           enum=["per_image", "channel", "none"])


@dataclass(frozen=True)
class Widths:
    """The keys of a model sized by its first-stage width."""

    norm: str = NORM
    width: int = key(64, "first-stage width", minimum=1, maximum=4096)
