"""Text-to-image sampling with classifier-free guidance, for toy-t2i (pixel space) and Stable Diffusion
(latent space) through one code path: the only differences are the VAE and the image size.

    bundle = zoo.load("toy-t2i")
    out = t2i.sample(bundle, ["a smiling cat with glasses on a blue background"], guidance_scale=5.0,
                     generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import checks, sampling, toyclip


@dataclass
class T2IBundle:
    """A text-conditioned diffusion model and its parts."""
    name: str
    unet: torch.nn.Module           # diffusers UNet2DConditionModel
    text_encoder: torch.nn.Module   # transformers CLIPTextModel (frozen)
    tokenizer: object               # toy-clip's word-level tokenizer or CLIP's BPE tokenizer
    scheduler: object               # diffusers DDIMScheduler
    vae: Optional[torch.nn.Module]  # diffusers AutoencoderKL for latent models, None in pixel space
    image_size: int                 # pixels
    source: str
    card: str = ""


def device_of(bundle) -> torch.device:
    """The device of the bundle's denoising network."""
    return next(bundle.unet.parameters()).device


def latent_shape(bundle: T2IBundle) -> tuple:
    """(C, H, W) of the space the UNet denoises: pixels for toy-t2i, VAE latents for Stable Diffusion."""
    c = bundle.unet.config
    return (c.in_channels, c.sample_size, c.sample_size)


@torch.no_grad()
def encode_prompt(bundle: T2IBundle, prompts) -> torch.Tensor:
    """Prompts -> (B, L, D) text-encoder hidden states, the cross-attention context. "" is the null prompt."""
    enc = toyclip.tokenize(bundle.tokenizer, prompts)
    dev = next(bundle.text_encoder.parameters()).device
    return bundle.text_encoder(input_ids=enc["input_ids"].to(dev)).last_hidden_state


def encode_image(bundle: T2IBundle, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] -> what the UNet denoises (VAE latents times the scaling factor)."""
    if bundle.vae is None:
        return images
    return bundle.vae.encode(images).latent_dist.mean * bundle.vae.config.scaling_factor


def decode(bundle: T2IBundle, latents: torch.Tensor) -> torch.Tensor:
    """Inverse of encode_image, clamped to [-1, 1]."""
    if bundle.vae is None:
        return latents.clamp(-1, 1)
    return bundle.vae.decode(latents / bundle.vae.config.scaling_factor).sample.clamp(-1, 1)


def null_embedding(bundle: T2IBundle, batch_size: int) -> torch.Tensor:
    """(batch_size, L, D): the embedding of the empty prompt "", the unconditional branch's context ∅ of
    classifier-free guidance (what null-text inversion optimises)."""
    return encode_prompt(bundle, [""] * batch_size)


def cfg_eps(unet, x_t: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor,
            guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance in one batched UNet call on [uncond; cond] (the order attention
    processors see: the first half of the batch is the unconditional branch). w = 1 is one call on cond."""
    if guidance_scale == 1.0:
        return unet(x_t, t, encoder_hidden_states=cond).sample
    eps = unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    eps_uncond, eps_cond = eps.chunk(2)
    eps = sampling.classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
    if not torch.isfinite(eps).all():
        raise FloatingPointError(f"the classifier-free guided noise prediction became NaN/inf at t = {int(t)} "
                                 f"(guidance_scale = {guidance_scale}); use a smaller guidance scale")
    return eps


def check_guidance_scale(guidance_scale) -> None:
    checks.guidance_scale(guidance_scale)


@dataclass(frozen=True)
class ControlStep:
    """What an attention controller needs to know about the UNet call it is inside, handed to it by the loop
    (`controller.at(step)`), never set on it from outside.

    index: the sampling step i, 0 for the noisiest (the τ windows compare i with τ · num_steps);
    uncond_branch: the batch holds the unconditional branch first ([uncond; cond], guidance_scale != 1);
    value: a value input for the conditional branch at this call (StyleDiffusion's c̃_t while it is trained);
    maps: a list the controller appends this call's cross-attention maps to (kept with gradients), or None."""
    index: int
    num_steps: int
    uncond_branch: bool = True
    value: Optional[torch.Tensor] = None
    maps: Optional[list] = None


def _at_step(v, i, t, x):
    """A per-step input: one tensor for every step, a list with one per step of the schedule, or a callable
    (i, t, x_t) -> tensor."""
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (list, tuple)):
        return v[i]
    return v(i, t, x)


