"""Perturbations stay within their budgets, make images harder for the surrogate, and keep labels consistent."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline_lib import models, perturb
from pipeline_lib.poisons import poison
from pipeline_lib.layout import Amount
from pipeline_lib.gan import GanRecipe, encode, reconstruction_error, train_wgan_gp
from pipeline_lib.adversarial import pgd, pgd_adversary, random_start
from pipeline_lib.models import to_float
from pipeline_lib.layout import partner_images, random_other_class
from pipeline_lib.perturb import gaussian_noise, pixel_interpolation, quantize
from pipeline_lib.train import Recipe, train
from pipeline_lib.triggers import make_trigger

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def surrogate():
    """A small CNN trained briefly on two separable blob classes, with data it classifies well."""
    rng = np.random.default_rng(0)
    y = np.arange(256) % 2
    x = np.clip(rng.normal(110 + 40 * y[:, None, None, None], 40, (256, 8, 8, 1)), 0, 255).astype(np.uint8)
    model, _ = train(x, y, 2, Recipe(model="small_cnn", epochs=3, batch_size=32, lr=0.05,
                                     model_options={"width": 8}), 0, CPU)
    return model.eval(), x[:64], y[:64]


def losses(model, x, y):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(to_float(torch.from_numpy(x))), torch.from_numpy(y),
                                                 reduction="none").numpy()


@pytest.mark.parametrize("norm, eps", [("l2", 300.0), ("linf", 8.0), ("linf", 32.0), ("l2", 1200.0)])
def test_pgd_stays_in_its_ball_and_the_pixel_range_and_raises_the_loss(surrogate, norm, eps):
    model, x, y = surrogate
    x_adv = quantize(x, pgd(model, to_float(torch.from_numpy(x)), torch.from_numpy(y), norm, eps / 255,
                            2.5 * eps / 255 / 10, 10))
    assert x_adv.dtype == np.uint8 and x_adv.shape == x.shape
    delta = x_adv.astype(np.float64) - x
    size = np.sqrt((delta ** 2).reshape(len(x), -1).sum(1)) if norm == "l2" else np.abs(delta).reshape(len(x), -1).max(1)
    assert (size <= eps + 1e-9).all() and size.max() > 0.5 * eps
    assert losses(model, x_adv, y).mean() > 2 * losses(model, x, y).mean()


@pytest.mark.parametrize("norm, eps", [("l2", 300.0), ("linf", 8.0)])
def test_a_random_start_is_a_seeded_point_of_the_ball_and_training_pgd_starts_there(surrogate, norm, eps):
    model, x, y = surrogate
    xf, yt = to_float(torch.from_numpy(x)), torch.from_numpy(y)
    starts = [random_start(xf, norm, eps / 255, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])
    d = (starts[0] - xf).flatten(1)
    size = d.norm(dim=1) if norm == "l2" else d.abs().max(1).values
    assert (size <= eps / 255 + 1e-6).all() and size.mean() > 0.5 * eps / 255 and starts[0].min() >= 0
    spec = {"norm": norm, "eps": eps, "steps": 1}
    # one step from the random start differs from one step from x; both adversaries are deterministic per seed
    random, fixed = pgd_adversary(spec | {"random_start": True}, 0), pgd_adversary(spec)
    assert not torch.equal(random(model, xf, yt), fixed(model, xf, yt))
    assert torch.equal(pgd_adversary(spec | {"random_start": True}, 0)(model, xf, yt),
                       pgd_adversary(spec | {"random_start": True}, 0)(model, xf, yt))
    assert torch.equal(fixed(model, xf, yt), pgd(model, xf, yt, norm, eps / 255, 2.5 * eps / 255, 1))


def test_label_consistent_poisons_keep_their_labels_and_use_the_perturbed_images():
    y = np.repeat(np.arange(4), 20)
    x = np.full((80, 8, 8, 1), 100, np.uint8)
    idx = np.flatnonzero(y == 2)
    perturbed = (idx, np.full((len(idx), 8, 8, 1), 140, np.uint8))
    ps = poison("label_consistent", x, y, 2, Amount(rate=0.5), make_trigger("bottom_right", amplitude=32), 0, perturbed)
    assert (ps.labels == y[ps.indices]).all() and (ps.labels == 2).all()
    assert (ps.untriggered == 140).all()
    assert ps.images[0, 0, 0, 0] == 140 and ps.images[0, -1, -1, 0] == 172
    plain = poison("label_consistent", x, y, 2, Amount(rate=0.5), make_trigger("bottom_right", amplitude=32), 0)
    assert np.array_equal(plain.indices, ps.indices)  # every perturbation poisons the same images


def test_perturbed_images_must_cover_the_selection():
    y = np.repeat(np.arange(2), 10)
    x = np.zeros((20, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError, match="do not cover"):
        poison("label_consistent", x, y, 1, Amount(rate=1.0), make_trigger("bottom_right"), 0,
               (np.arange(10, 15), np.zeros((5, 8, 8, 1), np.uint8)))


def test_pixel_interpolation_and_noise_are_exact_and_seeded():
    x = np.full((3, 4, 4, 1), 100, np.uint8)
    partners = np.full((3, 4, 4, 1), 200, np.uint8)
    out = pixel_interpolation(x, None, {"tau": 0.2}, {"partners": partners})
    assert (out == 120).all()
    a = gaussian_noise(x, None, {"std": 8}, {"seed": 0, "cls": 1})
    assert np.array_equal(a, gaussian_noise(x, None, {"std": 8}, {"seed": 0, "cls": 1}))
    assert 4 < np.abs(a.astype(float) - 100).mean() < 10


def test_partner_images_come_from_the_partner_class():
    y = np.repeat(np.arange(3), 5)
    picks = partner_images(y, 0, 1, 5, seed=0)
    assert (y[picks] == 1).all() and np.array_equal(picks, partner_images(y, 0, 1, 5, seed=0))


def test_random_partners_come_from_every_other_class_and_are_seeded():
    y = np.repeat(np.arange(10), 50)
    partners = random_other_class(y, 3, 400, seed=0)
    assert (y[partners] != 3).all() and len(set(y[partners])) == 9   # thesis 4.5: any class but the target's
    assert np.array_equal(partners, random_other_class(y, 3, 400, seed=0))
    assert not np.array_equal(partners, random_other_class(y, 3, 400, seed=1))


def test_pixel_space_perturbations_run_without_importing_torch(tmp_path):
    """Noise, pixel interpolation and the identity are numpy jobs: they never pay torch's import."""
    from pipeline_lib.data import load_source, save_prepared
    save_prepared(tmp_path / "digits.npz", load_source("digits", "unused"))
    code = ("import sys; from pipeline_lib.perturb import perturb_classes; "
            f"perturb_classes({str(tmp_path / 'digits.npz')!r}, {{'method': 'noise', 'std': 8}}, {str(tmp_path / 'out')!r}, 1); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    assert perturb.NETWORK_METHODS < set(perturb.PERTURBATIONS)   # the network methods are perturbations
    subprocess.run([sys.executable, "-c", code], check=True)
    z = np.load(tmp_path / "out" / "c3.npz", allow_pickle=False)
    assert (z["cls"] == 3) and len(z["indices"]) == len(z["images"]) > 0


def test_wgan_encoder_lowers_reconstruction_error():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0.2, 0.8, (64, 1, 8, 8))).float()
    r = GanRecipe(steps=20, batch_size=16, latent=8, width=8)
    g, info = train_wgan_gp(x, r, seed=0)
    assert len(info["log"]) > 0
    target = x[:16]
    z0 = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    z = encode(g, target, steps=100, lr=0.1, seed=0)
    assert reconstruction_error(g, z, target).mean() < 0.8 * reconstruction_error(g, z0, target).mean()


def test_vgg_is_a_registered_classifier():
    m = models.build({"name": "vgg", "in_channels": 3, "num_classes": 10, "width": 8})
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10) and m.embed(torch.zeros(1, 3, 32, 32)).shape == (1, 32)
