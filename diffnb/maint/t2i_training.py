"""Training toy-t2i (`python -m diffnb.zoo train toy-t2i`): a UNet2DConditionModel on toy-clip's frozen text tower,
through `fit`; and the fingerprint of the text conditioning that installing a model checks."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import toyclip, world
from ..fit import TrainResult, batches, fit, prepare, save_half
from ..t2i import text_tower
from .training import DDPMTrainConfig, ddpm_scheduler


@dataclass
class T2ITrainConfig:
    """toy-t2i: noise prediction conditioned on captions, with caption dropout for classifier-free guidance."""
    steps: int = 16000
    batch_size: int = 32
    lr: float = 4e-4                  # AdamW, constant after warm-up
    warmup: int = 500
    ema_decay: float = 0.999          # the shipped weights are the EMA weights
    seed: int = 0
    block_out_channels: tuple = (32, 64, 128)   # cross-attention at 16x16 and 8x8 only (32x32 is 6x slower)
    layers_per_block: int = 1
    p_uncond: float = 0.1             # caption dropout: the null prompt "" (classifier-free guidance)
    p_full_caption: float = 0.5       # full captions; the rest leave out each attribute with probability 1/2
    save_every: int = 500
    log_every: int = 50
    num_threads: int = 0
    device: str = "cpu"               # "cuda" on a GPU (noise is still drawn on the CPU generator)
    workers: int = 0                  # processes drawing world batches ahead (fit.batches)
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`
    offset_noise: float = 0.0         # std of a per-image, per-channel constant added to the noise (offset noise)


def t2i_unet(cfg: T2ITrainConfig, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, norm_num_groups=16,
        attention_head_dim=4,  # diffusers names the number of heads so in UNet2DConditionModel
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim)


TEXT_PROBE = "a smiling cat with red fur, pale face, open eyes, glasses and a hat on a white background"


@torch.no_grad()
def text_probe(text_encoder, tokenizer) -> dict:
    """A fingerprint of the text conditioning: the token ids of TEXT_PROBE and a few numbers of its embedding.
    Training stores it in train_log.json; installing a model recomputes it and refuses a model that was trained
    against different text embeddings (another transformers or tokenizers build can load the tower differently)."""
    ids = toyclip.tokenize(tokenizer, [TEXT_PROBE])["input_ids"]
    dev = next(text_encoder.parameters()).device
    e = text_encoder(input_ids=ids.to(dev)).last_hidden_state[0].float().cpu()
    return {"ids": ids[0].tolist(), "mean_per_token": [round(float(v), 5) for v in e.mean(-1)],
            "abs_mean": round(float(e.abs().mean()), 5)}


def check_text_probe(saved: dict, text_encoder, tokenizer, atol: float = 1e-3) -> None:
    here = text_probe(text_encoder, tokenizer)
    if saved["ids"] != here["ids"]:
        raise ValueError(f"the model was trained with other token ids for {TEXT_PROBE!r}: {saved['ids']} there, "
                         f"{here['ids']} here; retrain it with this tokenizer")
    diff = max(abs(a - b) for a, b in zip(saved["mean_per_token"], here["mean_per_token"]))
    if diff > atol:
        raise ValueError(f"the model was trained against different text embeddings (largest per-token difference "
                         f"{diff:.4f} > {atol}); the text tower loaded differently there. Retrain it here, or "
                         "with the same transformers version")


def train_t2i(cfg: T2ITrainConfig, out_dir, clip_bundle, progress: bool = True, resume: bool = False) -> TrainResult:
    """Train toy-t2i; `clip_bundle` is zoo.load("toy-clip"). Same loop, EMA and checkpoints as toy-ddpm."""
    from .. import fit as kit
    out_dir = prepare(cfg, out_dir)
    torch.manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    text = text_tower(clip_bundle.model)
    unet = t2i_unet(cfg, text.config.hidden_size)
    scheduler = ddpm_scheduler(DDPMTrainConfig())
    ema = copy.deepcopy(unet).requires_grad_(False)
    start = kit.resume(out_dir, unet, ema) if resume else 0
    data = batches(cfg.batch_size, cfg.seed + 5000 + start, cfg.workers)  # workers start before CUDA does
    text.to(dev), unet.to(dev), ema.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    warm = cfg.warmup if not start else 200
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    gen = torch.Generator().manual_seed(cfg.seed + start)
    rng = np.random.default_rng([cfg.seed, start, 41])
    scheduler.save_pretrained(out_dir / "scheduler")
    probe = {"text_probe": text_probe(text, clip_bundle.tokenizer)}

    def loss_at(step):
        batch = next(data)
        captions = ["" if rng.random() < cfg.p_uncond else
                    world.caption(a) if rng.random() < cfg.p_full_caption else world.partial_caption(a, rng)
                    for a in batch.attributes]
        with torch.no_grad():
            ids = toyclip.tokenize(clip_bundle.tokenizer, captions)["input_ids"].to(dev)
            context = text(input_ids=ids).last_hidden_state
        noise = torch.randn(batch.images.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        if cfg.offset_noise:   # drawn after t, so a run with offset_noise = 0 keeps the recipe's stream
            noise = noise + cfg.offset_noise * torch.randn(noise.shape[0], noise.shape[1], 1, 1, generator=gen)
        x0, noise, t = batch.images.to(dev), noise.to(dev), t.to(dev)
        return F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=context).sample, noise)
    return fit("toy-t2i", unet, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched, ema=ema, start=start,
               save_weights=lambda step: save_half(ema, out_dir), extra_log=probe, progress=progress)
