"""The GPU-hour budget of config.yaml on paper (issue 29): every training job's optimizer steps times a modelled
H200 step, as configured and under the changes that shorten it, each assumption printed beside the figures.

    .venv/bin/python bench/gpu_budget.py [--config config.yaml]

A step costs the larger of its launches and its arithmetic, since the GPU works while the host issues the next
operations: launches = the tensor operations one step of the real training loop dispatches (counted here on the CPU
by a TorchDispatchMode, as the difference between runs of 2 and 1 steps; views, which launch nothing, left out, and
SGD counted as CUDA runs it, one multi-tensor call for all parameters) times the host's seconds per operation;
arithmetic = the step's FLOPs (torch's FLOP formulas, the same difference) over the H200's bf16 rate times a
utilisation. Under CUDA graphs only the model's forward and backward are replayed (`Accel.forward` compiles the
model): its operations cost a replayed kernel each, the rest of the step (batch gathers, augmentation, loss,
optimiser) stays eager. A stacked cohort dispatches about one member's operations (grouped convolutions, batched
heads) on M times the FLOPs, so cohorts amortise the launches that bound small models.
Every job kind is costed as bench/gpu_check.py's part (e) costs it from measured rates (`JobCosts`); a GPU run of
that check replaces these assumptions with measurements.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import sys
import tempfile
from collections.abc import Callable
from unittest import mock
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402
from gpu_check import GOAL_GPU_HOURS, JobCosts, Share, badnets_sets, project, random_images  # noqa: E402

from pipeline_lib import models, privacy  # noqa: E402
from pipeline_lib.gan import GanRecipe, train_wgan_gp  # noqa: E402
from pipeline_lib.models import to_float  # noqa: E402
from pipeline_lib.stacking import StackedClassifier, train_stacked  # noqa: E402
from pipeline_lib.train import Recipe, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class H200:
    """What the model assumes of the GPU and its host."""

    bf16_flops: float = 788e12   # dense bf16 FLOP/s: an 8192^3 matrix product measured on this workplace's H200
    utilisation: float = 0.3     # share of it that these small convolutions reach (unmeasured: the GPU check's (a))
    launch: float = 5e-6         # host seconds per eager operation (PyTorch dispatch + launch; unmeasured)
    graph_launch: float = 1e-6   # seconds per kernel replayed from a CUDA graph (unmeasured)
    graphs: bool = False         # steps replayed from CUDA graphs (compile's reduce-overhead mode)

    def step(self, ops: float, flops: float, model_ops: float = 0) -> float:
        """Seconds of one step of `ops` operations (`model_ops` of them the model's forward and backward, replayed
        under CUDA graphs) and `flops` FLOPs."""
        replayed = model_ops * (self.graph_launch if self.graphs else self.launch)
        return max((ops - model_ops) * self.launch + replayed, flops / (self.bf16_flops * self.utilisation))


class Counter(TorchDispatchMode):
    """Counts the tensor operations dispatched inside it that launch work (views launch none) and their FLOPs, by
    torch's FLOP formulas (FlopCounterMode's own module tracking breaks WGAN-GP's gradient penalty)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self.flops = 0, 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.ops += not func.is_view
        if func._overloadpacket in flop_registry:
            self.flops += flop_registry[func._overloadpacket](*args, **(kwargs or {}), out_val=out)
        return out


