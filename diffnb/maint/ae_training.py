"""toy-ae's trainer and card section (python -m diffnb.zoo train / install toy-ae): the maintainers' side of
diffnb.toyae, SDD's frozen encoder E and generator G (issue 19).

Training, through `diffnb.fit` like every zoo trainer: L1 + MSE on pixels, a small perceptual term (LPIPS's formula
over toy-attr's trunk, `metrics.toy_lpips`) and a tiny KL, on `toy` images with the photometric augmentation on a
share `p_augment` of each batch."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import evaluate, metrics, toyae, world
from ..fit import TrainResult, augment, batches, fit, prepare
from ..fit import resume as resume_from
from ..toyae import AETrainConfig, build
from ..zoo import load


def train_ae(cfg: AETrainConfig, out_dir, progress: bool = True, resume: bool = False) -> TrainResult:
    """Train toy-ae through `fit` (no EMA: the shipped weights are the trained ones); writes config.json +
    diffusion_pytorch_model.safetensors (fp32) and train_log.json at every checkpoint. With resume=True a run
    continues from those files in out_dir (a fresh optimiser with a 100-step warm-up, the cosine decay where the
    run left it, the data stream moved on)."""
    out_dir = prepare(cfg, out_dir)
    torch.manual_seed(cfg.seed)
    ae = build(cfg)
    start = resume_from(out_dir, ae) if resume else 0
    ae.to(cfg.device)
    lp = metrics.toy_lpips(load("toy-attr").model).module.to(cfg.device)
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(   # warm-up over 100 steps, cosine decay over cfg.steps
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s + start, cfg.steps) / cfg.steps)))
    gen = torch.Generator().manual_seed(cfg.seed + start)
    data = batches(cfg.batch_size, cfg.seed + 7000 + start, cfg.workers)

    def loss_at(step):
        x = next(data).images
        k = int(round(cfg.p_augment * len(x)))
        x = torch.cat([augment(x[:k], gen), x[k:]]).to(cfg.device)
        post = ae.encode(x).latent_dist
        rec = ae.decode(post.sample(generator=gen)).sample
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.perceptual_weight * lp(rec, x).mean() \
            + cfg.kl_weight * post.kl().mean()
    return fit("toy-ae", ae, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched, start=start,
               save_weights=lambda step: ae.save_pretrained(out_dir, safe_serialization=True), progress=progress)


def card_lines(run_dir: Path) -> list:
    """toy-ae's card section: reconstruction PSNR and toy-attr agreement on toy and photo images."""
    ae = toyae.load_folder(run_dir)
    attr = load("toy-attr").model
    q = {d: evaluate.reconstruction_quality(ae, attr, d) for d in ("toy", "photo")}
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
