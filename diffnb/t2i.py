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
from .devices import Bundle


@dataclass
class T2IBundle(Bundle):
    """A text-conditioned diffusion model and its parts; `.to(device)` moves all of them."""
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
        raise FloatingPointError(f"the classifier-free guidance noise prediction became NaN/inf at t = {int(t)} "
                                 f"(guidance_scale = {guidance_scale}); use a smaller guidance scale")
    return eps


def check_guidance_scale(guidance_scale) -> None:
    checks.guidance_scale(guidance_scale)


def check_run(bundle: T2IBundle, guidance_scale, num_inference_steps) -> int:
    """The checks every text-conditioned run makes before any work: the guidance scale w and the number of
    sampling steps (an integer in [1, the scheduler's training steps]). Returns the steps as an int."""
    check_guidance_scale(guidance_scale)
    return checks.num_inference_steps(num_inference_steps, bundle.scheduler.config.num_train_timesteps)


def check_prompt_count(prompts: list, n: int, what: str = "one prompt per image") -> None:
    """`prompts` (a list) has n entries."""
    if len(prompts) != n:
        raise ValueError(f"give {what} ({n}), got {len(prompts)} prompts")


def check_x_T(bundle: T2IBundle, x_T, batch_size: int, what: str = "one per prompt") -> torch.Tensor:
    """x_T for a text-conditioned run: a finite float tensor (batch_size, C, H, W) in the UNet's latent shape and
    dtype."""
    shape = latent_shape(bundle)
    if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != (batch_size, *shape):
        got = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise ValueError(f"x_T must be a ({batch_size}, {', '.join(map(str, shape))}) tensor, {what}, got {got}")
    return checks.tensor("x_T", x_T, dtype=bundle.unet.dtype)


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
    clipped = bool(scheduler.config.clip_sample)  # re-derive eps from the clipped P_t (`sampling.ddim_scheduler`)
    dev = device_of(bundle)
    x = x.to(dev)
    for i in range(start_index, end_index):
        t = scheduler.timesteps[i]
        c, u = _at_step(cond, i, t, x).to(dev), _at_step(uncond, i, t, x).to(dev)
        if controller is None:
            x = scheduler.step(cfg_eps(bundle.unet, x, t, c, u, guidance_scale), t, x,
                               use_clipped_model_output=clipped).prev_sample
        else:
            step = ControlStep(i, n, guidance_scale != 1.0, **(step_inputs(i) if step_inputs else {}))
            with controller.at(step):
                x = scheduler.step(cfg_eps(bundle.unet, x, t, c, u, guidance_scale), t, x,
                               use_clipped_model_output=clipped).prev_sample
                x = controller.step_callback(x)
        if callback is not None:
            y = callback(i, t, x)
            x = x if y is None else y
    return x


@torch.no_grad()
def sdedit(bundle: T2IBundle, images, prompts, strength: float = 0.5, guidance_scale: float = 5.0,
           num_inference_steps: int = 25, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022) under a text prompt: noise the images to the step where `strength` starts
    (`sampling.noise_to_step`, t about strength * T), then denoise from there with the prompts (DDIM with
    classifier-free guidance, eta 0, the bundle's own clipping: this is generation). Returns decoded images in [-1, 1].

        edited = t2i.sdedit(bundle, x0, ["a cat on a red background"] * len(x0), strength=0.6,
                            generator=torch.Generator().manual_seed(0))
    """
    from .images import to_tensor
    num_inference_steps = check_run(bundle, guidance_scale, num_inference_steps)
    k = sampling.sdedit_start_index(num_inference_steps, strength)
    prompts = toyclip._as_prompts(prompts)
    x0 = to_tensor(images, size=bundle.image_size)
    check_prompt_count(prompts, len(x0))
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
    that methods drive. x_T: (len(prompts), C, H, W) noise in the UNet's latent shape (`latent_shape`)."""
    check_run(bundle, guidance_scale, num_inference_steps)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if x_T is not None:
        check_x_T(bundle, x_T, len(prompts))
    cond = encode_prompt(bundle, prompts)
    uncond = encode_prompt(bundle, [negative_prompt] * len(prompts))
    dev = device_of(bundle)
    out = sampling.sample(lambda x, t: cfg_eps(bundle.unet, x, t, cond, uncond, guidance_scale),
                          bundle.scheduler, batch_size=len(prompts), num_inference_steps=num_inference_steps, eta=eta,
                          generator=generator, x_T=x_T, image_shape=latent_shape(bundle),
                          return_trajectory=return_trajectory, device=dev, clamp=bundle.vae is None,
                          use_clipped_model_output=True)
    out.images = decode(bundle, out.images.to(dev)).cpu()
    return out


def text_tower(clip_model):
    """A transformers CLIPTextModel holding a copy of a CLIPModel's text tower (frozen)."""
    from transformers import CLIPTextModel
    text = CLIPTextModel(clip_model.config.text_config)
    getattr(text, "text_model", text).load_state_dict(clip_model.text_model.state_dict())  # transformers 4.x nests it
    return text.eval().requires_grad_(False)