class ForeachSGD(torch.optim.SGD):
    """SGD as it runs on CUDA by default: one multi-tensor ('foreach') call for all parameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, foreach=True)


def counted(run: Callable[[], Any]) -> tuple[int, float]:
    """Operations and FLOPs of one call, SGD as CUDA runs it."""
    with contextlib.redirect_stdout(io.StringIO()), mock.patch.object(torch.optim, "SGD", ForeachSGD), \
            Counter() as count:
        run()
    return count.ops, float(count.flops)


def per_step(run: Callable[[int], Any]) -> tuple[int, float]:
    """Operations and FLOPs of one step of a loop: `run(2)` less `run(1)` (set-up cancels)."""
    (ops1, flops1), (ops2, flops2) = (counted(lambda: run(steps)) for steps in (1, 2))
    return ops2 - ops1, flops2 - flops1


def counting_recipe(recipe: Recipe, steps: int, images: int, batch: int) -> Recipe:
    """The recipe for `steps` steps in batches of `batch` over `images` images."""
    return dataclasses.replace(recipe, batch_size=batch, epochs=(steps - 0.5) / (images // batch))


class Modelled(JobCosts):
    """Each rate from counted operations and FLOPs and the H200's assumed speeds; counts are cached."""

    BATCH = 8  # images per counted step: operations do not depend on it, FLOPs are scaled to the recipe's batch

    def __init__(self, facts: dict[str, Any], gpu: H200, counts: dict[str, tuple[int, float]]) -> None:
        super().__init__(facts)
        self.gpu, self.counts = gpu, counts

    def count(self, key: str, run: Callable[[int], Any]) -> tuple[int, float]:
        """A loop's per-step operations and FLOPs, counted once."""
        if key not in self.counts:
            self.counts[key] = per_step(run)
        return self.counts[key]

    def recipe_step(self, name: str, shape: list[int], num_classes: int,
                    members: int) -> tuple[float, float, float, int]:
        """(operations, the model's forward and backward operations among them, FLOPs at the recipe's batch, batch)
        of one step of a recipe's cohort of `members`."""
        recipe = Recipe.from_config(self.recipes[name])
        x, y = random_images(shape, 4 * self.BATCH, num_classes)
        arch = {"name": recipe.model, "in_channels": shape[-1], "num_classes": num_classes, **recipe.model_options}

        def run(steps: int) -> Any:
            short = counting_recipe(recipe, steps, len(y), self.BATCH)
            if members == 1:
                return train(x, y, num_classes, short, 0, CPU)
            return train_stacked(x, y, badnets_sets(x, y, members, num_classes), num_classes, short, 0, CPU)

        key = f"{name}:{shape}:{num_classes}:{members}"
        ops, flops = self.count(key, run)
        if f"{key} model" not in self.counts:  # the forward and backward alone, the model built outside the count
            model = models.build(arch) if members == 1 else StackedClassifier([models.build(arch)] * members)
            batch = to_float(torch.from_numpy(x[:self.BATCH]))
            batch = batch if members == 1 else torch.stack([batch] * members, 1)
            self.counts[f"{key} model"] = counted(lambda: model.train()(batch).sum().backward())
        return ops, self.counts[f"{key} model"][0], flops * recipe.batch_size / self.BATCH, recipe.batch_size

    def per_image(self, name: str, shape: list[int], num_classes: int) -> tuple[float, str]:
        """A solo step, modelled, over its batch."""
        ops, model_ops, flops, batch = self.recipe_step(name, shape, num_classes, 1)
        return self.gpu.step(ops, flops, model_ops) / batch, "modelled"

    def cohort_step(self, name: str, recipe: Recipe, shape: list[int], num_classes: int,
                    members: int) -> tuple[float, str]:
        """A stacked step: the operations counted at 2 members (a cohort's do not grow with it), M times a
        member's FLOPs."""
        ops, model_ops, flops, _ = self.recipe_step(name, shape, num_classes, 2)
        return self.gpu.step(ops, flops * members / 2, model_ops), "modelled, stacked"

    def gan_step(self, name: str, shape: list[int]) -> float:
        """A generator update with its critic updates, modelled."""
        x = to_float(torch.from_numpy(random_images(shape, 256, 2)[0]))
        block = self.facts["gans"][name]
        ops, flops = self.count(f"gan {name}:{shape}", lambda steps: train_wgan_gp(
            x, GanRecipe.from_config(block | {"steps": steps, "batch_size": self.BATCH}), 0))
        return self.gpu.step(ops, flops * GanRecipe.from_config(block).batch_size / self.BATCH)

    def dp_step(self, private: bool) -> float:
        """A DP-SGD lot (every microbatch's own backward pass), or the frozen-SGD baseline's, modelled."""
        dp = self.facts["dp"]
        spec, arch = dict(dp["spec"]), dp["pretrained_arch"]
        job = next(j for j in self.facts["jobs"] if j.get("defence") == dp["defence"])
        lot = spec["microbatches"] * 2  # the counted lot: two images a microbatch; FLOPs scaled to the lot size
        x, y = random_images(job["shape"], 2 * lot, job["num_classes"])
        recipe = Recipe.from_config(self.facts["recipes"][dp["recipe"]])
        with tempfile.TemporaryDirectory() as tmp:
            pretrained = str(Path(tmp) / "pretrained.pt")
            models.save_weights(pretrained, arch, models.build(arch))
            ops, flops = self.count(f"dp {private}", lambda steps: privacy.train_frozen(
                x, y, recipe, spec | {"lot_size": lot, "physical_batch": lot, "steps": steps}, 0, CPU, pretrained,
                job["num_classes"], private))
        return self.gpu.step(ops, flops * spec["lot_size"] / lot)


