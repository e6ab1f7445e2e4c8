"""BadNets (Gu et al. 2017): random training images triggered and relabelled to the target (thesis 2.2)."""
from __future__ import annotations

from dataclasses import dataclass

from ..blocks import key
from ..plugins import Attack
from . import relabel_random


@dataclass(frozen=True)
class Config:
    """BadNets' keys."""

    trigger: str = key(help="the trigger's name under `triggers`")


METHODS = [Attack(name="badnets", summary="BadNets (Gu et al. 2017): random images triggered, relabelled to the target",
                  config=Config, select=relabel_random)]