@torch.no_grad()
def denoise(bundle: T2IBundle, x: torch.Tensor, cond, uncond, guidance_scale: float = 5.0,
            num_inference_steps: int = 50, start_index: int = 0, end_index: Optional[int] = None,
            inverted: bool = False, controller=None, step_inputs: Optional[Callable[[int], dict]] = None,
            callback: Optional[Callable] = None) -> torch.Tensor:
    """The text-conditioned DDIM loop (eta 0) with classifier-free guidance, from x at step index `start_index`
    (x_T for 0) down to step `end_index` (default: x_0). Returns the latent, not decoded.

    cond, uncond: the conditional and unconditional contexts, each one tensor, a list with one per step of the
    schedule (null-text inversion's per-step null embeddings), or a callable (i, t, x_t) -> tensor.
    inverted: x comes from an inversion, so DDIM runs without clipping P_t (`sampling.ddim_scheduler`).
    controller: an attention controller installed on the UNet by the caller (`attention.controlled`); the loop
    tells it which step each UNet call belongs to (`controller.at(ControlStep)`, extra fields from
    `step_inputs(i)`) and passes x_{t-1} through `controller.step_callback` after each step.
    callback(i, t, x_{t-1}) -> x_{t-1} or None, after each step.

        x = t2i.denoise(bundle, x_T, t2i.encode_prompt(bundle, prompts), t2i.null_embedding(bundle, len(prompts)),
                        guidance_scale=5.0, num_inference_steps=25)
        images = t2i.decode(bundle, x)
    """
    check_guidance_scale(guidance_scale)
    n = checks.num_inference_steps(num_inference_steps, bundle.scheduler.config.num_train_timesteps)
    end_index = n if end_index is None else end_index
    checks.step_index("start_index", start_index, n + 1)
    checks.step_index("end_index", end_index, n + 1)
    scheduler = sampling.ddim_scheduler(bundle.scheduler, inverted)
    scheduler.set_timesteps(n)
    dev = device_of(bundle)
    x = x.to(dev)
    for i in range(start_index, end_index):
        t = scheduler.timesteps[i]
        c, u = _at_step(cond, i, t, x).to(dev), _at_step(uncond, i, t, x).to(dev)
        if controller is None:
            x = scheduler.step(cfg_eps(bundle.unet, x, t, c, u, guidance_scale), t, x).prev_sample
        else:
            step = ControlStep(i, n, guidance_scale != 1.0, **(step_inputs(i) if step_inputs else {}))
            with controller.at(step):
                x = scheduler.step(cfg_eps(bundle.unet, x, t, c, u, guidance_scale), t, x).prev_sample
                x = controller.step_callback(x)
        if callback is not None:
            y = callback(i, t, x)
            x = x if y is None else y
    return x


