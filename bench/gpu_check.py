"""GPU check (issue 22): every figure the GPU performance goal needs, in one command of a few minutes.

    python bench/gpu_check.py --bundle      # here, once: gpu_bundle/ = the CIFAR-10 subset + config.yaml's plan
    python bench/gpu_check.py               # on the GPU machine (needs only torch and numpy; no Snakemake, opacus)
    python bench/gpu_check.py --smoke       # tiny sizes on the CPU (digits), what CI runs

Parts, each in its own guard (a failure prints one line and the run goes on):
  a  thesis-ResNet victims per GPU-hour at cohort sizes 1, 16, 64 (stacked training), GPU memory per member,
     and at one size each GPU option (fp32, bf16, bf16 + channels-last, + torch.compile, + CUDA graphs)
  b  seconds per victim of the fast (airbench-style) recipe
  c  DP-SGD steps per second as config.yaml configures it (microbatched; its frozen-SGD baseline too)
  d  equivalence: a 2-member cohort from one seed on the GPU, under every option, against the CPU
  e  the projected GPU-hours of every training job of config.yaml, against the goal of 2
A short table comes last; the full figures go to $OUT/gpu_check.json when OUT is set.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the library from this checkout, no install needed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline_lib import models, plugins, privacy  # noqa: E402
from pipeline_lib.accel import Accel  # noqa: E402
from pipeline_lib.poisons import PoisonSet, poison  # noqa: E402
from pipeline_lib.data import Dataset, load_source  # noqa: E402
from pipeline_lib.gan import GanRecipe, train_wgan_gp  # noqa: E402
from pipeline_lib.layout import Amount  # noqa: E402
from pipeline_lib.models import predict, to_float  # noqa: E402
from pipeline_lib.stacking import train_stacked  # noqa: E402
from pipeline_lib.train import Recipe, train  # noqa: E402

BUNDLE = ROOT / "gpu_bundle"                      # git-ignored: what the GPU call carries
SUBSET_NAME = "cifar10_subset.npz"
FACTS_NAME = "config_facts.json"
SHARED_SUBSET = ROOT.parent / "shared/data" / SUBSET_NAME
GOAL_GPU_HOURS = 2.0
# (train, test) images of the registry sources, for sources whose class sizes the config cannot read
REGISTRY_IMAGES = {"cifar10": (50000, 10000), "cifar100": (50000, 10000), "cifar100_coarse": (50000, 10000),
                   "mnist": (60000, 10000), "digits": (1347, 450)}
# every GPU option in turn (labels: cl = channels-last, graphs = CUDA graphs)
VARIANTS = (Accel(bf16=False, channels_last=False), Accel(channels_last=False), Accel(), Accel(compile=True),
            Accel(compile=True, cuda_graphs=True))
# (d): a GPU run matches the CPU run when every member's test accuracy is within ACC_POINTS points and its
# predictions agree on at least AGREEMENT of the test images (provisional; the README's GPU check says why)
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


FULL = Sizes(cohorts=(1, 16, 64), variant_size=16, steps=20, equivalence_epochs=5, dp_steps=5, dp_lot=None,
             gan_steps=10, max_batch=None, timing_shape=None)
SMOKE = Sizes(cohorts=(1, 2), variant_size=2, steps=2, equivalence_epochs=0.5, dp_steps=1, dp_lot=64,
              gan_steps=1, max_batch=32, timing_shape=(8, 8, 1))


# --------------------------------------------------------------------------- config.yaml, torch-free


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
    """A config file with the schema's defaults filled in (needs PyYAML)."""
    import yaml

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    return with_defaults(yaml.safe_load(path.read_text()), schema, schema)


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


