"""GPU check (issues 22, 29): every figure the GPU performance goal needs, in one command of a few minutes.

    python bench/gpu_check.py --bundle      # here, once: gpu_bundle/ = config.yaml's plan, the CIFAR-10 subset,
                                            # the smoke test's images
    python bench/gpu_check.py               # on the GPU machine: torch and numpy alone, from the bundle
    python bench/gpu_check.py --smoke       # tiny sizes on the CPU, the GPU options applied there (what CI runs)

Parts, each measurement in its own guard (a failure is one error row, the rest is measured), each part within a
share of the run's time (later measurements of a part past its share are skipped rows), in this order:
  a  thesis-ResNet victims per GPU-hour at cohort sizes 1, 16, 64 (stacked training, the config's options), GPU
     memory per member, and at one size each GPU option (fp32, bf16, bf16 + channels-last, + torch.compile,
     + CUDA graphs)
  b  seconds per victim of the fast (airbench-style) recipe under each option
  c  DP-SGD steps per second as config.yaml configures it (microbatched; its frozen-SGD baseline too)
  e  the projected device-hours of every training job of config.yaml, against the goal of 2
  d  equivalence on the device: each option against fp32 from one seed, the same computation (first steps: the
     weight gap in units of fp32's update, against a stated bound; after some epochs: accuracy and agreement)
A short table comes last; the full figures go to $OUT/gpu_check.json when OUT is set (after every part).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library from this checkout, no install needed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline_lib import models, plugins, privacy  # noqa: E402
from pipeline_lib.accel import STEP_BOUNDS, Accel, update_gap  # noqa: E402
from pipeline_lib.blocks import prevalidated  # noqa: E402
from pipeline_lib.data import Dataset, load_prepared, save_prepared  # noqa: E402
from pipeline_lib.gan import GanRecipe, train_wgan_gp  # noqa: E402
from pipeline_lib.layout import Amount  # noqa: E402
from pipeline_lib.models import predict, to_float  # noqa: E402
from pipeline_lib.poisons import PoisonSet, poison  # noqa: E402
from pipeline_lib.stacking import train_stacked  # noqa: E402
from pipeline_lib.train import Recipe, seed_everything, train  # noqa: E402

BUNDLE = ROOT / "gpu_bundle"                      # git-ignored: what the GPU call carries
SUBSET_NAME, SMOKE_NAME, FACTS_NAME = "cifar10_subset.npz", "smoke_noise.npz", "config_facts.json"
SHARED_SUBSET = ROOT.parent / "shared/data" / SUBSET_NAME
GOAL_GPU_HOURS = 2.0
# (train, test) images of the registry sources, for sources whose class sizes the config cannot read
REGISTRY_IMAGES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "cifar100_coarse": (50000, 10000),
                   "mnist": (60000, 10000), "digits": (1347, 450),
                   "cinic10_imagenet": (70000, 70000)}  # its train and test folders, 7,000 ImageNet images a class
FP32 = Accel(bf16=False, channels_last=False)
# every GPU option in turn (labels: cl = channels-last, graphs = CUDA graphs)
VARIANTS = (FP32, Accel(channels_last=False), Accel(), Accel(compile=True), Accel(compile=True, cuda_graphs=True))
# (d), after the epochs: every member's test accuracy within ACC_POINTS points of fp32's and its predictions agreeing
# on AGREEMENT of the test images (provisional: the table prints another seed's agreement beside it as the scale)
ACC_POINTS, AGREEMENT = 5.0, 0.80


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each part runs: the full GPU check or the CPU smoke test."""

    cohorts: tuple[int, ...]     # (a) cohort sizes
    variant_size: int            # (a) the cohort size every GPU option is measured at
    steps: int                   # timed steps per measurement (after one untimed warm-up epoch)
    equivalence_epochs: float    # (d) training of the compared cohorts
    dp_steps: int                # (c) timed DP-SGD steps
    dp_lot: int | None           # (c) lot size (None: config.yaml's)
    gan_steps: int               # (e) timed WGAN-GP generator steps
    max_batch: int | None        # recipes' batches cut to this, their epochs to 2 (None: as configured)
    timing_shape: tuple[int, int, int] | None  # (e) image shape of the timed steps (None: each job's dataset's)
    model_options: dict[str, dict[str, Any]]  # (a, b, d) options replacing a model's configured ones
    shares: dict[str, float]     # seconds each part may start measurements in


FULL = Sizes(cohorts=(1, 16, 64), variant_size=16, steps=20, equivalence_epochs=5, dp_steps=5, dp_lot=None,
             gan_steps=10, max_batch=None, timing_shape=None, model_options={},
             shares={"a": 170, "b": 100, "c": 30, "e": 40, "d": 90})
SMOKE = Sizes(cohorts=(1, 2), variant_size=2, steps=2, equivalence_epochs=0.5, dp_steps=1, dp_lot=64,
              gan_steps=1, max_batch=32, timing_shape=(8, 8, 1),
              model_options={"thesis_resnet": {"units": 1}, "airbench": {"width": 16}},
              shares={p: math.inf for p in "abced"})


class Skipped(RuntimeError):
    """A measurement not started: its part's share of the run's time was spent."""