@torch.no_grad()
def sdedit(bundle: T2IBundle, images, prompts, strength: float = 0.5, guidance_scale: float = 5.0,
           num_inference_steps: int = 25, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022) under a text prompt: noise the images to the step where `strength` starts
    (`sampling.noise_to_step`, t about strength * T), then denoise from there with the prompts (guided DDIM,
    eta 0, the bundle's own clipping: this is generation). Returns decoded images in [-1, 1].

        edited = t2i.sdedit(bundle, x0, ["a cat on a red background"] * len(x0), strength=0.6,
                            generator=torch.Generator().manual_seed(0))
    """
    from .images import to_tensor
    prompts = toyclip._as_prompts(prompts)
    x0 = to_tensor(images, size=bundle.image_size)
    if len(prompts) != len(x0):
        raise ValueError(f"give one prompt per image ({len(x0)}), got {len(prompts)}")
    k = sampling.sdedit_start_index(checks.num_inference_steps(num_inference_steps), strength)
    scheduler = sampling.ddim_scheduler(bundle.scheduler)
    scheduler.set_timesteps(num_inference_steps)
    z0 = encode_image(bundle, x0.to(device_of(bundle)))
    x = sampling.noise_to_step(scheduler, z0, k, generator)
    x = denoise(bundle, x, encode_prompt(bundle, prompts), null_embedding(bundle, len(prompts)), guidance_scale,
                num_inference_steps, start_index=k)
    return decode(bundle, x).cpu()


@torch.no_grad()
def sample(bundle: T2IBundle, prompts, guidance_scale: float = 5.0, num_inference_steps: int = 50, eta: float = 0.0,
           generator: Optional[torch.Generator] = None, negative_prompt: str = "", x_T: Optional[torch.Tensor] = None,
           return_trajectory: bool = False) -> sampling.SamplingOutput:
    """Sample one image per prompt with classifier-free guidance; returns decoded images in [-1, 1]. Any eta and
    the trajectory, through `sampling.sample` (the loop of the unconditional models); `denoise` is the eta-0 loop
    that methods drive."""
    check_guidance_scale(guidance_scale)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    cond = encode_prompt(bundle, prompts)
    uncond = encode_prompt(bundle, [negative_prompt] * len(prompts))
    dev = device_of(bundle)
    out = sampling.sample(lambda x, t: cfg_eps(bundle.unet, x, t, cond, uncond, guidance_scale),
                          bundle.scheduler, batch_size=len(prompts), num_inference_steps=num_inference_steps, eta=eta,
                          generator=generator, x_T=x_T, image_shape=latent_shape(bundle),
                          return_trajectory=return_trajectory, device=dev, clamp=bundle.vae is None)
    out.images = decode(bundle, out.images.to(dev)).cpu()
    return out


# ----------------------------------------------------------------------------------------------
# Training toy-t2i (python -m diffnb.zoo train toy-t2i): a UNet2DConditionModel on toy-clip's frozen text tower
# ----------------------------------------------------------------------------------------------
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
    workers: int = 0                  # processes drawing world batches ahead (training.batches)
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


def t2i_unet(cfg: T2ITrainConfig, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, norm_num_groups=16,
        attention_head_dim=4,  # diffusers names the number of heads so in UNet2DConditionModel
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim)


def text_tower(clip_model):
    """A transformers CLIPTextModel holding a copy of a CLIPModel's text tower (frozen)."""
    from transformers import CLIPTextModel
    text = CLIPTextModel(clip_model.config.text_config)
    getattr(text, "text_model", text).load_state_dict(clip_model.text_model.state_dict())  # transformers 4.x nests it
    return text.eval().requires_grad_(False)


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


def train_t2i(cfg: T2ITrainConfig, out_dir, clip_bundle, progress: bool = True, resume: bool = False):
    """Train toy-t2i; `clip_bundle` is zoo.load("toy-clip"). Same loop, EMA and checkpoints as toy-ddpm."""
    import copy
    import json
    import time
    from pathlib import Path

    import numpy as np
    import torch.nn.functional as F

    from . import training, world
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    text = text_tower(clip_bundle.model)
    unet = t2i_unet(cfg, text.config.hidden_size)
    scheduler = training.ddpm_scheduler(training.DDPMTrainConfig())
    ema = copy.deepcopy(unet).requires_grad_(False)
    start = training._load_state(out_dir, unet, ema) if resume else 0
    data = training.batches(cfg.batch_size, cfg.seed + 5000 + start, cfg.workers)  # workers start before CUDA does
    text.to(dev), unet.to(dev), ema.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    warm = cfg.warmup if not start else 200
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    gen = torch.Generator().manual_seed(cfg.seed + start)
    rng = np.random.default_rng([cfg.seed, start, 41])
    scheduler.save_pretrained(out_dir / "scheduler")
    t0, losses, window = time.time(), [], []
    t_start = time.time()
    probe = {"text_probe": text_probe(text, clip_bundle.tokenizer)}
    if start and (out_dir / "train_log.json").is_file():
        prev = json.loads((out_dir / "train_log.json").read_text())
        losses, t0 = [tuple(x) for x in prev["losses"]], time.time() - 60 * prev["minutes"]
    for step in range(start + 1, cfg.steps + 1):
        batch = next(data)
        captions = ["" if rng.random() < cfg.p_uncond else
                    world.caption(a) if rng.random() < cfg.p_full_caption else world.partial_caption(a, rng)
                    for a in batch.attributes]
        with torch.no_grad():
            ids = toyclip.tokenize(clip_bundle.tokenizer, captions)["input_ids"].to(dev)
            context = text(input_ids=ids).last_hidden_state
        noise = torch.randn(batch.images.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (cfg.batch_size,), generator=gen)
        x0, noise, t = batch.images.to(dev), noise.to(dev), t.to(dev)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, encoder_hidden_states=context).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        training._ema_update(ema, unet, cfg.ema_decay if step > cfg.warmup or start else 0.0)
        window = training._log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress)
        done = step == cfg.steps or training.out_of_time(cfg, t_start)
        if step % cfg.save_every == 0 or done:
            training._save_half(ema, out_dir)
            training._save_state(out_dir, step, unet, ema)
            training._write_log(out_dir, cfg, step, t0, losses, probe)
        if done:
            break
    return training.TrainResult("toy-t2i", step, (time.time() - t0) / 60,
                                losses[-1][1] if losses else float("nan"), str(out_dir), losses)
