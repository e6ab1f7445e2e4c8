"""Input-aware dynamic backdoor (Nguyen & Tran 2020): random images relabelled to the target, each with the
trigger a generator trained alongside the attacker's classifier draws for it (training: `input_aware`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..blocks import BlockError, from_block, key
from ..plugins import Attack
from . import relabel_random

if TYPE_CHECKING:
    from ..trigger_nets import TriggerNet


@dataclass(frozen=True)
class DynamicRecipe:
    """The attack's hyperparameters (the authors' defaults in comments)."""

    p_attack: float = key(0.1, "share of each batch backdoored", exclusiveMinimum=0, maximum=1)
    p_cross: float = key(0.1, "share given another image's trigger, label kept", minimum=0, maximum=1)
    lambda_div: float = key(1.0, "weight of the diversity loss", minimum=0)
    lambda_norm: float = key(100.0, "weight of the mask's density penalty", minimum=0)
    mask_density: float = key(0.032, "mask mean allowed before it is penalised", exclusiveMinimum=0, maximum=1)
    mask_epochs: float = key(25, "epochs training the mask network alone, first", exclusiveMinimum=0)
    lr_generator: float = key(0.01, "Adam (0.5, 0.9) rate of the generator", exclusiveMinimum=0)
    lr_mask: float = key(0.01, "Adam (0.5, 0.9) rate of the mask network", exclusiveMinimum=0)
    generator_milestones: tuple[float, ...] = key((200, 300, 400, 500), "epochs where the generator's rate drops")
    mask_milestones: tuple[float, ...] = key((10, 20), "epochs where the mask network's rate drops")
    lr_gamma: float = key(0.1, "factor of each rate drop", exclusiveMinimum=0)
    width: int | None = key(None, "channels of the trigger networks' first level: 16 grey (MNIST), 32 colour",
                            minimum=1, maximum=4096)
    levels: int | None = key(None, "their down/up-sampling levels: 2 grey, 3 colour", minimum=1)

    def __post_init__(self) -> None:
        if self.p_attack + self.p_cross > 1:
            raise ValueError(f"input_aware p_attack {self.p_attack} + p_cross {self.p_cross} exceed the whole batch")

    def networks(self, channels: int, side: int) -> tuple[TriggerNet, TriggerNet]:
        """A fresh generator and mask network for images of `channels` and `side` pixels (the authors' shapes for
        grey and for colour images unless width and levels are set)."""
        from ..trigger_nets import TriggerNet

        width = self.width or (16 if channels == 1 else 32)
        levels = self.levels or (2 if channels == 1 else 3)
        if side % 2 ** levels:
            raise ValueError(f"input_aware levels {levels}: images of {side} pixels do not halve {levels} times")
        return TriggerNet(channels, channels, width, levels), TriggerNet(channels, 1, width, levels)

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> DynamicRecipe:
        """Build from a config block, rejecting unknown keys by name."""
        return from_block(cls, block, "input-aware")


@dataclass(frozen=True)
class Config:
    """The input-aware attack's keys."""

    recipe: str = key(help="the recipe (under `recipes`) of the attacker's own classifier")
    input_aware: dict[str, Any] | None = key(None, "the attack's hyperparameters (DynamicRecipe; the authors' "
                                             "defaults)")

    def __post_init__(self) -> None:
        try:
            DynamicRecipe.from_config(self.input_aware or {})
        except BlockError as e:
            raise BlockError(f"input_aware.{e.key}" if e.key else "input_aware", e.message) from None


METHODS = [Attack(name="input_aware", summary="input-aware (Nguyen & Tran 2020): random images relabelled, each "
                  "with its own generated trigger", config=Config, select=relabel_random, trigger="trained")]