SCENARIOS = (  # (name, config keys replaced, H200 settings)
    ("as configured (cohorts of up to 16, cut by figure; eager)", {}, {}),
    ("cohorts of up to 64 across figures (cohort_size: 64, cohort_by_figure: false)",
     {"cohort_size": 64, "cohort_by_figure": False}, {}),
    ("cohorts of up to 64 + CUDA graphs (gpu.cuda_graphs: true)", {"cohort_size": 64, "cohort_by_figure": False},
     {"graphs": True}),
)
RANGE = {"pessimistic": {"utilisation": 0.15, "launch": 10e-6}, "optimistic": {"utilisation": 0.5, "launch": 3e-6}}


def stacking_ratio(modelled: Modelled, name: str, shape: list[int]) -> str:
    """Operations per victim-step of a stacked cohort of 16 against a solo victim's, counted on the CPU."""
    solo, model_ops = modelled.recipe_step(name, shape, 10, 1)[:2]
    stacked = modelled.recipe_step(name, shape, 10, 16)[0]
    return (f"{name}: {solo} operations a solo step ({model_ops} of them the model's forward and backward), {stacked} "
            f"a stacked step of 16 ({16 * solo / stacked:.1f}x fewer per victim)")


def main() -> None:
    """Print the assumptions, each scenario's largest groups and total, and the range of the totals."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    args = p.parse_args()
    torch.set_num_threads(2)
    gpu_check.accountant_stand_in()
    base = H200()
    print(f"H200 model: {', '.join(f'{k} {v:g}' for k, v in dataclasses.asdict(base).items() if k != 'graphs')}; "
          f"a step costs max(eager operations x launch + replayed ones x graph_launch, FLOPs / (bf16 rate x "
          "utilisation))")
    counts: dict[str, tuple[int, float]] = {}
    totals, facts_as_configured = {}, None
    for label, overrides, settings in SCENARIOS:
        facts = gpu_check.config_facts(args.config, overrides)
        facts_as_configured = facts_as_configured or facts
        cohorts = [j for j in facts["jobs"] if j["kind"] == "cohort"]
        recipes = [Recipe.from_config(facts["recipes"][j["recipe"]]) for j in cohorts]
        steps = sum(math.ceil(r.epochs * (j["images"] // r.batch_size)) for r, j in zip(recipes, cohorts))
        runs = {}
        for case, change in {"base": {}, **RANGE}.items():
            runs[case] = project(Modelled(facts, dataclasses.replace(base, **settings, **change), counts), facts,
                                 Share(math.inf))
        result = runs["base"]
        print(f"\n{label}: {len(cohorts)} cohorts of {sum(j['victims'] for j in cohorts)} victims, {steps:,} "
              f"cohort steps (before PGD's passes)")
        for key, g in sorted(result["groups"].items(), key=lambda kv: -kv[1]["hours"])[:6]:
            if "error" not in g:
                print(f"  {key[:52]:<52} {g['hours']:6.2f} h  {g['jobs']:>3} jobs ({g['basis']})")
        totals[label] = result["total_hours"]
        for key, g in result["groups"].items():
            if "error" in g:
                print(f"  NOT COSTED {key}: {g['error']}")
        print(f"  total {result['total_hours']:.2f} H200-hours{'' if result['complete'] else ' (INCOMPLETE)'} "
              f"(pessimistic {runs['pessimistic']['total_hours']:.2f}, optimistic "
              f"{runs['optimistic']['total_hours']:.2f}); goal {GOAL_GPU_HOURS:g}: "
              f"{'within' if result['within_goal'] else 'OVER' if result['complete'] else 'unknown'}")
    print("\nmeasured on the CPU:")
    thesis = next(n for n, r in facts_as_configured["recipes"].items() if r["model"] == "thesis_resnet")
    print("  " + stacking_ratio(Modelled(facts_as_configured, base, counts), thesis, [32, 32, 3]))
    first, best = totals[SCENARIOS[0][0]], totals[SCENARIOS[-1][0]]
    print(f"  the changes together: {first:.2f} -> {best:.2f} H200-hours ({first / best:.1f}x)")


if __name__ == "__main__":
    main()
