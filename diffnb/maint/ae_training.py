"""toy-ae's trainer and card section (python -m diffnb.zoo train / install toy-ae): the maintainers' side of
diffnb.toyae, SDD's frozen encoder E and generator G (issue 19).

Training: L1 + MSE on pixels, a small perceptual term (LPIPS's formula over toy-attr's trunk, `metrics.toy_lpips`)
and a tiny KL, on `toy` images with the photometric augmentation on a share `p_augment` of each batch."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import evaluate, metrics, toyae, world
from ..fit import TrainResult, augment, batches, log_loss, out_of_time, write_log
from ..toyae import AETrainConfig, build
from ..zoo import load


def train_ae(cfg: AETrainConfig, out_dir, progress: bool = True, resume: bool = False):
    """Train toy-ae; writes config.json + diffusion_pytorch_model.safetensors (fp32) and train_log.json."""
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
    data = batches(cfg.batch_size, cfg.seed + 7000, cfg.workers)
    t0, losses, window = time.time(), [], []
    for step in range(1, cfg.steps + 1):
        x = next(data).images
        k = int(round(cfg.p_augment * len(x)))
        x = torch.cat([augment(x[:k], gen), x[k:]]).to(cfg.device)
        post = ae.encode(x).latent_dist
        rec = ae.decode(post.sample(generator=gen)).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.perceptual_weight * lp(rec, x).mean() \
            + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        sched.step()
        window = log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress)
        done = step == cfg.steps or out_of_time(cfg, t0)
        if step % cfg.save_every == 0 or done:
            ae.save_pretrained(out_dir, safe_serialization=True)
            write_log(out_dir, cfg, step, t0, losses)
        if done:
            break
    return TrainResult("toy-ae", step, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                       str(out_dir), losses)


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
