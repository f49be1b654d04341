"""toy-ae: a tiny diffusers `AutoencoderKL` on the toy world, SDD's frozen encoder E and generator G.

It stands in for e4e + StyleGAN in Selective Diffusion Distillation (notebook 07): E(y) maps a 32x32 image to
an 8x8x8 latent (the posterior mean), G(w) draws it back. SDD trains a latent mapper between the two and keeps
both frozen. It is also the course's smallest real latent path (the same class as Stable Diffusion's VAE).

    ae = zoo.load("toy-ae")                 # AEBundle
    w = toyae.encode(ae, images)            # (B, 8, 8, 8)
    x = toyae.decode(ae, w)                 # (B, 3, 32, 32) in [-1, 1]

Training (python -m diffnb.zoo train toy-ae): L1 + MSE on pixels, a small perceptual term (LPIPS's formula over
toy-attr's trunk, as Stable Diffusion's VAE adds LPIPS) and a tiny KL, on `toy` images with toy-attr's photometric
augmentation on half of each batch so that `photo` images encode too. The trainer and the card section are the
maintainers' (diffnb.maint.ae_training); the reconstruction bar is diffnb.evaluate.reconstruction_quality.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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


def config_dict(cfg: AETrainConfig) -> dict:
    return asdict(cfg)
