"""toy-ae: a tiny diffusers `AutoencoderKL` on the toy world, SDD's frozen encoder E and generator G.

It stands in for e4e + StyleGAN in Selective Diffusion Distillation (notebook 07): E(y) maps a 32x32 image to
an 8x8x8 latent (the posterior mean), G(w) draws it back. SDD trains a latent mapper between the two and keeps
both frozen. It is also the course's smallest real latent path (the same class as Stable Diffusion's VAE).

    ae = zoo.load("toy-ae")                 # AEBundle
    w = toyae.encode(ae, images)            # (B, 8, 8, 8)
    x = toyae.decode(ae, w)                 # (B, 3, 32, 32) in [-1, 1]

Training (python -m diffnb.zoo train toy-ae): L1 + MSE on pixels, a small perceptual term (LPIPS's formula over
toy-attr's trunk, as Stable Diffusion's VAE adds LPIPS) and a tiny KL, on `toy` images with toy-attr's photometric
augmentation on half of each batch so that `photo` images encode too.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import world


@dataclass
class AEBundle:
    """toy-ae (or a real VAE): encoder E and generator G in one diffusers AutoencoderKL."""
    name: str
    vae: torch.nn.Module          # diffusers AutoencoderKL, frozen
    latent_shape: tuple           # (C, h, w) of E's output
    source: str
    card: str = ""


@dataclass
class AETrainConfig:
    """toy-ae: a diffusers AutoencoderKL, three 2x levels (32 -> 8), latent 8 x 8 x 8, no mid-block attention."""
    steps: int = 1800
    batch_size: int = 32
    lr: float = 2e-3                  # AdamW, cosine decay over `steps`
    seed: int = 0
    block_out_channels: tuple = (16, 32, 32)
    latent_channels: int = 8
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.5    # LPIPS's formula over toy-attr's trunk (metrics.toy_lpips)
    p_augment: float = 0.5            # share of each batch given toy-attr's photometric augmentation
    save_every: int = 200
    log_every: int = 50
    num_threads: int = 1              # one thread is faster than two on a shared 2-core machine
    device: str = "cpu"
    workers: int = 0
    max_minutes: float = 14.0         # stop (and save) after this wall time; 0: run all `steps`


def build(cfg: AETrainConfig):
    from diffusers import AutoencoderKL
    n = len(cfg.block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.block_out_channels),
                         layers_per_block=1, latent_channels=cfg.latent_channels, norm_num_groups=8,
                         sample_size=world.SIZE, mid_block_add_attention=False)


def load_folder(folder, name: str = "toy-ae", card: str = "", dtype=torch.float32) -> AEBundle:
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(str(folder), use_safetensors=True, torch_dtype=dtype,
                                        low_cpu_mem_usage=False).eval().requires_grad_(False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (vae.config.latent_channels, vae.config.sample_size // factor, vae.config.sample_size // factor)
    return AEBundle(name, vae, shape, str(folder), card)


def encode(ae: AEBundle, images: torch.Tensor) -> torch.Tensor:
    """E: (B, 3, 32, 32) in [-1, 1] -> (B, C, h, w) latents (the posterior mean; no sampling)."""
    return ae.vae.encode(images).latent_dist.mean


def decode(ae: AEBundle, w: torch.Tensor) -> torch.Tensor:
    """G: (B, C, h, w) latents -> (B, 3, 32, 32) images, clamped to [-1, 1] (differentiable inside the range)."""
    return ae.vae.decode(w).sample.clamp(-1, 1)


def train_ae(cfg: AETrainConfig, out_dir, progress: bool = True, resume: bool = False):
    """Train toy-ae; writes config.json + diffusion_pytorch_model.safetensors (fp32) and train_log.json."""
    from . import metrics, training
    from .zoo import load
    if resume:
        raise ValueError("toy-ae trains in minutes; it has no --resume")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    ae = build(cfg).to(cfg.device)
    lp = metrics.toy_lpips(load("toy-attr").model).module.to(cfg.device)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    gen = torch.Generator().manual_seed(cfg.seed)
    data = training.batches(cfg.batch_size, cfg.seed + 7000, cfg.workers)
    t0, losses, window = time.time(), [], []
    for step in range(1, cfg.steps + 1):
        x = next(data).images
        k = int(round(cfg.p_augment * len(x)))
        x = torch.cat([training.augment(x[:k], gen), x[k:]]).to(cfg.device)
        post = ae.encode(x).latent_dist
        rec = ae.decode(post.sample(generator=gen)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.perceptual_weight * lp(rec, x).mean() \
            + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        sched.step()
        window = training._log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress)
        done = step == cfg.steps or training.out_of_time(cfg, t0)
        if step % cfg.save_every == 0 or done:
            ae.save_pretrained(out_dir, safe_serialization=True)
            training._write_log(out_dir, cfg, step, t0, losses)
        if done:
            break
    return training.TrainResult("toy-ae", step, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                                str(out_dir), losses)


@torch.no_grad()
def reconstruction_quality(ae: AEBundle, attr_model, domain: str = "toy", n: int = 512, seed: int = 60_000,
                           batch_size: int = 128) -> dict:
    """PSNR (dB) of G(E(y)) against y and toy-attr's agreement between y and G(E(y)) per attribute (the argmax
    attribute of each, binary at 0.5), on n fresh `domain` images."""
    from . import metrics
    psnr, agree = [], {}
    for i in range(0, n, batch_size):
        y = world.sample(min(batch_size, n - i), seed=seed + i, domain=domain).images
        r = decode(ae, encode(ae, y))
        psnr.append(metrics.psnr(r, y))
        a, b = attr_model.predict(y).attributes(), attr_model.predict(r).attributes()
        for name in world.ATTRIBUTE_NAMES:
            agree.setdefault(name, []).extend(getattr(u, name) == getattr(v, name) for u, v in zip(a, b))
    return {"psnr": float(torch.cat(psnr).mean()), "agreement": {k: sum(v) / len(v) for k, v in agree.items()},
            "n": n, "domain": domain}


def card_lines(run_dir: Path) -> list:
    """toy-ae's card section: reconstruction PSNR and toy-attr agreement on toy and photo images."""
    from .zoo import load
    ae = load_folder(run_dir)
    attr = load("toy-attr").model
    q = {d: reconstruction_quality(ae, attr, d) for d in ("toy", "photo")}
    n_params = sum(p.numel() for p in ae.vae.parameters())
    lines = [f"- parameters: {n_params:,}; latent {ae.latent_shape} (the posterior mean is E's output)", "",
             f"## Measured on {q['toy']['n']} fresh images per domain (python -m diffnb.zoo install)", "",
             "| measure | toy | photo | bar |", "| --- | --- | --- | --- |",
             f"| reconstruction PSNR (dB) | {q['toy']['psnr']:.2f} | {q['photo']['psnr']:.2f} | none |"]
    lines += [f"| toy-attr agrees on {k} (input vs reconstruction) | {q['toy']['agreement'][k]:.3f} | "
              f"{q['photo']['agreement'][k]:.3f} | >= 0.95 |" for k in world.ATTRIBUTE_NAMES]
    lines += ["", "The bars are tests/test_toyae.py. The perceptual training term uses toy-attr's trunk (as Stable "
              "Diffusion's VAE is trained with LPIPS), so toy-attr is not an independent judge of what G keeps; "
              "the PSNR column is."]
    return lines


def config_dict(cfg: AETrainConfig) -> dict:
    return asdict(cfg)