class Share:
    """A part's share of the run's time: `check()` before each measurement refuses one started too late."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def check(self) -> None:
        """Raise Skipped once the share is spent."""
        if time.perf_counter() - self.start > self.seconds:
            raise Skipped(f"skipped: the part's {self.seconds:g} s were spent")


def guarded(share: Share, measure: Callable[[], dict[str, Any]], **row: Any) -> dict[str, Any]:
    """One measurement's row: its figures, or `error` (a failure's first line, or why it was skipped)."""
    try:
        share.check()
        return row | measure()
    except Exception as e:  # noqa: BLE001 - one failing measurement must not lose the others
        if isinstance(e, Skipped):
            return row | {"error": str(e)}
        return row | {"error": f"{type(e).__name__}: {e}".splitlines()[0], "traceback": traceback.format_exc(limit=-3)}


# --------------------------------------------------------------------------- config.yaml (here, for the bundle)


def with_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """Fill a JSON schema's defaults into `instance` in place, as Snakemake's validate does (properties,
    additionalProperties, items, $ref and allOf followed)."""
    if "$ref" in schema:
        node: Any = root
        for key in schema["$ref"].lstrip("#/").split("/"):
            node = node[key]
        return with_defaults(instance, node, root)
    for sub in schema.get("allOf", ()):
        with_defaults(instance, sub, root)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in instance and "default" in sub:
                instance[key] = json.loads(json.dumps(sub["default"]))
            if key in instance:
                with_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in instance.keys() - props.keys():
                with_defaults(instance[key], extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            with_defaults(item, schema["items"], root)
    return instance


def load_config(path: Path) -> dict[str, Any]:
    """A config file, its includes layered under it, with the schema's defaults filled in (needs PyYAML)."""
    import yaml

    from pipeline_lib.config import read_config

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    return with_defaults(read_config(path, ROOT), schema, schema)


def dataset_images(cfg: dict[str, Any], notes: list[str]) -> dict[str, tuple[int, int]]:
    """(train, test) image counts of every configured dataset; an absent npz archive is planned as CIFAR-10."""
    from pipeline_lib.artifacts import load_npz
    from pipeline_lib.data import local_path

    out = {}
    for name, spec in cfg["datasets"].items():
        path = local_path(spec["source"])
        if path is not None and not path.is_file():
            notes.append(f"dataset '{name}': {path} not found, planned as the registry's cifar10")
            spec["source"] = "cifar10"
            path = None
        if path is None:
            train_n, test_n = REGISTRY_IMAGES[spec["source"]]
        else:
            z = load_npz(path, {"y_train": "iu", "y_test": "iu"}, only={"y_train", "y_test"})
            train_n, test_n = len(z["y_train"]), len(z["y_test"])
        out[name] = (sum(spec["train_counts"]) if spec.get("train_counts") else train_n, test_n)
    return out


