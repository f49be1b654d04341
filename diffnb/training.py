"""Training the toy zoo on the toy world. `python -m diffnb.zoo train <name>` calls these.

Each trainer takes a dataclass config, logs to stdout, writes checkpoints into `out_dir` as it goes
(so a long run that is stopped early still leaves a usable model) and returns a small result dataclass.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import world


@dataclass
class DDPMTrainConfig:
    """toy-ddpm: an unconditional diffusers UNet2DModel on `toy` world images."""
    steps: int = 16000                # optimiser steps
    batch_size: int = 32
    lr: float = 4e-4                  # AdamW, constant after warm-up
    warmup: int = 500
    ema_decay: float = 0.999          # the shipped weights are the EMA weights
    seed: int = 0
    block_out_channels: tuple = (32, 64, 128)
    layers_per_block: int = 1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"     # as google/ddpm-celebahq-256
    save_every: int = 500
    log_every: int = 50
    num_threads: int = 0              # 0: leave torch's default


@dataclass
class TrainResult:
    """What a training run did."""
    name: str
    steps: int
    minutes: float
    final_loss: float                 # mean loss over the last `log_every` steps
    out_dir: str
    losses: list = field(default_factory=list)


def ddpm_unet(cfg: DDPMTrainConfig):
    from diffusers import UNet2DModel
    return UNet2DModel(
        sample_size=world.SIZE, in_channels=3, out_channels=3,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=16, attention_head_dim=32)


def ddpm_scheduler(cfg: DDPMTrainConfig):
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         clip_sample=True, prediction_type="epsilon")


@torch.no_grad()
def _ema_update(ema, model, decay):
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - decay)


def _save_half(model, out_dir: Path):
    half = copy.deepcopy(model).half()
    half.save_pretrained(out_dir, safe_serialization=True)


def train_ddpm(cfg: DDPMTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-ddpm with the noise-prediction loss ||eps - eps_theta(x_t, t)||^2 (DDPM, Ho et al.)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    unet, scheduler = ddpm_unet(cfg), ddpm_scheduler(cfg)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    data = world.stream(cfg.batch_size, seed=cfg.seed + 1000)
    scheduler.save_pretrained(out_dir / "scheduler")
    t0, losses, window = time.time(), [], []
    for step in range(1, cfg.steps + 1):
        x0 = next(data).images
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=gen)
        x_t = scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(x_t, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        _ema_update(ema, unet, cfg.ema_decay if step > cfg.warmup else 0.0)
        window.append(loss.item())
        if step % cfg.log_every == 0:
            losses.append((step, sum(window) / len(window)))
            window = []
            if progress:
                print(f"step {step} loss {losses[-1][1]:.4f} min {(time.time() - t0) / 60:.1f}", flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save_half(ema, out_dir)
            (out_dir / "train_log.json").write_text(json.dumps(
                {"config": asdict(cfg), "step": step, "minutes": (time.time() - t0) / 60, "losses": losses}))
    return TrainResult("toy-ddpm", cfg.steps, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                       str(out_dir), losses)