def config_facts(path: Path) -> dict[str, Any]:
    """What the check reads from a config: its recipes, defences and GANs, the DP-SGD setting to time (the first
    dp_sgd defence, a recipe of its victims, its pretrained model's spec) and every training job."""
    from pipeline_lib.config import classes_of, source_info

    cfg, notes = load_config(path), []
    # every defence block with its method's defaults and whether its members stack (the catalogue's traits)
    defences = {name: {"method": d["method"], **keys_of("defence", d),
                       "stacks": plugins.method("defence", d["method"]).stacks} for name, d in cfg["defences"].items()}
    images = dataset_images(cfg, notes)
    jobs = training_jobs(cfg, images)
    for job in jobs:
        job["shape"] = list(source_info(cfg, job["dataset"]).image_shape)
    name = next(d for d, spec in cfg["defences"].items() if spec["method"] == "dp_sgd")
    spec = defences[name]
    public = cfg["surrogates"][spec["pretrained"]]
    block = cfg["recipes"][public["recipe"]]
    arch = {"name": block["model"], "in_channels": 3, "num_classes": classes_of(cfg, public["dataset"]),
            **block.get("model_options", {})}
    recipe = next(j["recipe"] for j in jobs if j.get("defence") == name)
    return {"config": path.name, "recipes": cfg["recipes"], "defences": defences, "gans": cfg["gans"],
            "dp": {"defence": name, "spec": spec, "recipe": recipe, "pretrained_arch": arch}, "jobs": jobs,
            "notes": notes}


def load_facts(config: Path) -> dict[str, Any]:
    """config.yaml's facts, read live where PyYAML and pandas are importable, else from the bundle."""
    try:
        return config_facts(config)
    except ImportError as e:
        bundled = BUNDLE / FACTS_NAME
        if not bundled.is_file():
            raise ImportError(f"{e}; and no {bundled}: run `bench/gpu_check.py --bundle` and carry gpu_bundle")
        return json.loads(bundled.read_text()) | {"notes": [f"config read from {bundled} ({e})"]}


# --------------------------------------------------------------------------- measurements


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide the training loops' progress lines."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings end here)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def fresh(device: torch.device) -> None:
    """Forget earlier compilations and peak-memory figures, so each measurement starts alike."""
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def steady_step_seconds(epochs: list[dict[str, float]], steps_per_epoch: int) -> float:
    """Seconds per step after the first (warm-up: autotuning, compilation) epoch of a training log."""
    return (epochs[-1]["seconds"] - epochs[0]["seconds"]) / ((len(epochs) - 1) * steps_per_epoch)


def load_data(smoke: bool, path: Path | None) -> tuple[Dataset, str]:
    """The check's images: 256 of scikit-learn's digits at 16x16 (airbench's minimum is 9x9) for the smoke
    test, else the CIFAR-10 subset."""
    if smoke:
        ds = load_source("digits", ROOT / "data")
        big = {f"x_{s}": getattr(ds, f"x_{s}")[:256].repeat(2, axis=1).repeat(2, axis=2) for s in ("train", "test")}
        return dataclasses.replace(ds, **big, y_train=ds.y_train[:256], y_test=ds.y_test[:256]), "digits, 16x16"
    for p in (path, BUNDLE / SUBSET_NAME, SHARED_SUBSET):
        if p is not None and p.is_file():
            return load_source(f"npz:{p}", ROOT / "data"), str(p)
    raise FileNotFoundError(f"no CIFAR-10 subset at {BUNDLE / SUBSET_NAME} or {SHARED_SUBSET} "
                            "(run `bench/gpu_check.py --bundle` here and carry gpu_bundle)")


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
    memory = torch.cuda.max_memory_allocated() / size / 2**20 if device.type == "cuda" else None
    return {"size": size, "accel": accel.label, "seconds_per_step": per_step, "seconds_per_victim": per_victim,
            "victims_per_hour": 3600 / per_victim, "memory_mib_per_member": memory}


def solo_timing(recipe: Recipe, x: np.ndarray, y: np.ndarray, num_classes: int, device: torch.device,
                accel: Accel = Accel()) -> dict[str, Any]:
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


