"""WGAN-GP (Gulrajani et al.) on the images of two classes, and latent encoding by gradient descent (thesis 7.4)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import devices
from .artifacts import load_torch, save_json, save_npz, save_torch
from .blocks import from_block
from .data import load_prepared
from .layout import partner_images
from .models import check_shapes, to_float
from .runlog import Progress


@dataclass(frozen=True)
class GanRecipe:
    """WGAN-GP hyperparameters; the config's `gans.<name>` block, field for field."""

    steps: int = 20000              # generator updates
    batch_size: int = 64
    latent: int = 128
    width: int = 64                 # generator channels at the output resolution; x4 at the input
    lr: float = 1e-4                # Adam, as in the WGAN-GP paper
    betas: tuple[float, float] = (0.5, 0.9)
    critic_steps: int = 5           # critic updates per generator update
    gp_weight: float = 10.0         # gradient-penalty weight lambda
    encode_steps: int = 1000        # latent search per image (thesis 7.4)
    encode_lr: float = 0.1

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> GanRecipe:
        """Build from a config block, rejecting unknown keys by name."""
        return from_block(cls, block, "GAN")


class Generator(nn.Module):
    """DCGAN-style: latent -> (4w, H/4, W/4) -> two x2 upsampling conv blocks -> sigmoid image in [0, 1]."""

    def __init__(self, shape: tuple[int, int, int], latent: int, width: int) -> None:
        super().__init__()
        c, h, w = shape
        if h % 4 or w % 4:
            raise ValueError(f"GAN needs image sides divisible by 4, got {h}x{w}")
        self.shape, self.latent = (c, h, w), latent
        self.fc = nn.Sequential(nn.Linear(latent, 4 * width * (h // 4) * (w // 4)), nn.ReLU())
        self.net = nn.Sequential(
            nn.Unflatten(1, (4 * width, h // 4, w // 4)),
            nn.Upsample(scale_factor=2), nn.Conv2d(4 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, c, 3, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z))


def critic(shape: tuple[int, int, int], width: int) -> nn.Module:
    """Conv critic without batch norm (the gradient penalty is per sample)."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(4 * width * (h // 4) * (w // 4), 1))


def gradient_penalty(d: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(||grad D(x_hat)|| - 1)^2 at random points between real and fake images."""
    a = torch.rand(len(real), 1, 1, 1, generator=gen, device=real.device)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_wgan_gp(x: torch.Tensor, r: GanRecipe, seed: int) -> tuple[Generator, dict[str, Any]]:
    """Train a generator on float NCHW images in [0, 1] (on x's device); return it and a loss log."""
    torch.manual_seed(seed)
    device = x.device
    shape = tuple(x.shape[1:])
    g, d = Generator(shape, r.latent, r.width).to(device), critic(shape, r.width).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=r.lr, betas=r.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=r.lr, betas=r.betas)
    gen = torch.Generator(device=device).manual_seed(seed)
    log, t0 = [], time.perf_counter()
    progress = Progress("WGAN-GP", r.steps, "generator updates")
    for step in range(r.steps):
        for _ in range(r.critic_steps):
            real = x[torch.randint(0, len(x), (r.batch_size,), generator=gen, device=device)]
            with torch.no_grad():
                fake = g(torch.randn(r.batch_size, r.latent, generator=gen, device=device))
            loss_d = d(fake).mean() - d(real).mean() + r.gp_weight * gradient_penalty(d, real, fake, gen)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        loss_g = -d(g(torch.randn(r.batch_size, r.latent, generator=gen, device=device))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        progress.update(step + 1)
        if step % max(1, r.steps // 50) == 0 or step == r.steps - 1:
            log.append({"step": step, "critic_loss": float(loss_d.detach()), "generator_loss": float(loss_g.detach())})
    return g.cpu().eval(), {"seconds": time.perf_counter() - t0, "log": log}


def encode(g: Generator, x: torch.Tensor, steps: int, lr: float, seed: int, batch: int = 512) -> torch.Tensor:
    """Latent codes minimising each image's mean squared reconstruction error (Ilyas et al.; Adam, lr 0.1)."""
    g.eval().requires_grad_(False)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out = []
    progress = Progress("latent search", len(x) * steps, "image steps")
    for i in range(0, len(x), batch):
        target = x[i:i + batch]
        z = torch.randn(len(target), g.latent, generator=gen, device=x.device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for k in range(steps):
            # per-image mean error, summed: every image's code follows its own gradient
            loss = (g(z) - target).pow(2).flatten(1).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            progress.update(i * steps + len(target) * (k + 1))
        out.append(z.detach())
    return torch.cat(out)


@torch.no_grad()
def reconstruction_error(g: Generator, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error of G(z) against x."""
    return (g.eval()(z) - x).pow(2).flatten(1).mean(1)


@torch.no_grad()
def decode(g: Generator, z: np.ndarray, device: torch.device) -> np.ndarray:
    """uint8 NHWC images from latent codes."""
    g.eval()
    imgs = [g(torch.from_numpy(z[i:i + 1000]).float().to(device)) for i in range(0, len(z), 1000)]
    return (torch.cat(imgs) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_generator(path: str | Path, g: Generator) -> None:
    """Save the generator's shape, latent size and weights atomically."""
    c, h, w = g.shape
    spec = {"channels": c, "height": h, "width_px": w, "latent": g.latent, "width": g.fc[0].out_features // (h * w // 4)}
    save_torch(path, {"spec": spec, "state_dict": g.state_dict()})


def load_generator(path: str | Path) -> Generator:
    """Load a generator without unpickling arbitrary objects; a file that does not fit is refused by name."""
    def rebuild(blob: dict) -> Generator:
        s = blob["spec"]
        args = (int(s["channels"]), int(s["height"]), int(s["width_px"])), int(s["latent"]), int(s["width"])
        check_shapes(lambda: Generator(*args), blob["state_dict"])
        g = Generator(*args)
        g.load_state_dict(blob["state_dict"])
        return g.eval()
    return load_torch(path, rebuild)


def train_gan(data_path: str, classes: tuple[int, int], recipe: dict[str, Any], seed: int, out: str,
              log_out: str, threads: int) -> None:
    """Stage 1: a WGAN-GP on the training images of the two classes an interpolation connects."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    x = ds.x_train[np.isin(ds.y_train, classes)]
    with devices.acquire() as device:
        g, info = train_wgan_gp(to_float(torch.from_numpy(x).to(device)), GanRecipe.from_config(recipe), seed)
    save_generator(out, g)
    save_json(log_out, {**info, "classes": list(classes), "images": len(x), "device": str(device)})


def encode_class(data_path: str, generator_path: str, cls: int, partner: int, recipe: dict[str, Any], seed: int,
                 out: str, threads: int) -> None:
    """Stage 2a: latent codes of every class image and of its randomly paired partner-class image."""
    torch.set_num_threads(threads)
    ds = load_prepared(data_path)
    r = GanRecipe.from_config(recipe)
    idx = np.flatnonzero(ds.y_train == cls)
    partners = partner_images(ds.y_train, cls, partner, len(idx), seed)
    with devices.acquire() as device:
        g = load_generator(generator_path).to(device)
        x = to_float(torch.from_numpy(ds.x_train[idx]).to(device))
        xp = to_float(torch.from_numpy(ds.x_train[partners]).to(device))
        z, zp = encode(g, x, r.encode_steps, r.encode_lr, seed), encode(g, xp, r.encode_steps, r.encode_lr, seed + 1)
        err = reconstruction_error(g, z, x)
    save_npz(out, indices=idx, partners=partners, source=z.cpu().numpy(), partner=zp.cpu().numpy(),
             mse=err.cpu().numpy())
