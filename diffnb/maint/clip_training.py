"""Training toy-clip (`python -m diffnb.zoo train toy-clip`) through `fit`: CLIP's symmetric cross-entropy over
in-batch (image, caption) pairs with hard-negative twins. The model itself is diffnb.toyclip's."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from .. import world
from ..fit import TrainResult, augment, fit, prepare, save_half
from ..toyclip import ClipTrainConfig, build_model, build_tokenizer, pixel_values, tokenize


def training_pairs(batch, n_twins: int, rng: np.random.Generator, p_full: float):
    """(images (B + n_twins, 3, 32, 32), captions) for one contrastive step. Captions are full w.p. p_full,
    else leave each attribute out with a probability drawn from U(0, 1) (world.caption's `drop`), so short
    prompts like 'a cat with glasses' are common. The first n_twins images come again as hard negatives
    with one binary attribute flipped (same geometry, world.render with the batch's seed); an image and its
    twin leave the same attributes out, but never the flipped one."""
    droppable = [n for n in world.ATTRIBUTE_NAMES if n != "subject"]
    drops = []
    for _ in batch.attributes:
        p = -1.0 if rng.random() < p_full else rng.random()
        drops.append([n for n in droppable if rng.random() < p])
    flips = [world.BINARY[i] for i in rng.integers(len(world.BINARY), size=n_twins)]
    twin_attrs = [replace(a, **{f: not getattr(a, f)}) for a, f in zip(batch.attributes, flips)]
    twins = world.render(twin_attrs + batch.attributes[n_twins:], seed=batch.seed, domain=batch.domain)
    drops = [[n for n in d if n != f] for d, f in zip(drops, flips)] + drops[n_twins:]
    captions = [world.caption(a, drop=d) for a, d in zip(batch.attributes + twin_attrs, drops + drops[:n_twins])]
    return torch.cat([batch.images, twins.images[:n_twins]]), captions


def train_clip(cfg: ClipTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-clip with CLIP's symmetric cross-entropy over in-batch pairs (CLIPModel(return_loss=True)).
    Writes model.safetensors (fp16) + config.json, the tokenizer files and train_log.json into out_dir."""
    out_dir = prepare(cfg, out_dir)
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    model = build_model(cfg, tokenizer).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, min(cfg.warmup, cfg.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(
        math.pi * min(1.0, max(0, s - warm) / max(1, cfg.steps - warm))))))
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 31])
    n_twins = int(round(cfg.batch_size * cfg.twins))
    data = world.stream(cfg.batch_size - n_twins, seed=cfg.seed + 3000)
    tokenizer.save_pretrained(out_dir)

    def loss_at(step):
        x, captions = training_pairs(next(data), n_twins, rng, cfg.p_full_caption)
        aug = torch.rand(len(x), generator=gen) < cfg.p_augment
        if aug.any():
            x = torch.where(aug.view(-1, 1, 1, 1), augment(x, gen), x)
        return model(**tokenize(tokenizer, captions), pixel_values=pixel_values(model, x), return_loss=True).loss

    def clamp_temperature():
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))       # as CLIP: temperature at most 100
    return fit("toy-clip", model, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched,
               save_weights=lambda step: save_half(model, out_dir), after_step=clamp_temperature,
               log_note=lambda: f"scale {model.logit_scale.exp().item():.1f}", progress=progress)