def part_a(ds: Dataset, recipe: Recipe, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Thesis-ResNet cohorts: each size under the default options, then each option at one size."""
    rows = [cohort_timing(ds, recipe, m, sizes.steps, device, Accel(channels_last=False)) for m in sizes.cohorts]
    variants = [cohort_timing(ds, recipe, sizes.variant_size, sizes.steps, device, a) for a in VARIANTS]
    return {"recipe": dataclasses.asdict(recipe), "cohorts": rows, "variants": variants}


def part_b(ds: Dataset, recipe: Recipe, device: torch.device) -> dict[str, Any]:
    """The fast recipe, one victim under each option: seconds on this data, steady seconds per step, test
    accuracy, and the seconds of a victim on full CIFAR-10."""
    full_steps = math.ceil(recipe.epochs * (REGISTRY_IMAGES["cifar10"][0] // recipe.batch_size))
    rows = []
    for accel in VARIANTS:
        run = solo_timing(recipe, ds.x_train, ds.y_train, ds.num_classes, device, accel)
        accuracy = float(np.mean(predict(run.pop("model"), ds.x_test, device) == ds.y_test))
        rows.append(run | {"accel": accel.label, "test_accuracy": accuracy,
                           "seconds_per_victim_full_cifar10": full_steps * run["seconds_per_step"]})
    return {"recipe": dataclasses.asdict(recipe), "images": len(ds.y_train), "runs": rows}


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


def part_c(ds: Dataset, facts: dict[str, Any], sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """DP-SGD as configured (microbatched, last layers of a pretrained model) and its frozen-SGD baseline."""
    accountant_stand_in()
    dp = facts["dp"]
    spec = dict(dp["spec"])
    if sizes.dp_lot:
        spec |= {"lot_size": sizes.dp_lot, "physical_batch": sizes.dp_lot // 2}
    recipe = Recipe.from_config(facts["recipes"][dp["recipe"]])
    arch = dp["pretrained_arch"] | {"in_channels": int(ds.x_train.shape[-1])}
    dp_step, sgd_step = (frozen_step_seconds(ds.x_train, ds.y_train, ds.num_classes, recipe, spec, arch,
                                             sizes.dp_steps, device, private) for private in (True, False))
    return {"defence": dp["defence"], "recipe": dp["recipe"], "lot_size": spec["lot_size"],
            "microbatches": spec["microbatches"], "physical_batch": spec["physical_batch"],
            "seconds_per_step": dp_step, "steps_per_second": 1 / dp_step, "frozen_sgd_seconds_per_step": sgd_step,
            "seconds_per_victim": spec["steps"] * dp_step}


def part_d(ds: Dataset, recipe: Recipe, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """A 2-member cohort from seed 0 on the CPU and on `device` under each option: per member, the test
    accuracies and the share of test images both predict alike; `equivalent` when every option is in tolerance.
    A control run from seed 1 shows how far apart runs that are not the same computation land."""
    x, y = ds.x_train, ds.y_train
    sets = badnets_sets(x, y, 2, ds.num_classes)
    short = dataclasses.replace(recipe, epochs=sizes.equivalence_epochs)
    cpu = torch.device("cpu")

    def predictions(where: torch.device, accel: Accel, seed: int = 0) -> list[np.ndarray]:
        """Each member's test predictions after training on `where`."""
        fresh(where)
        with quiet():
            members, _ = train_stacked(x, y, sets, ds.num_classes, short, seed, where, accel=accel)
        return [predict(m, ds.x_test, where) for m in members]

    reference = predictions(cpu, Accel())
    control = [float(np.mean(ref == got)) for ref, got in zip(reference, predictions(device, Accel(), seed=1))]
    rows = []
    for accel in VARIANTS:
        for m, (ref, got) in enumerate(zip(reference, predictions(device, accel))):
            acc_ref, acc = 100 * float(np.mean(ref == ds.y_test)), 100 * float(np.mean(got == ds.y_test))
            agree = float(np.mean(ref == got))
            rows.append({"accel": accel.label, "member": m, "cpu_accuracy": acc_ref, "accuracy": acc,
                         "agreement": agree, "ok": abs(acc - acc_ref) <= ACC_POINTS and agree >= AGREEMENT})
    return {"epochs": sizes.equivalence_epochs, "tolerance": {"accuracy_points": ACC_POINTS, "agreement": AGREEMENT},
            "members": rows, "seed_control_agreement": control, "equivalent": all(r["ok"] for r in rows)}


def cut(recipe: Recipe, sizes: Sizes) -> Recipe:
    """A recipe as the sizes run it: smaller batches and two epochs in the smoke test."""
    if sizes.max_batch is None:
        return recipe
    return dataclasses.replace(recipe, epochs=2, batch_size=min(recipe.batch_size, sizes.max_batch))


def random_images(shape: list[int], n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images of an HWC shape with random labels (for timings only)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, num_classes, n)


class Rates:
    """Seconds of each kind of training work, from parts (a)-(c) and, for the models they do not cover, from a
    few steps timed here."""

    def __init__(self, results: dict[str, Any], facts: dict[str, Any], sizes: Sizes, device: torch.device) -> None:
        self.cohort = sorted((r["size"], r["seconds_per_step"]) for r in results["a"]["cohorts"])
        self.thesis = Recipe(**results["a"]["recipe"])
        fast = results["b"]["runs"][0]  # the default options
        self.fast_per_image = fast["seconds_per_step"] / results["b"]["recipe"]["batch_size"]
        self.dp, self.sgd = results["c"]["seconds_per_step"], results["c"]["frozen_sgd_seconds_per_step"]
        self.recipes, self.sizes, self.device = facts["recipes"], sizes, device
        self.solo: dict[str, float] = {}
        self.gan: dict[str, float] = {}
        self.gans = facts["gans"]

    def stacked_step(self, size: int) -> float:
        """Seconds per step of a thesis-ResNet cohort: linear between the measured sizes, proportional beyond."""
        sizes, secs = zip(*self.cohort)
        if size >= sizes[-1]:
            return secs[-1] * size / sizes[-1]
        return float(np.interp(size, sizes, secs))

    def per_image(self, name: str, shape: list[int]) -> float:
        """Solo seconds per training image of a recipe: from (a) for the thesis ResNet, (b) for airbench, else
        from a few timed steps on random images of the dataset's shape."""
        recipe = cut(Recipe.from_config(self.recipes[name]), self.sizes)
        if recipe.model == self.thesis.model:
            return self.stacked_step(1) / self.thesis.batch_size
        if recipe.model == "airbench":
            return self.fast_per_image
        shape = list(self.sizes.timing_shape or shape)
        key = f"{recipe.model}:{shape}"
        if key not in self.solo:
            x, y = random_images(shape, recipe.batch_size * self.sizes.steps, 10)
            short = dataclasses.replace(recipe, epochs=2)
            self.solo[key] = solo_timing(short, x, y, 10, self.device)["seconds_per_step"] / recipe.batch_size
        return self.solo[key]

    def gan_step(self, name: str, shape: list[int]) -> float:
        """Seconds per WGAN-GP generator update (with its critic updates), the second of two timed runs."""
        shape = list(self.sizes.timing_shape or shape)
        key = f"{name}:{shape}"
        if key not in self.gan:
            x = to_float(torch.from_numpy(random_images(shape, 256, 2)[0])).to(self.device)
            runs = []
            for steps in (1, 1 + self.sizes.gan_steps):
                recipe = GanRecipe.from_config(self.gans[name] | {"steps": steps})
                with quiet():
                    runs.append(train_wgan_gp(x, recipe, 0)[1]["seconds"])
            self.gan[key] = max(runs[1] - runs[0], 0) / self.sizes.gan_steps
        return self.gan[key]

    def job_seconds(self, job: dict[str, Any], defences_cfg: dict[str, Any]) -> tuple[float, str]:
        """Device seconds of one training job and what they rest on."""
        if job["kind"] == "gan":
            return self.gans[job["gan"]]["steps"] * self.gan_step(job["gan"], job["shape"]), "timed steps"
        recipe = Recipe.from_config(self.recipes[job["recipe"]])
        epoch = job["images"] * self.per_image(job["recipe"], job["shape"])
        whole = recipe.epochs * epoch
        if job["kind"] == "surrogate":
            return whole * (1 + job["pgd_steps"]), "(a) solo, scaled"
        if job["kind"] == "input_aware":
            return whole, "classifier only (lower bound)"
        spec = defences_cfg.get(job["defence"], {"method": "none", "stacks": True})
        m, method = job["victims"], spec["method"]
        if method == "dp_sgd":
            return m * spec["steps"] * self.dp, "(c)"
        if method == "frozen_sgd":
            return m * spec["steps"] * self.sgd, "(c)"
        if method == "abl":
            epochs = spec["isolation_epochs"] + spec["finetuning_epochs"] + spec["unlearning_epochs"] * spec[
                "isolation_ratio"]
            return m * epochs * epoch, "(a) solo, scaled"
        if spec["stacks"] and not recipe.trace_per_epoch:
            pgd = 1 + spec.get("steps", 0) if method == "adv_training" else 1
            if recipe.model == self.thesis.model:
                steps = math.ceil(recipe.epochs * (job["images"] // recipe.batch_size))
                scale = recipe.batch_size / self.thesis.batch_size
                return pgd * steps * self.stacked_step(m) * scale, "(a) stacked"
            return pgd * m * whole, "solo x members"
        return m * whole, "solo x members"  # traced recipes and the sanitisers' retraining: one after another


def part_e(results: dict[str, Any], facts: dict[str, Any], sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Projected device-hours of every training job of the config, grouped by kind, recipe and defence."""
    for part in "abc":
        if "error" in results.get(part, {"error": "not run"}):
            raise RuntimeError(f"part {part} has no figures to project from")
    rates = Rates(results, facts, sizes, device)
    groups: dict[str, dict[str, Any]] = {}
    for job in facts["jobs"]:
        seconds, basis = rates.job_seconds(job, facts["defences"])
        key = " ".join(str(job[k]) for k in ("kind", "recipe", "defence", "gan") if k in job)
        g = groups.setdefault(key, {"jobs": 0, "victims": 0, "hours": 0.0, "basis": basis})
        g["jobs"] += 1
        g["victims"] += job.get("victims", 0)
        g["hours"] += seconds / 3600
    total = sum(g["hours"] for g in groups.values())
    return {"config": facts["config"], "goal_hours": GOAL_GPU_HOURS, "total_hours": total,
            "within_goal": total <= GOAL_GPU_HOURS, "groups": groups, "notes": facts["notes"]}


# --------------------------------------------------------------------------- the run


def table(results: dict[str, Any]) -> list[str]:
    """The short table: one line per figure, or the error of a part that failed."""
    lines = []

    def row(part: str, what: str, value: str) -> None:
        lines.append(f"{part:<2} {what:<44} {value}")

    for part, figures in results.items():
        if "error" in figures:
            row(part, "FAILED", figures["error"][:100])
        elif part == "a":
            for r in figures["cohorts"] + figures["variants"]:
                mem = f", {r['memory_mib_per_member']:.0f} MiB/member" if r["memory_mib_per_member"] else ""
                row(part, f"cohort {r['size']} {r['accel']}", f"{r['seconds_per_step'] * 1000:.1f} ms/step, "
                    f"{r['victims_per_hour']:.1f} victims/h{mem}")
        elif part == "b":
            for r in figures["runs"]:
                row(part, f"fast recipe {r['accel']}", f"{r['seconds_per_victim_full_cifar10']:.1f} s/victim "
                    f"(full CIFAR-10), {r['seconds']:.1f} s here, acc {100 * r['test_accuracy']:.1f}%")
        elif part == "c":
            row(part, f"DP-SGD {figures['defence']} (lot {figures['lot_size']}, {figures['microbatches']} mb)",
                f"{figures['steps_per_second']:.2f} steps/s, {figures['seconds_per_victim'] / 3600:.2f} h/victim, "
                f"frozen SGD {1 / figures['frozen_sgd_seconds_per_step']:.2f} steps/s")
        elif part == "d":
            for r in figures["members"]:
                row(part, f"equivalence {r['accel']} member {r['member']}",
                    f"acc {r['accuracy']:.1f} vs CPU {r['cpu_accuracy']:.1f}, agree {100 * r['agreement']:.1f}% "
                    f"{'ok' if r['ok'] else 'OUT OF TOLERANCE'}")
            row(part, "equivalence: another seed's agreement", ", ".join(f"{100 * a:.1f}%"
                                                                       for a in figures["seed_control_agreement"]))
        elif part == "e":
            for key, g in sorted(figures["groups"].items(), key=lambda kv: -kv[1]["hours"])[:8]:
                row(part, key[:44], f"{g['hours']:.2f} h, {g['jobs']} jobs ({g['basis']})")
            row(part, f"total of {figures['config']} ({sum(g['jobs'] for g in figures['groups'].values())} jobs)",
                f"{figures['total_hours']:.2f} device-hours, goal {figures['goal_hours']:g}: "
                f"{'within' if figures['within_goal'] else 'OVER'}")
        if "seconds" in figures:
            row(part, "(part's wall time)", f"{figures['seconds']:.1f} s")
    return lines


def write_bundle(config: Path, data: Path | None) -> None:
    """gpu_bundle/: the CIFAR-10 subset and config.yaml's facts as JSON, for a GPU machine without PyYAML."""
    BUNDLE.mkdir(exist_ok=True)
    source = data or SHARED_SUBSET
    shutil.copyfile(source, BUNDLE / SUBSET_NAME)
    (BUNDLE / FACTS_NAME).write_text(json.dumps(config_facts(config), indent=1))
    print(f"wrote {BUNDLE}: {SUBSET_NAME} (from {source}) and {FACTS_NAME} (from {config}); carry it: gpu_bundle")


def main() -> None:
    """Run every part in its own guard, then print the table and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, digits (what CI runs)")
    p.add_argument("--bundle", action="store_true", help="write gpu_bundle/ for the GPU machine and stop")
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    p.add_argument("--data", type=Path, default=None, help="the CIFAR-10 subset (default: gpu_bundle/, ../shared)")
    p.add_argument("--parts", default="abcde", help="which parts to run")
    args = p.parse_args()
    if args.bundle:
        return write_bundle(args.config, args.data)
    sizes = SMOKE if args.smoke else FULL
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check: {name}, torch {torch.__version__}, {'smoke' if args.smoke else 'full'} sizes", flush=True)
    results: dict[str, Any] = {}
    cache: dict[str, Any] = {}

    def data() -> Dataset:
        """The images, loaded once."""
        if "data" not in cache:
            cache["data"], cache["data_name"] = load_data(args.smoke, args.data)
            print(f"data: {cache['data_name']}, {len(cache['data'].y_train)} training images", flush=True)
        return cache["data"]

    def facts() -> dict[str, Any]:
        """config.yaml's facts, read once."""
        if "facts" not in cache:
            cache["facts"] = load_facts(args.config)
        return cache["facts"]

    def recipe(model: str) -> Recipe:
        """The config's first recipe of a model."""
        return cut(Recipe.from_config(next(r for r in facts()["recipes"].values() if r["model"] == model)), sizes)

    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "a": lambda: part_a(data(), recipe("thesis_resnet"), sizes, device),
        "b": lambda: part_b(data(), recipe("airbench"), device),
        "c": lambda: part_c(data(), facts(), sizes, device),
        "e": lambda: part_e(results, facts(), sizes, device),
        "d": lambda: part_d(data(), recipe("thesis_resnet"), sizes, device),  # last: the slowest, nothing needs it
    }
    t_start = time.perf_counter()
    for part, run in parts.items():
        if part not in args.parts:
            continue
        t0 = time.perf_counter()
        print(f"part {part} ...", flush=True)
        try:
            results[part] = run()
        except Exception as e:  # noqa: BLE001 - a failing part must not stop the others
            results[part] = {"error": f"{type(e).__name__}: {e}".splitlines()[0],
                             "traceback": traceback.format_exc(limit=-4)}
            print(f"part {part} FAILED: {results[part]['error']}", flush=True)
        results[part]["seconds"] = time.perf_counter() - t0
        if out is not None:  # after every part, so a run cut short keeps what it measured
            out.write_text(json.dumps({"device": name, "torch": torch.__version__, "smoke": args.smoke,
                                       "parts": results}, indent=1, default=str))
    print(f"\ngpu_check: {time.perf_counter() - t_start:.0f} s on {name}")
    print("\n".join(table(results)), flush=True)


if __name__ == "__main__":
    main()