def training_jobs(cfg: dict[str, Any], images: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Every training job of a config: victim cohorts, surrogates, GANs (one per class pair) and input-aware
    attackers, each with its training-set size."""
    from pipeline_lib.config import classes_of, cohort_plan, example_classes
    from pipeline_lib.layout import partner_class

    plan = cohort_plan(cfg)
    jobs = [{"kind": "cohort", "dataset": c.dataset, "recipe": c.recipe, "defence": c.defence,
             "victims": len(c.members), "images": images[c.dataset][0]} for c in dict.fromkeys(plan.values())]
    for name, s in cfg["surrogates"].items():
        n = images[s["dataset"]][s["split"] == "test"]
        jobs.append({"kind": "surrogate", "dataset": s["dataset"], "recipe": s["recipe"],
                     "images": min(n, s.get("size") or n),
                     "pgd_steps": s["adversarial"]["steps"] if "adversarial" in s else 0})
    perturbations, attacks = cfg["perturbations"], cfg["attacks"]
    wanted = {(v.dataset, attacks[v.attack]["perturbation"], v.target) for v in plan
              if attacks[v.attack].get("perturbation")}
    wanted |= {(spec["dataset"], c["perturbation"], k) for fig, spec in cfg["figures"].items()
               if spec["kind"] == "examples" for c in spec["columns"].values() if "perturbation" in c
               for k in example_classes(cfg, fig)}
    pairs = {(d, perturbations[p]["gan"], k, partner_class(k, perturbations[p], classes_of(cfg, d)))
             for d, p, k in wanted
             if perturbations[p]["method"] == "gan_interpolation"}
    jobs += [{"kind": "gan", "dataset": d, "gan": g} for d, g, _, _ in sorted(pairs)]
    jobs += [{"kind": "input_aware", "dataset": d, "recipe": attacks[a]["recipe"], "images": images[d][0]}
             for d, a, _, _ in sorted({(v.dataset, v.attack, v.target, v.seed) for v in plan
                                       if plugins.method("attack", attacks[v.attack]["method"]).trigger == "trained"})]
    return jobs


def keys_of(kind: str, block: dict[str, Any]) -> dict[str, Any]:
    """A method block's keys with its dataclass's defaults filled in, as JSON values."""
    return json.loads(json.dumps(dataclasses.asdict(plugins.settings(kind, block)[1])))


def config_facts(path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the check reads from a config (its top-level keys replaced by `overrides`): its recipes, defences and
    GANs, the DP-SGD setting to time (the first dp_sgd defence, a recipe of its victims, its pretrained model's spec)
    and every training job."""
    from pipeline_lib.config import classes_of, source_info

    cfg, notes = load_config(path) | (overrides or {}), []
    # every defence block with its method's defaults and whether its members stack (the catalogue's traits)
    defences = {name: {"method": d["method"], **keys_of("defence", d),
                       "stacks": plugins.method("defence", d["method"]).stacks} for name, d in cfg["defences"].items()}
    images = dataset_images(cfg, notes)
    jobs = training_jobs(cfg, images)
    for job in jobs:
        job["shape"] = list(source_info(cfg, job["dataset"]).image_shape)
        job["num_classes"] = classes_of(cfg, job["dataset"])
    trained = {flops_key(j["recipe"], j["shape"]): (j["recipe"], j["shape"], j["num_classes"]) for j in jobs
               if "recipe" in j}
    flops = {key: step_flops(Recipe.from_config(cfg["recipes"][r]), shape, n) for key, (r, shape, n) in trained.items()}
    name = next(d for d, spec in cfg["defences"].items() if spec["method"] == "dp_sgd")
    spec = defences[name]
    public = cfg["surrogates"][spec["pretrained"]]
    block = cfg["recipes"][public["recipe"]]
    arch = {"name": block["model"], "in_channels": 3, "num_classes": classes_of(cfg, public["dataset"]),
            **block.get("model_options", {})}
    recipe = next(j["recipe"] for j in jobs if j.get("defence") == name)
    return {"config": path.name, "gpu": cfg["gpu"], "recipes": cfg["recipes"], "defences": defences,
            "gans": cfg["gans"],
            "dp": {"defence": name, "spec": spec, "recipe": recipe, "pretrained_arch": arch}, "jobs": jobs,
            "flops": flops, "notes": notes}


def flops_key(recipe: str, shape: list[int]) -> str:
    """The name of a recipe's model on one image shape in the bundle's FLOP table."""
    return f"{recipe}:{'x'.join(map(str, shape))}"


def step_flops(recipe: Recipe, shape: list[int], num_classes: int) -> float:
    """FLOPs of one training image through a recipe's model, forward and backward (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = models.build({"name": recipe.model, "in_channels": shape[-1], "num_classes": num_classes,
                          **recipe.model_options}).train()
    x = torch.rand(2, shape[-1], *shape[:2])
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


def write_bundle(config: Path, data: Path | None, folder: Path = BUNDLE) -> None:
    """The bundle: config.yaml's facts as JSON (for a GPU machine without PyYAML, jsonschema or pandas), the CIFAR-10
    subset (where it is found) and the smoke test's images: 256 + 256 uniform-noise 16x16 RGB images in 10 classes
    (airbench needs 9x9 at least; blank borders such as the digits' make batch norms amplify rounding far beyond
    what real images do, so that bf16 cannot be held to a bound there)."""
    folder.mkdir(exist_ok=True)
    source = data or SHARED_SUBSET
    if source.is_file():
        shutil.copyfile(source, folder / SUBSET_NAME)
    (x_train, y_train), (x_test, y_test) = (random_images([16, 16, 3], 256, 10, seed) for seed in (0, 1))
    classes = tuple(f"class {k}" for k in range(10))
    save_prepared(folder / SMOKE_NAME, Dataset(x_train, y_train, x_test, y_test, classes))
    (folder / FACTS_NAME).write_text(json.dumps(config_facts(config), indent=1))
    subset = f"{SUBSET_NAME} (from {source}), " if source.is_file() else f"no {SUBSET_NAME} ({source} not found), "
    print(f"wrote {folder}: {subset}{SMOKE_NAME} and {FACTS_NAME} (from {config}); carry it: gpu_bundle")


def load_facts(folder: Path) -> dict[str, Any]:
    """The bundle's config facts."""
    path = folder / FACTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: run `bench/gpu_check.py --bundle` here and carry gpu_bundle")
    return json.loads(path.read_text())





# --------------------------------------------------------------------------- measurements


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide the training loops' progress lines."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings end here)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh(device: torch.device) -> None:
    """Forget earlier compilations and peak-memory figures, so each measurement starts alike."""
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def steady_step_seconds(epochs: list[dict[str, float]], steps_per_epoch: int) -> float:
    """Seconds per step after the first (warm-up: autotuning, compilation) epoch of a training log."""
    return (epochs[-1]["seconds"] - epochs[0]["seconds"]) / ((len(epochs) - 1) * steps_per_epoch)


def load_data(smoke: bool, folder: Path, path: Path | None) -> tuple[Dataset, str]:
    """The check's images: the bundle's noise images for the smoke test, else the CIFAR-10 subset."""
    candidates = [folder / SMOKE_NAME] if smoke else [p for p in (path, folder / SUBSET_NAME, SHARED_SUBSET) if p]
    for p in candidates:
        if p.is_file():
            return load_prepared(p), str(p)
    raise FileNotFoundError(f"no images at {', '.join(map(str, candidates))} (run `bench/gpu_check.py --bundle` "
                            "here and carry gpu_bundle)")


def badnets_sets(x: np.ndarray, y: np.ndarray, size: int, num_classes: int) -> list[PoisonSet]:
    """`size` BadNets poison sets of 5% of the images (targets 0, 1, ..., then further seeds)."""
    trigger = plugins.method("trigger", "bottom_right").config(amplitude=255)  # no jsonschema on a bare GPU machine
    return [poison("badnets", x, y, m % num_classes, Amount(count=max(1, len(y) // 20)), trigger, m // num_classes)
            for m in range(size)]


def cohort_timing(ds: Dataset, recipe: Recipe, size: int, steps: int, device: torch.device,
                  accel: Accel) -> dict[str, Any]:
    """Seconds per step of a stacked cohort of `size` victims (two epochs of `steps` steps, the second timed),
    GPU memory per member, and what that makes of the recipe's victim on full CIFAR-10."""
    n = steps * recipe.batch_size
    x, y = ds.x_train[:n], ds.y_train[:n]
    fresh(device)
    with quiet():
        _, infos = train_stacked(x, y, badnets_sets(x, y, size, ds.num_classes), ds.num_classes,
                                 dataclasses.replace(recipe, epochs=2), 0, device, accel=accel)
    per_step = steady_step_seconds(infos[0]["epochs"], steps)
    full_steps = math.ceil(recipe.epochs * (REGISTRY_IMAGES["cifar10"][0] // recipe.batch_size))
    per_victim = full_steps * per_step / size
    memory = torch.cuda.max_memory_allocated(device) / size / 2**20 if device.type == "cuda" else None
    return {"seconds_per_step": per_step, "seconds_per_victim": per_victim, "victims_per_hour": 3600 / per_victim,
            "memory_mib_per_member": memory}


def solo_timing(recipe: Recipe, x: np.ndarray, y: np.ndarray, num_classes: int, device: torch.device,
                accel: Accel) -> dict[str, Any]:
    """One victim of `recipe` on (x, y) by train.train: wall seconds, steady seconds per step (epochs after the
    first) and the trained model."""
    fresh(device)
    sync(device)
    t0 = time.perf_counter()
    with quiet():
        model, info = train(x, y, num_classes, recipe, 0, device, accel=accel)
    sync(device)
    per_step = steady_step_seconds(info["epochs"], max(1, len(y) // recipe.batch_size))
    return {"seconds": time.perf_counter() - t0, "seconds_per_step": per_step, "model": model}


class Check:
    """One run's setting: its sizes, its device, and the GPU options measured there (on the CPU, applied there)."""

    def __init__(self, sizes: Sizes, device: torch.device, configured: dict[str, bool]) -> None:
        self.sizes, self.device = sizes, device
        on_cpu = device.type == "cpu"
        self.variants = [dataclasses.replace(a, on_cpu=on_cpu) for a in VARIANTS]
        self.default = Accel(**configured, on_cpu=on_cpu)  # the config's `gpu` block

    def part_a(self, ds: Dataset, recipe: Recipe, share: Share) -> dict[str, Any]:
        """Thesis-ResNet cohorts: each option at one size (first: the compiled ones are what the budget turns on),
        then each size under the config's options."""
        def row(size: int, accel: Accel) -> dict[str, Any]:
            return guarded(share, lambda: cohort_timing(ds, recipe, size, self.sizes.steps, self.device, accel),
                           size=size, accel=accel.label)
        variants = [row(self.sizes.variant_size, a) for a in self.variants]
        return {"recipe": dataclasses.asdict(recipe), "variants": variants,
                "cohorts": [row(m, self.default) for m in self.sizes.cohorts]}

    def part_b(self, ds: Dataset, recipe: Recipe, share: Share) -> dict[str, Any]:
        """The fast recipe, one victim under each option: seconds on this data, steady seconds per step, test
        accuracy, and the seconds of a victim on full CIFAR-10."""
        full_steps = math.ceil(recipe.epochs * (REGISTRY_IMAGES["cifar10"][0] // recipe.batch_size))

        def measure(accel: Accel) -> dict[str, Any]:
            run = solo_timing(recipe, ds.x_train, ds.y_train, ds.num_classes, self.device, accel)
            accuracy = float(np.mean(predict(run.pop("model"), ds.x_test, self.device) == ds.y_test))
            return run | {"test_accuracy": accuracy,
                          "seconds_per_victim_full_cifar10": full_steps * run["seconds_per_step"]}
        return {"recipe": dataclasses.asdict(recipe), "images": len(ds.y_train),
                "runs": [guarded(share, lambda a=a: measure(a), accel=a.label) for a in self.variants]}

    def part_c(self, ds: Dataset, facts: dict[str, Any], share: Share) -> dict[str, Any]:
        """DP-SGD as configured (microbatched, last layers of a pretrained model) and its frozen-SGD baseline."""
        accountant_stand_in()
        dp = facts["dp"]
        spec = dict(dp["spec"])
        if self.sizes.dp_lot:
            spec |= {"lot_size": self.sizes.dp_lot, "physical_batch": self.sizes.dp_lot // 2}
        recipe = Recipe.from_config(facts["recipes"][dp["recipe"]])
        arch = dp["pretrained_arch"] | {"in_channels": int(ds.x_train.shape[-1])}
        share.check()
        dp_step, sgd_step = (frozen_step_seconds(ds.x_train, ds.y_train, ds.num_classes, recipe, spec, arch,
                                                 self.sizes.dp_steps, self.device, private)
                             for private in (True, False))
        return {"defence": dp["defence"], "recipe": dp["recipe"], "lot_size": spec["lot_size"],
                "microbatches": spec["microbatches"], "physical_batch": spec["physical_batch"],
                "seconds_per_step": dp_step, "steps_per_second": 1 / dp_step, "frozen_sgd_seconds_per_step": sgd_step,
                "seconds_per_victim": spec["steps"] * dp_step}

    def part_d(self, ds: Dataset, recipe: Recipe, share: Share) -> dict[str, Any]:
        """Each option against fp32 on the device, from seed 0 (the same batches and augmentation draws, so the same
        computation), every option but bf16 together first: a 2-member cohort's weights after its first steps (4, so
        that CUDA graphs replay; 1 under bf16) in units of fp32's update, then each member's
        test accuracy and the share of test images predicted alike after the epochs; fp32 repeated and another
        seed show the device's own nondeterminism and the scale of a different computation."""
        x, y = ds.x_train, ds.y_train
        sets = badnets_sets(x, y, 2, ds.num_classes)
        steps_per_epoch = len(y) // recipe.batch_size

        def members(accel: Accel, epochs: float, seed: int = 0) -> list[models.Classifier]:
            fresh(self.device)
            with quiet():
                return train_stacked(x, y, sets, ds.num_classes, dataclasses.replace(recipe, epochs=epochs), seed,
                                     self.device, accel=accel)[0]

        fp32_runs: dict[float, list[models.Classifier]] = {}  # fp32's members after 0, 1 and 4 steps

        def fp32_after(epochs: float) -> list[models.Classifier]:
            if epochs not in fp32_runs:
                fp32_runs[epochs] = members(self.fp32, epochs)
            return fp32_runs[epochs]

        def first_steps(accel: Accel) -> dict[str, Any]:
            steps = 1 if accel.bf16 else 4  # 4: CUDA graphs are recorded after a warm-up call, then replayed
            epochs = (steps - 0.5) / steps_per_epoch
            gaps = [update_gap(got, r, s) for got, r, s in zip(members(accel, epochs), fp32_after(epochs),
                                                               fp32_after(0))]
            bound = STEP_BOUNDS["bf16" if accel.bf16 else self.device.type]
            return {"steps": steps, "gap": max(gaps), "bound": bound, "steps_ok": max(gaps) <= bound}

        def epochs_apart(accel: Accel) -> dict[str, Any]:
            got = [predict(m, ds.x_test, self.device) for m in members(accel, self.sizes.equivalence_epochs)]
            acc, acc_ref = (100 * np.array([np.mean(p == ds.y_test) for p in ps]) for ps in (got, reference))
            agree = [float(np.mean(a == b)) for a, b in zip(got, reference)]
            return {"accuracy": acc.tolist(), "fp32_accuracy": acc_ref.tolist(), "agreement": agree,
                    "epochs_ok": bool(np.all(np.abs(acc - acc_ref) <= ACC_POINTS) and min(agree) >= AGREEMENT)}

        share.check()
        reference = [predict(m, ds.x_test, self.device) for m in members(self.fp32, self.sizes.equivalence_epochs)]
        control = guarded(share, lambda: {"agreement": [float(np.mean(a == b)) for a, b in zip(reference, [
            predict(m, ds.x_test, self.device) for m in members(self.fp32, self.sizes.equivalence_epochs, seed=1)])]})
        repeat = guarded(share, lambda: first_steps(self.fp32), accel="fp32 again")
        every_fp32 = dataclasses.replace(self.fp32, channels_last=True, compile=True, cuda_graphs=True)
        rows = [guarded(share, lambda a=a: first_steps(a) | epochs_apart(a), accel=a.label)
                for a in [every_fp32] + self.variants[1:]]
        for r in [repeat] + rows:
            r["ok"] = r.get("steps_ok", False) and r.get("epochs_ok", True)
        return {"epochs": self.sizes.equivalence_epochs, "bounds": STEP_BOUNDS,
                "tolerance": {"accuracy_points": ACC_POINTS, "agreement": AGREEMENT}, "fp32_repeat": repeat,
                "rows": rows, "seed_control": control,
                "equivalent": all(r.get("ok", False) for r in rows) and repeat.get("ok", False)}

    @property
    def fp32(self) -> Accel:
        """No option, on any device."""
        return self.variants[0]


def frozen_step_seconds(x: np.ndarray, y: np.ndarray, num_classes: int, recipe: Recipe, spec: dict[str, Any],
                        arch: dict[str, Any], steps: int, device: torch.device, private: bool) -> float:
    """Steady seconds per lot of privacy.train_frozen (DP-SGD or its frozen-SGD baseline) on a randomly
    initialised 'pretrained' model of the configured architecture."""
    lots_per_pass = max(1, len(y) // spec["lot_size"])
    with tempfile.TemporaryDirectory() as tmp:
        pretrained = str(Path(tmp) / "pretrained.pt")
        models.save_weights(pretrained, arch, models.build(arch))
        with quiet():
            _, info = privacy.train_frozen(x, y, recipe, {**spec, "steps": lots_per_pass + steps}, 0, device,
                                            pretrained, num_classes, private)
    first, last = info["epochs"][0], info["epochs"][-1]
    return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def accountant_stand_in() -> None:
    """Where opacus is absent, a stand-in for its RDP accountant (which only does per-step CPU bookkeeping), so
    that train_frozen's microbatched path runs as it is; the epsilon it reports is then NaN."""
    try:
        import opacus.accountants  # noqa: F401
    except ImportError:
        import types

        class RDPAccountant:
            """Counts nothing."""

            def step(self, **_: Any) -> None:
                """Ignore one step."""

            def get_epsilon(self, delta: float) -> float:
                """Not accounted."""
                return math.nan

        accountants = types.ModuleType("opacus.accountants")
        accountants.RDPAccountant = RDPAccountant
        sys.modules.setdefault("opacus", types.ModuleType("opacus"))
        sys.modules["opacus.accountants"] = accountants




def cut(recipe: Recipe, sizes: Sizes) -> Recipe:
    """A recipe as the sizes run it: in the smoke test two epochs of a smaller model in batches of at most
    `max_batch` at the same rate per image."""
    if sizes.max_batch is None:
        return recipe
    batch = min(recipe.batch_size, sizes.max_batch)
    options = recipe.model_options | sizes.model_options.get(recipe.model, {})
    return dataclasses.replace(recipe, epochs=2, batch_size=batch, lr=recipe.lr * batch / recipe.batch_size,
                               model_options=options)


def random_images(shape: list[int], n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images of an HWC shape with random labels (for timings and the smoke test)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, num_classes, n)


def measured(rows: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """The rows that hold figures, or an error saying that none does."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        raise RuntimeError(f"no {what} was measured")
    return ok


class JobCosts(ABC):
    """Device seconds of every kind of training job of a config, from a few rates that subclasses give: a solo
    step per image, a stacked cohort's step, a WGAN-GP generator update, a DP-SGD lot."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts, self.recipes = facts, facts["recipes"]

    @abstractmethod
    def per_image(self, name: str, shape: list[int], num_classes: int) -> tuple[float, str]:
        """Seconds per training image of a recipe trained alone, and what they rest on."""

    @abstractmethod
    def cohort_step(self, name: str, recipe: Recipe, shape: list[int], num_classes: int,
                    members: int) -> tuple[float, str]:
        """Seconds per step of a stacked cohort of a recipe, and what they rest on."""

    @abstractmethod
    def gan_step(self, name: str, shape: list[int]) -> float:
        """Seconds per WGAN-GP generator update with its critic updates."""

    @abstractmethod
    def dp_step(self, private: bool) -> float:
        """Seconds per lot of the configured DP-SGD (or, not private, its frozen-SGD baseline)."""

    def job_seconds(self, job: dict[str, Any]) -> tuple[float, str]:
        """Device seconds of one training job and what they rest on."""
        if job["kind"] == "gan":
            return self.facts["gans"][job["gan"]]["steps"] * self.gan_step(job["gan"], job["shape"]), "WGAN-GP updates"
        recipe = Recipe.from_config(self.recipes[job["recipe"]])
        per_image, basis = self.per_image(job["recipe"], job["shape"], job["num_classes"])
        whole = recipe.epochs * job["images"] * per_image
        if job["kind"] == "surrogate":
            return whole * (1 + job["pgd_steps"]), f"{basis}; solo, scaled"
        if job["kind"] == "input_aware":
            return whole, f"{basis}; classifier only (lower bound)"
        spec = self.facts["defences"].get(job["defence"], {"method": "none", "stacks": True})
        m, method = job["victims"], spec["method"]
        if method in ("dp_sgd", "frozen_sgd"):
            return m * spec["steps"] * self.dp_step(method == "dp_sgd"), "DP-SGD lots"
        if method == "abl":
            epochs = spec["isolation_epochs"] + spec["finetuning_epochs"] + spec["unlearning_epochs"] * spec[
                "isolation_ratio"]
            return m * epochs * job["images"] * per_image, f"{basis}; solo, scaled"
        if spec["stacks"] and not recipe.trace_per_epoch:
            pgd = 1 + spec.get("steps", 0) if method == "adv_training" else 1
            steps = math.ceil(recipe.epochs * (job["images"] // recipe.batch_size))
            step, basis = self.cohort_step(job["recipe"], recipe, job["shape"], job["num_classes"], m)
            return pgd * steps * step, basis
        return m * whole, f"{basis}; solo x members"  # traced recipes and the sanitisers' retraining: one after another


class Rates(JobCosts):
    """The rates measured: parts (a)-(c) and, for the models they do not cover, a few steps timed here (or, where a
    model cannot be built here, its FLOPs from the bundle against the thesis ResNet's)."""

    def __init__(self, results: dict[str, Any], facts: dict[str, Any], check: Check) -> None:
        super().__init__(facts)
        self.results, self.check, self.sizes, self.device = results, check, check.sizes, check.device
        self.thesis_name = next(n for n, r in self.recipes.items() if r["model"] == "thesis_resnet")
        self.solo: dict[str, tuple[float, str]] = {}
        self.gan: dict[str, float] = {}

    def part(self, name: str) -> dict[str, Any]:
        """A part's figures, or an error where it failed."""
        figures = self.results.get(name, {"error": "not run"})
        if "error" in figures:
            raise RuntimeError(f"part {name} has no figures ({figures['error'][:80]})")
        return figures

    def stacked_step(self, size: int) -> float:
        """Seconds per step of a thesis-ResNet cohort: linear between the measured sizes, proportional beyond."""
        sizes, secs = zip(*sorted((r["size"], r["seconds_per_step"])
                                  for r in measured(self.part("a")["cohorts"], "thesis-ResNet cohort")))
        if size >= sizes[-1]:
            return secs[-1] * size / sizes[-1]
        return float(np.interp(size, sizes, secs))

    def thesis(self) -> Recipe:
        """The thesis recipe as part (a) ran it."""
        return Recipe(**self.part("a")["recipe"])

    def per_image(self, name: str, shape: list[int], num_classes: int) -> tuple[float, str]:
        """Solo seconds per training image of a recipe and what they rest on: (a) for the thesis ResNet, (b) for
        airbench, else a few timed steps on random images of the dataset's shape."""
        recipe = cut(Recipe.from_config(self.recipes[name]), self.sizes)
        if recipe.model == "thesis_resnet":
            return self.stacked_step(1) / self.thesis().batch_size, "(a)"
        if recipe.model == "airbench":
            b = self.part("b")
            runs = measured(b["runs"], "fast-recipe run")
            run = next((r for r in runs if r["accel"] == self.check.default.label), runs[0])
            return run["seconds_per_step"] / b["recipe"]["batch_size"], f"(b) {run['accel']}"
        timed = list(self.sizes.timing_shape or shape)
        key = f"{name}:{timed}:{num_classes}"
        if key not in self.solo:
            x, y = random_images(timed, recipe.batch_size * self.sizes.steps, num_classes)
            try:
                step = solo_timing(dataclasses.replace(recipe, epochs=2), x, y, num_classes, self.device,
                                   self.check.default)["seconds_per_step"]
                self.solo[key] = step / recipe.batch_size, "timed steps"
            except ImportError as e:  # torchvision's models, on a machine without it
                flops = self.facts["flops"]
                ratio = flops[flops_key(name, shape)] / flops[flops_key(self.thesis_name, [32, 32, 3])]
                base, _ = self.per_image(self.thesis_name, [32, 32, 3], 10)
                self.solo[key] = base * ratio, f"FLOPs x (a), not built here: {str(e)[:50]}"
        return self.solo[key]

    def gan_step(self, name: str, shape: list[int]) -> float:
        """Seconds per WGAN-GP generator update (with its critic updates), the second of two timed runs."""
        shape = list(self.sizes.timing_shape or shape)
        key = f"{name}:{shape}"
        if key not in self.gan:
            x = to_float(torch.from_numpy(random_images(shape, 256, 2)[0])).to(self.device)
            runs = []
            for steps in (1, 1 + self.sizes.gan_steps):
                recipe = GanRecipe.from_config(self.facts["gans"][name] | {"steps": steps})
                with quiet():
                    runs.append(train_wgan_gp(x, recipe, 0)[1]["seconds"])
            self.gan[key] = max(runs[1] - runs[0], 0) / self.sizes.gan_steps
        return self.gan[key]

    def cohort_step(self, name: str, recipe: Recipe, shape: list[int], num_classes: int,
                    members: int) -> tuple[float, str]:
        """(a)'s stacked steps for the thesis ResNet (at its batch), else members times a solo step."""
        if recipe.model == "thesis_resnet":
            return self.stacked_step(members) * recipe.batch_size / self.thesis().batch_size, "(a) stacked"
        per_image, basis = self.per_image(name, shape, num_classes)
        return members * per_image * recipe.batch_size, f"{basis}; solo x members"

    def dp_step(self, private: bool) -> float:
        """(c)'s lots."""
        return self.part("c")["seconds_per_step" if private else "frozen_sgd_seconds_per_step"]


def part_e(results: dict[str, Any], facts: dict[str, Any], check: Check, share: Share) -> dict[str, Any]:
    """Projected device-hours of every training job of the config from the rates measured."""
    return project(Rates(results, facts, check), facts, share)


def project(rates: JobCosts, facts: dict[str, Any], share: Share) -> dict[str, Any]:
    """Device-hours of every training job of the config, grouped by kind, recipe and defence; a group that cannot
    be projected is an error row, and the total then covers the others only."""
    groups: dict[str, dict[str, Any]] = {}
    for job in facts["jobs"]:
        key = " ".join(str(job[k]) for k in ("kind", "recipe", "defence", "gan") if k in job)
        g = groups.setdefault(key, {"jobs": 0, "victims": 0, "hours": 0.0})
        g["jobs"] += 1
        g["victims"] += job.get("victims", 0)
        if "error" in g:
            continue
        try:
            share.check()
            seconds, g["basis"] = rates.job_seconds(job)
            g["hours"] += seconds / 3600
        except Exception as e:  # noqa: BLE001 - the other groups are still projected
            g["error"] = str(e) if isinstance(e, Skipped) else f"{type(e).__name__}: {e}".splitlines()[0]
    total = sum(g["hours"] for g in groups.values() if "error" not in g)
    complete = not any("error" in g for g in groups.values())
    return {"config": facts["config"], "goal_hours": GOAL_GPU_HOURS, "total_hours": total, "complete": complete,
            "within_goal": complete and total <= GOAL_GPU_HOURS, "groups": groups, "notes": facts["notes"]}


# --------------------------------------------------------------------------- the run


def table(results: dict[str, Any]) -> list[str]:
    """The short table: one line per figure or error row, or the error of a part that failed."""
    lines = []

    def row(part: str, what: str, value: str) -> None:
        lines.append(f"{part:<2} {what:<44} {value}")

    def failed(part: str, what: str, r: dict[str, Any]) -> bool:
        if "error" in r:
            row(part, what, ("SKIPPED " if r["error"].startswith("skipped") else "FAILED ") + r["error"][:100])
        return "error" in r

    for part, figures in results.items():
        if failed(part, "the part", figures):
            pass
        elif part == "a":
            for r in figures["variants"] + figures["cohorts"]:
                if not failed(part, f"cohort {r['size']} {r['accel']}", r):
                    mem = f", {r['memory_mib_per_member']:.0f} MiB/member" if r["memory_mib_per_member"] else ""
                    row(part, f"cohort {r['size']} {r['accel']}", f"{r['seconds_per_step'] * 1000:.1f} ms/step, "
                        f"{r['victims_per_hour']:.1f} victims/h{mem}")
        elif part == "b":
            for r in figures["runs"]:
                if not failed(part, f"fast recipe {r['accel']}", r):
                    row(part, f"fast recipe {r['accel']}", f"{r['seconds_per_victim_full_cifar10']:.1f} s/victim "
                        f"(full CIFAR-10), {r['seconds']:.1f} s here, acc {100 * r['test_accuracy']:.1f}%")
        elif part == "c":
            row(part, f"DP-SGD {figures['defence']} (lot {figures['lot_size']}, {figures['microbatches']} mb)",
                f"{figures['steps_per_second']:.2f} steps/s, {figures['seconds_per_victim'] / 3600:.2f} h/victim, "
                f"frozen SGD {1 / figures['frozen_sgd_seconds_per_step']:.2f} steps/s")
        elif part == "d":
            for r in [figures["fp32_repeat"]] + figures["rows"]:
                if not failed(part, f"equivalence {r['accel']}", r):
                    later = (f"; after {figures['epochs']:g} epochs acc {', '.join(f'{a:.1f}' for a in r['accuracy'])}"
                             f" vs {', '.join(f'{a:.1f}' for a in r['fp32_accuracy'])}, agree "
                             f"{', '.join(f'{100 * a:.0f}%' for a in r['agreement'])}") if "agreement" in r else ""
                    row(part, f"equivalence {r['accel']}", f"gap {r['gap']:.1e} of the update after {r['steps']} "
                        f"(bound {r['bound']:g}){later} {'ok' if r['ok'] else 'OUT OF TOLERANCE'}")
            if not failed(part, "another seed's agreement", figures["seed_control"]):
                row(part, "another seed's agreement", ", ".join(f"{100 * a:.1f}%"
                                                              for a in figures["seed_control"]["agreement"]))
        elif part == "e":
            costed = {k: g for k, g in figures["groups"].items() if "error" not in g}
            for key, g in sorted(costed.items(), key=lambda kv: -kv[1]["hours"])[:8]:
                row(part, key[:44], f"{g['hours']:.2f} h, {g['jobs']} jobs ({g['basis']})")
            for key, g in figures["groups"].items():
                if "error" in g:
                    failed(part, key[:44], g)
            row(part, f"total of {figures['config']} ({sum(g['jobs'] for g in figures['groups'].values())} jobs)",
                f"{figures['total_hours']:.2f} device-hours{'' if figures['complete'] else ' (INCOMPLETE)'}, goal "
                f"{figures['goal_hours']:g}: "
                f"{'within' if figures['within_goal'] else 'OVER' if figures['complete'] else 'unknown'}")
        if "seconds" in figures:
            row(part, "(part's wall time)", f"{figures['seconds']:.1f} s")
    return lines


def main() -> None:
    """Run every part in its own guard, then print the table and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, the GPU options applied there")
    p.add_argument("--bundle", action="store_true", help="write the bundle for the GPU machine and stop")
    p.add_argument("--bundle-dir", type=Path, default=BUNDLE, help="the bundle's folder (default: gpu_bundle/)")
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml", help="the config the bundle plans")
    p.add_argument("--data", type=Path, default=None, help="the CIFAR-10 subset (default: the bundle's, ../shared)")
    p.add_argument("--parts", default="abced", help="which parts to run")
    args = p.parse_args()
    if args.bundle:
        return write_bundle(args.config, args.data, args.bundle_dir)
    sizes = SMOKE if args.smoke else FULL
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    facts = load_facts(args.bundle_dir)
    check = Check(sizes, device, facts["gpu"])
    out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check: {name}, torch {torch.__version__}, {'smoke' if args.smoke else 'full'} sizes", flush=True)
    results: dict[str, Any] = {}
    cache: dict[str, Any] = {}

    def data() -> Dataset:
        """The images, loaded once."""
        if "data" not in cache:
            cache["data"], cache["data_name"] = load_data(args.smoke, args.bundle_dir, args.data)
            print(f"data: {cache['data_name']}, {len(cache['data'].y_train)} training images", flush=True)
        return cache["data"]

    def recipe(model: str) -> Recipe:
        """The config's first recipe of a model."""
        return cut(Recipe.from_config(next(r for r in facts["recipes"].values() if r["model"] == model)), sizes)

    parts: dict[str, Callable[[Share], dict[str, Any]]] = {
        "a": lambda share: check.part_a(data(), recipe("thesis_resnet"), share),
        "b": lambda share: check.part_b(data(), recipe("airbench"), share),
        "c": lambda share: check.part_c(data(), facts, share),
        "e": lambda share: part_e(results, facts, check, share),
        "d": lambda share: check.part_d(data(), recipe("thesis_resnet"), share),  # last: nothing needs it
    }
    t_start = time.perf_counter()
    for part, run in parts.items():
        if part not in args.parts:
            continue
        t0 = time.perf_counter()
        print(f"part {part} ...", flush=True)
        seed_everything(0)
        try:
            with prevalidated():  # the bundle's blocks were checked when it was written
                results[part] = run(Share(sizes.shares[part]))
        except Exception as e:  # noqa: BLE001 - a failing part must not stop the others
            results[part] = {"error": f"{type(e).__name__}: {e}".splitlines()[0],
                             "traceback": traceback.format_exc(limit=-4)}
            print(f"part {part} FAILED: {results[part]['error']}", flush=True)
        results[part]["seconds"] = time.perf_counter() - t0
        if out is not None:  # after every part, so a run cut short keeps what it measured
            out.write_text(json.dumps({"device": name, "torch": torch.__version__, "smoke": args.smoke,
                                       "notes": facts["notes"], "parts": results}, indent=1, default=str))
    print(f"\ngpu_check: {time.perf_counter() - t_start:.0f} s on {name}")
    print("\n".join(table(results)), flush=True)


if __name__ == "__main__":
    main()
