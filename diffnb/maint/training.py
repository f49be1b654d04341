"""The toy zoo's trainers on the toy world, all through `fit`: toy-ddpm, toy-attr and toy-seg here, toy-t2i in
t2i_training and toy-clip in clip_training. `python -m diffnb.zoo train <name>` calls them (cards.TRAINERS).

Each trainer takes a dataclass config, logs to stdout, writes checkpoints into `out_dir` as it goes
(so a long run that is stopped early still leaves a usable model) and returns a TrainResult.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import world

# the shared kit, importable from here as before
from ..fit import TrainResult, augment, batches, fit, out_of_time, prepare, save_half, save_state, write_log  # noqa: F401


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
    device: str = "cpu"               # "cuda" on a GPU: same loop, noise still drawn on the CPU generator
    workers: int = 0                  # processes drawing world batches ahead (0: in the training process)
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


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


def train_ddpm(cfg: DDPMTrainConfig, out_dir, progress: bool = True, resume: bool = False) -> TrainResult:
    """Train toy-ddpm with the noise-prediction loss ||eps - eps_theta(x_t, t)||^2 (DDPM, Ho et al.).
    With resume=True a run continues from out_dir/resume_state.safetensors (written at every save)."""
    from .. import fit as kit
    out_dir = prepare(cfg, out_dir)
    torch.manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    unet, scheduler = ddpm_unet(cfg), ddpm_scheduler(cfg)
    ema = copy.deepcopy(unet).requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    scheduler.save_pretrained(out_dir / "scheduler")
    start = kit.resume(out_dir, unet, ema) if resume else 0
    if start:  # fresh optimiser moments: warm up again, and keep the data stream moving on
        gen.manual_seed(cfg.seed + start)
    data = batches(cfg.batch_size, cfg.seed + 1000 + start, cfg.workers)  # workers start before CUDA does
    unet.to(dev), ema.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (200 if start else cfg.warmup)))

    def loss_at(step):
        x0 = next(data).images
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=gen)
        x0, noise, t = x0.to(dev, non_blocking=True), noise.to(dev, non_blocking=True), t.to(dev)
        return F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
    return fit("toy-ddpm", unet, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched, ema=ema, start=start,
               save_weights=lambda step: save_half(ema, out_dir), progress=progress)


@dataclass
class AttrTrainConfig:
    """toy-attr: the attribute classifier, trained on `toy` images with generic augmentations
    (noise, colour gain, lighting ramps, blur) so that it also reads `photo` images it never saw."""
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-3                  # AdamW with cosine decay
    seed: int = 0
    save_every: int = 500
    log_every: int = 100
    num_threads: int = 0
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


def _fit_classifier(name: str, model, config: dict, batch_loss, cfg, out_dir, data_seed: int,
                    progress: bool = True) -> TrainResult:
    """toy-attr's and toy-seg's setting of `fit`: AdamW with one-cycle, augmented world batches, fp16 safetensors.
    batch_loss(model, augmented images, batch) -> scalar loss."""
    from safetensors.torch import save_file
    out_dir = prepare(cfg, out_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = world.stream(cfg.batch_size, seed=cfg.seed + data_seed)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))

    def loss_at(step):
        batch = next(data)
        return batch_loss(model, augment(batch.images, gen), batch)

    def save_weights(step):
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    return fit(name, model, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched, save_weights=save_weights,
               clip_grad=None, progress=progress)


def train_attr(cfg: AttrTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-attr with BCE + cross-entropy (classifiers.attribute_loss)."""
    from ..classifiers import AttrConfig, AttributeClassifier, attribute_loss, config_dict
    torch.manual_seed(cfg.seed)
    model = AttributeClassifier(AttrConfig())
    return _fit_classifier("toy-attr", model, config_dict(model.config),
                           lambda m, x, batch: attribute_loss(m(x), world.encode_attributes(batch.attributes)),
                           cfg, out_dir, data_seed=2000, progress=progress)


@dataclass
class SegTrainConfig:
    """toy-seg: the segmentation network, trained on `toy` images and their masks with the same generic
    augmentations as toy-attr."""
    steps: int = 2500
    batch_size: int = 32
    lr: float = 3e-3                  # AdamW, one-cycle
    seed: int = 0
    save_every: int = 500
    log_every: int = 100
    num_threads: int = 0
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


def train_seg(cfg: SegTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-seg with per-pixel cross-entropy against the world's masks."""
    from ..segmentation import SegConfig, SegmentationNet, config_dict
    torch.manual_seed(cfg.seed)
    model = SegmentationNet(SegConfig())
    return _fit_classifier("toy-seg", model, config_dict(model.config),
                           lambda m, x, batch: F.cross_entropy(m(x), batch.masks),
                           cfg, out_dir, data_seed=3000, progress=progress)
