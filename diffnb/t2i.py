"""Text-to-image sampling with classifier-free guidance, for toy-t2i (pixel space) and Stable Diffusion
(latent space) through one code path: the only differences are the VAE and the image size.

    bundle = zoo.load("toy-t2i")
    out = t2i.sample(bundle, ["a smiling cat with glasses on a blue background"], guidance_scale=5.0,
                     generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import sampling, toyclip


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


def guided_eps(unet, x_t: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor,
               guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance in one batched UNet call on [uncond; cond] (the order attention
    processors see: the first half of the batch is the unconditional branch)."""
    if guidance_scale == 1.0:
        return unet(x_t, t, encoder_hidden_states=cond).sample
    eps = unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    eps_uncond, eps_cond = eps.chunk(2)
    eps = sampling.classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
    if not torch.isfinite(eps).all():
        raise FloatingPointError(f"the guided noise prediction became NaN/inf at t = {int(t)} "
                                 f"(guidance_scale = {guidance_scale}); use a smaller guidance scale")
    return eps


@torch.no_grad()
def sample(bundle: T2IBundle, prompts, guidance_scale: float = 5.0, num_inference_steps: int = 50, eta: float = 0.0,
           generator: Optional[torch.Generator] = None, negative_prompt: str = "", x_T: Optional[torch.Tensor] = None,
           return_trajectory: bool = False) -> sampling.SamplingOutput:
    """Sample one image per prompt with classifier-free guidance; returns decoded images in [-1, 1]."""
    if not isinstance(guidance_scale, (int, float)) or not 0.0 <= guidance_scale <= 50.0:
        raise ValueError(f"guidance_scale must be a number in [0, 50], got {guidance_scale!r}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    cond = encode_prompt(bundle, prompts)
    uncond = encode_prompt(bundle, [negative_prompt] * len(prompts))
    dev = next(bundle.unet.parameters()).device
    out = sampling.sample(lambda x, t: guided_eps(bundle.unet, x, t, cond, uncond, guidance_scale),
                          bundle.scheduler, batch_size=len(prompts), num_inference_steps=num_inference_steps, eta=eta,
                          generator=generator, x_T=x_T, image_shape=latent_shape(bundle),
                          return_trajectory=return_trajectory, device=dev, clamp=bundle.vae is None)
    out.images = decode(bundle, out.images.to(dev)).cpu()
    return out
