"""Perturbation registry: make every training image of one class harder to learn, once (thesis 3.3, 4.4-4.5).

Each method maps the uint8 images of a class to perturbed uint8 images of the same class; the
poisoning stage then picks, per target and rate, which of them to trigger.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .artifacts import ArtifactError, load_npz, save_npz
from .data import Dataset, load_prepared
from .layout import partner_class, partner_images, random_other_class
from .runlog import Progress

if TYPE_CHECKING:
    import torch


def quantize(x: np.ndarray, x_new: torch.Tensor) -> np.ndarray:
    """uint8 NHWC images x + (x_new - x) rounded towards zero, so no norm of the change grows."""
    delta = x_new.permute(0, 2, 3, 1).cpu().double().numpy() * 255 - x
    return (x + np.trunc(delta)).clip(0, 255).astype(np.uint8)


def pgd_images(x: np.ndarray, y: np.ndarray, spec: dict[str, Any], ctx: dict[str, Any]) -> np.ndarray:
    """Adversarial perturbations from the surrogate, eps and step on the 0..255 scale (thesis 7.5)."""
    import torch

    from . import models
    from .adversarial import pgd_adversary
    from .models import to_float
    model = models.load_model(ctx["surrogate"]).to(ctx["device"])
    attack = pgd_adversary(spec)
    out, progress = [], Progress("PGD", len(x), "images")
    for i in range(0, len(x), 500):
        xb = to_float(torch.from_numpy(x[i:i + 500])).to(ctx["device"])
        yb = torch.from_numpy(y[i:i + 500]).to(ctx["device"])
        out.append(quantize(x[i:i + 500], attack(model, xb, yb)))
        progress.update(i + len(xb))
    return np.concatenate(out)


def pixel_interpolation(x: np.ndarray, y: np.ndarray, spec: dict[str, Any], ctx: dict[str, Any]) -> np.ndarray:
    """Pixel-space blend (1 - tau) x + tau x', x' a partner image: of the partner class, or with `partner: random`
    of any other class, from the `partner_dataset`'s training images if one is named (thesis 4.5: CINIC-10's
    ImageNet-derived ones)."""
    tau = spec["tau"]
    return np.rint((1 - tau) * x + tau * ctx["partners"]).clip(0, 255).astype(np.uint8)


def gaussian_noise(x: np.ndarray, y: np.ndarray, spec: dict[str, Any], ctx: dict[str, Any]) -> np.ndarray:
    """Additive zero-mean Gaussian noise, std on the 0..255 scale, clipped (thesis 4.4)."""
    rng = np.random.default_rng([ctx["seed"], ctx["cls"]])
    return np.rint(x + rng.normal(0, spec["std"], x.shape)).clip(0, 255).astype(np.uint8)


def gan_interpolation(x: np.ndarray, y: np.ndarray, spec: dict[str, Any], ctx: dict[str, Any]) -> np.ndarray:
    """Decode (1 - tau) z + tau z' from the latents found by the encoder (thesis 3.3.1, 7.4)."""
    from . import gan
    z = load_npz(ctx["latents"], {"source": "f", "partner": "f", "indices": "i"})
    if not np.array_equal(z["indices"], ctx["indices"]):
        raise ArtifactError(f"{ctx['latents']}: latents encode other images than class {ctx['cls']}")
    generator = gan.load_generator(ctx["generator"]).to(ctx["device"])
    tau = spec["tau"]
    return gan.decode(generator, (1 - tau) * z["source"] + tau * z["partner"], ctx["device"])


def identity(x: np.ndarray, y: np.ndarray, spec: dict[str, Any], ctx: dict[str, Any]) -> np.ndarray:
    """No perturbation: the label-consistent baseline of Figure 3-2."""
    return x.copy()


PERTURBATIONS: dict[str, Callable[[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]], np.ndarray]] = {
    "none": identity,
    "pgd": pgd_images,
    "gan_interpolation": gan_interpolation,
    "pixel_interpolation": pixel_interpolation,
    "noise": gaussian_noise,
}
NETWORK_METHODS = frozenset({"pgd", "gan_interpolation"})   # run a network: the only ones that import torch


@contextmanager
def compute_device(method: str, threads: int) -> Iterator[torch.device | None]:
    """The device a network-running method works on (torch imported, `threads` CPU threads); None for the pixel-space
    methods, whose jobs never pay torch's import."""
    if method not in NETWORK_METHODS:
        yield None
        return
    import torch

    from . import devices
    torch.set_num_threads(threads)
    with devices.acquire() as device:
        yield device


def _perturb(ds: Dataset, cls: int, spec: dict[str, Any], device: torch.device | None, seed: int,
             surrogate: str | None = None, generator: str | None = None, latents: str | None = None,
             pool: Dataset | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, perturbed images) of one class; interpolation partners from `pool`'s training images
    (default: the dataset's own)."""
    method = spec["method"]
    if method not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation method '{method}'; known: {', '.join(PERTURBATIONS)}")
    idx = np.flatnonzero(ds.y_train == cls)
    pool = ds if pool is None else pool
    if spec.get("partner") == "random":
        partners = random_other_class(pool.y_train, cls, len(idx), seed)
    else:
        partners = partner_images(pool.y_train, cls, partner_class(cls, spec, ds.num_classes), len(idx), seed)
    ctx = {"device": device, "seed": seed, "cls": cls, "indices": idx, "partners": pool.x_train[partners],
           "surrogate": surrogate, "generator": generator, "latents": latents}
    return idx, PERTURBATIONS[method](ds.x_train[idx], ds.y_train[idx], spec, ctx)


def perturb_class(data_path: str, cls: int, spec: dict[str, Any], out: str, threads: int, seed: int = 0,
                  generator: str | None = None, latents: str | None = None) -> None:
    """Stage 2 for a perturbation with per-class inputs (GAN interpolation): perturb every training image of one
    class and save (indices, images) as npz."""
    ds = load_prepared(data_path)
    with compute_device(spec["method"], threads) as device:
        idx, images = _perturb(ds, cls, spec, device, seed, generator=generator, latents=latents)
    save_npz(out, indices=idx, images=images, cls=np.int64(cls))


def perturb_classes(data_path: str, spec: dict[str, Any], out_dir: str, threads: int, seed: int = 0,
                    surrogate: str | None = None, partners: str | None = None) -> None:
    """Stage 2 in one process: perturb every training image of every class, out_dir/c<class>.npz each (`partners`:
    the prepared `partner_dataset`)."""
    ds = load_prepared(data_path)
    pool = load_prepared(partners) if partners else None
    if pool is not None and pool.classes != ds.classes:
        raise ArtifactError(f"{partners}: partner classes {', '.join(pool.classes)} differ from {data_path}'s "
                            f"{', '.join(ds.classes)}")
    with compute_device(spec["method"], threads) as device:
        for cls in range(ds.num_classes):
            idx, images = _perturb(ds, cls, spec, device, seed, surrogate=surrogate, pool=pool)
            save_npz(Path(out_dir) / f"c{cls}.npz", indices=idx, images=images, cls=np.int64(cls))
