"""Sampling: the reverse process of a diffusion model, written from the thesis's Eqs. 3-6.

Notation (thesis §3.1, which writes alpha_t for what DDIM calls alpha_bar_t):

    pred_x0 = P_t  = (x_t - sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_bar_t)                 (Eq. 4)
    dir_xt  = D_t  = sqrt(1 - alpha_bar_prev - sigma_t^2) * eps                              (Eq. 5)
    sigma_t        = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                     * sqrt(1 - alpha_bar_t / alpha_bar_prev)                                   (Eq. 6)
    x_prev         = sqrt(alpha_bar_prev) * P_t + D_t + sigma_t * z                          (Eq. 3)

`ddim_step` and `ddpm_step` are the hand-written steps that notebook 01 teaches; the tests show them equal to
diffusers' `DDIMScheduler.step` / `DDPMScheduler.step`. `sample` itself drives the diffusers scheduler, so
every later notebook uses the library's maths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

from . import checks


@dataclass
class StepOutput:
    """One reverse step."""
    prev_sample: torch.Tensor     # x_{t-1}, shape of x_t
    pred_x0: torch.Tensor         # P_t (Eq. 4)
    dir_xt: torch.Tensor          # D_t (Eq. 5); for ddpm_step the x_t term of the posterior mean
    sigma: float                  # sigma_t (Eq. 6)


@dataclass
class SamplingOutput:
    """The result of `sample`."""
    images: torch.Tensor                          # (B, C, H, W) x_0 in [-1, 1]
    x_T: torch.Tensor                             # the starting noise
    timesteps: list                               # the timesteps visited, high to low
    trajectory: list = field(default_factory=list)  # per step dicts {t, x_t, pred_x0, dir_xt} if asked for


def alpha_bar_pair(scheduler, t: int):
    """(alpha_bar_t, alpha_bar_prev, prev_t) for the scheduler's current spacing (set_timesteps first)."""
    n_train = scheduler.config.num_train_timesteps
    n_inf = scheduler.num_inference_steps or n_train
    prev_t = int(t) - n_train // n_inf
    a_t = scheduler.alphas_cumprod[int(t)]
    if prev_t >= 0:
        a_prev = scheduler.alphas_cumprod[prev_t]
    else:  # DDIM's final step uses final_alpha_cumprod (1.0 with set_alpha_to_one); DDPM uses 1.0
        a_prev = getattr(scheduler, "final_alpha_cumprod", torch.tensor(1.0))
    return a_t, a_prev, prev_t


def pred_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """P_t, the predicted x_0 (Eq. 4)."""
    return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t ** 0.5


def ddim_sigma(alpha_bar_t, alpha_bar_prev, eta: float):
    """sigma_t (Eq. 6): 0 for DDIM (eta=0), the DDPM posterior std for eta=1."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)) ** 0.5


def dir_xt(eps: torch.Tensor, alpha_bar_prev, sigma) -> torch.Tensor:
    """D_t, the direction pointing to x_t (Eq. 5)."""
    return (1 - alpha_bar_prev - sigma ** 2) ** 0.5 * eps


def ddim_map(x: torch.Tensor, eps: torch.Tensor, alpha_bar_from, alpha_bar_to) -> torch.Tensor:
    """The deterministic DDIM map between two noise levels, differentiable: x_to = sqrt(alpha_bar_to) P +
    sqrt(1 - alpha_bar_to) eps, with P = pred_x0(x, eps, alpha_bar_from). Towards less noise it is a DDIM step
    (Eq. 3 with eta = 0, no clipping); towards more noise it is DDIM inversion (Eq. 7)."""
    return alpha_bar_to ** 0.5 * pred_x0(x, eps, alpha_bar_from) + (1 - alpha_bar_to) ** 0.5 * eps


def ddim_step(eps: torch.Tensor, t: int, x_t: torch.Tensor, scheduler, eta: float = 0.0,
              noise: Optional[torch.Tensor] = None, clip_sample: Optional[bool] = None,
              use_clipped_model_output: bool = False) -> StepOutput:
    """One DDIM step x_t -> x_{t-1} (Eq. 3), the same maths as diffusers' `DDIMScheduler.step`.

    eps: (B, C, H, W) noise prediction at x_t; noise: the z_t to add when eta > 0 (drawn by the caller).
    clip_sample defaults to the scheduler's config; clipping P_t to [-1, 1] is diffusers' behaviour.
    """
    # 1. alpha_bar_t and alpha_bar_prev for this spacing
    a_t, a_prev, _ = alpha_bar_pair(scheduler, t)
    # 2. P_t (Eq. 4), optionally clipped
    p = pred_x0(x_t, eps, a_t)
    if scheduler.config.clip_sample if clip_sample is None else clip_sample:
        r = scheduler.config.clip_sample_range
        p = p.clamp(-r, r)
        if use_clipped_model_output:  # re-derive eps from the clipped P_t
            eps = (x_t - a_t ** 0.5 * p) / (1 - a_t) ** 0.5
    # 3. sigma_t (Eq. 6) and D_t (Eq. 5)
    sigma = ddim_sigma(a_t, a_prev, eta)
    d = dir_xt(eps, a_prev, sigma)
    # 4. x_{t-1} (Eq. 3)
    prev = a_prev ** 0.5 * p + d
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs `noise` (the z_t of Eq. 3), e.g. torch.randn_like(x_t)")
        prev = prev + sigma * noise
    return StepOutput(prev, p, d, float(sigma))


def ddpm_step(eps: torch.Tensor, t: int, x_t: torch.Tensor, scheduler,
              noise: Optional[torch.Tensor] = None, clip_sample: Optional[bool] = None) -> StepOutput:
    """One ancestral DDPM step through the posterior q(x_{t-1} | x_t, P_t) (Ho et al. Eqs. 6-7), the same maths
    as diffusers' `DDPMScheduler.step` with variance_type 'fixed_small'. Without clipping it equals
    `ddim_step(..., eta=1)`: DDPM is DDIM with eta = 1."""
    # 1. alphas and betas for this spacing
    a_t, a_prev, _ = alpha_bar_pair(scheduler, t)
    beta_t = 1 - a_t / a_prev
    # 2. P_t (Eq. 4), optionally clipped
    p = pred_x0(x_t, eps, a_t)
    if scheduler.config.clip_sample if clip_sample is None else clip_sample:
        r = scheduler.config.clip_sample_range
        p = p.clamp(-r, r)
    # 3. posterior mean mu = c0 * P_t + ct * x_t
    c0 = a_prev ** 0.5 * beta_t / (1 - a_t)
    ct = (1 - beta_t) ** 0.5 * (1 - a_prev) / (1 - a_t)
    mean = c0 * p + ct * x_t
    # 4. posterior std sigma_t (= Eq. 6 with eta = 1)
    sigma = ddim_sigma(a_t, a_prev, 1.0) if int(t) > 0 else 0.0
    if float(sigma) > 0:
        if noise is None:
            raise ValueError("ddpm_step needs `noise` (the z_t of Eq. 3) for t > 0, e.g. torch.randn_like(x_t)")
        mean = mean + sigma * noise
    return StepOutput(mean, p, ct * x_t, float(sigma))


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float):
    """eps_uncond + w * (eps_cond - eps_uncond) (Ho & Salimans); w = 1 is the conditional model alone."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


EpsModel = Union[torch.nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def predict_eps(model: EpsModel, x_t: torch.Tensor, t) -> torch.Tensor:
    """eps_theta(x_t, t) for a diffusers UNet2DModel or any callable (x_t, t) -> eps."""
    out = model(x_t, t)
    return out.sample if hasattr(out, "sample") else out


def model_shape(model) -> Optional[tuple]:
    """(C, H, W) that a diffusers UNet (or a wrapper with its `config`) denoises; None for a plain callable."""
    cfg = getattr(model, "config", None)
    size, channels = getattr(cfg, "sample_size", None), getattr(cfg, "in_channels", None)
    if size is None or channels is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return (int(channels), int(h), int(w))


def model_dtype(model) -> Optional[torch.dtype]:
    """The dtype of a module's parameters; None for a plain callable."""
    params = getattr(model, "parameters", None)
    if params is None:
        return None
    p = next(iter(params()), None)
    return None if p is None else p.dtype


def check_x0(model, x0, name: str = "x0") -> torch.Tensor:
    """An image batch for a pixel model: a (B, C, H, W) float tensor in [-1, 1], finite, of the model's sample
    shape and dtype (where the model states them)."""
    shape = model_shape(model)
    checks.tensor(name, x0, shape=(None, *shape) if shape else (None, None, None, None), low=-1.0, high=1.0,
                  dtype=model_dtype(model),
                  hint="a (B, C, H, W) image batch in [-1, 1]: convert images with diffnb.images.to_tensor")
    return x0


def check_x_T(model, x_T, batch_size: Optional[int] = None, image_shape: Optional[tuple] = None,
              name: str = "x_T") -> torch.Tensor:
    """Starting noise (or an inverted x_T): a finite (B, C, H, W) float tensor of `batch_size` and `image_shape`
    (default: the model's sample shape) and of the model's dtype."""
    shape = tuple(image_shape) if image_shape is not None else model_shape(model)
    return checks.tensor(name, x_T, shape=(batch_size, *(shape or (None, None, None))), dtype=model_dtype(model),
                         hint="(B, C, H, W) noise, one per image, of the model's sample shape")


def _check_sampling_args(batch_size, num_inference_steps, eta, n_train) -> tuple:
    """(batch_size, num_inference_steps, eta) as plain Python numbers, or a ValueError naming the bad one."""
    return (checks.count("batch_size", batch_size), checks.num_inference_steps(num_inference_steps, n_train),
            checks.number("eta", eta, 0.0, 1.0, "(0 = DDIM, 1 = DDPM)"))


# ------------------------------------------------------------------------------------------------
# The scheduler choice, in one place
# ------------------------------------------------------------------------------------------------
def ddim_scheduler(scheduler, inverted: bool = False):
    """The DDIM sampler over `scheduler`'s noise schedule. This is the one place that chooses clipping:

    inverted=False, generation from pure noise: the model's own setting (the toy pixel models clip P_t to
    [-1, 1], which sampling from noise needs). toy-t2i steps with `use_clipped_model_output=True` (`t2i.sample`,
    `t2i.denoise`; issue 14, measured 2026-11-29), which re-derives eps from the clipped P_t. Without it the DDIM
    step mixes the clipped P_t with the unclipped eps, and at eta = 0 that pulls toy-t2i's global colours to grey
    (caption "a person": the background colour's spread over 24 seeds is 0.034 without, 0.263 with, 0.254 in the world);
    inverted=True, sampling back from an inverted x_T: clip_sample=False, since clipping P_t breaks the symmetry
    that inversion relies on (on toy-ddpm it raises the 50-step reconstruction MSE about 30x).
    """
    from diffusers import DDIMScheduler
    if inverted:
        return DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    return DDIMScheduler.from_config(scheduler.config)


def inversion_schedulers(scheduler):
    """(DDIMScheduler, DDIMInverseScheduler) sharing `scheduler`'s betas, both with clip_sample=False
    (`ddim_scheduler(scheduler, inverted=True)` and its inverse)."""
    import inspect

    from diffusers import DDIMInverseScheduler
    accepted = inspect.signature(DDIMInverseScheduler.__init__).parameters   # e.g. no variance_type
    inverse_config = {k: v for k, v in scheduler.config.items() if k in accepted}
    return ddim_scheduler(scheduler, inverted=True), DDIMInverseScheduler.from_config(inverse_config, clip_sample=False)


# ------------------------------------------------------------------------------------------------
# SDEdit: noise to step k, then denoise from step k
# ------------------------------------------------------------------------------------------------
def sdedit_start_index(num_inference_steps: int, strength: float) -> int:
    """The step index k where SDEdit at `strength` starts: k = n - max(1, round(strength n)), so that the first
    timestep denoised is about strength * T (strength 1: from pure noise; small strengths: at least one step)."""
    checks.number("strength", strength, 0.0, 1.0, low_open=True)
    return num_inference_steps - max(1, round(strength * num_inference_steps))


def noise_to_step(scheduler, x0: torch.Tensor, start_index: int,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) (Eq. 2) at t = scheduler.timesteps[start_index] (call set_timesteps first): the
    first half of SDEdit. The noise is drawn on the CPU from `generator`, then moved to x0's device."""
    from diffusers.utils.torch_utils import randn_tensor
    generator = checks.generator(generator)
    noise = randn_tensor(tuple(x0.shape), generator=generator, device=torch.device("cpu")).to(x0.device)
    return scheduler.add_noise(x0, noise, scheduler.timesteps[start_index:start_index + 1].repeat(len(x0)))


@torch.inference_mode()
def sdedit(model: EpsModel, scheduler, x0: torch.Tensor, strength: float = 0.5, num_inference_steps: int = 50,
           eta: float = 0.0, generator: Optional[torch.Generator] = None, clamp: bool = True) -> SamplingOutput:
    """SDEdit (Meng et al. 2022) with an unconditional model: noise x0 to the step where `strength` starts
    (`noise_to_step`), then denoise from there with `sample(..., start_index=k)`. The text-conditioned version
    is `t2i.sdedit`; both share the two halves.

        out = sampling.sdedit(ddpm.unet, ddpm.scheduler, x0, strength=0.5, num_inference_steps=50,
                              generator=torch.Generator().manual_seed(0))      # out.images, out.x_T = x_k
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim != 4:
        raise ValueError("x0 must be a (B, C, H, W) tensor; convert images with diffnb.images.to_tensor")
    checks.num_inference_steps(num_inference_steps, scheduler.config.num_train_timesteps)
    k = sdedit_start_index(num_inference_steps, strength)
    generator = checks.generator(generator)     # one stream for the noise to step k and the steps after
    scheduler.set_timesteps(num_inference_steps)
    x_k = noise_to_step(scheduler, x0, k, generator)
    return sample(model, scheduler, batch_size=x0.shape[0], num_inference_steps=num_inference_steps, eta=eta,
                  generator=generator, x_T=x_k, image_shape=tuple(x0.shape[1:]), device=x0.device, clamp=clamp,
                  start_index=k)


@torch.inference_mode()
def sample(model: EpsModel, scheduler, batch_size: int = 16, num_inference_steps: int = 50, eta: float = 0.0,
           generator: Optional[torch.Generator] = None, x_T: Optional[torch.Tensor] = None,
           image_shape: Optional[tuple] = None, return_trajectory: bool = False,
           device: Optional[Union[str, torch.device]] = None, clamp: bool = True,
           start_index: int = 0, use_clipped_model_output: bool = False) -> SamplingOutput:
    """Draw images with a diffusers scheduler: DDIMScheduler (any eta) or DDPMScheduler (eta ignored).

    Noise comes from `generator` (a CPU torch.Generator, or an int seed) so the same seed gives the same pixels on
    any device.
    image_shape (C, H, W) defaults to the UNet's config. clamp=False keeps x_0 unclamped (latent models).
    start_index: begin at step index k of the schedule, with x_T holding x at timesteps[k] (SDEdit).
    use_clipped_model_output (DDIM): where the scheduler clips P_t, re-derive eps from the clipped P_t so that the
    step stays consistent (diffusers' option; `ddim_scheduler` says when the course uses it).
    """
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    if not isinstance(scheduler, (DDIMScheduler, DDPMScheduler)):
        raise TypeError(f"scheduler must be a diffusers DDIMScheduler or DDPMScheduler, got {type(scheduler).__name__}")
    batch_size, num_inference_steps, eta = _check_sampling_args(batch_size, num_inference_steps, eta,
                                                                scheduler.config.num_train_timesteps)
    checks.step_index("start_index", start_index, num_inference_steps)
    generator = checks.generator(generator)
    shape = model_shape(model)
    if image_shape is None and shape is None and x_T is not None:   # a plain callable: x_T gives the shape
        image_shape = tuple(check_x_T(model, x_T, batch_size).shape[1:])
    if image_shape is None:
        image_shape = shape
        if image_shape is None:
            raise ValueError("image_shape (C, H, W) is needed for a noise predictor without a diffusers config")
    if not isinstance(image_shape, (tuple, list, torch.Size)) or len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
    image_shape = tuple(checks.count("image_shape", s) for s in image_shape)
    if shape is not None and image_shape != shape:
        raise ValueError(f"image_shape {image_shape} is not the model's sample shape {shape}")
    if x_T is not None:
        check_x_T(model, x_T, batch_size, image_shape)
    if device is None:
        device = next(iter(getattr(model, "parameters", lambda: [torch.empty(0)])())).device
    device = torch.device(device)
    if x_T is None:
        x_T = randn_tensor((batch_size, *image_shape), generator=generator, device=torch.device("cpu"))
    x = x_T.to(device)
    scheduler.set_timesteps(num_inference_steps)
    trajectory = []
    is_ddim = isinstance(scheduler, DDIMScheduler)
    for t in scheduler.timesteps[start_index:]:
        eps = predict_eps(model, x, t)
        kwargs = {"eta": eta, "use_clipped_model_output": use_clipped_model_output} if is_ddim else {}
        out = scheduler.step(eps, t, x, generator=generator, **kwargs)
        if return_trajectory:
            a_t, a_prev, _ = alpha_bar_pair(scheduler, t)
            sigma = ddim_sigma(a_t, a_prev, eta if is_ddim else 1.0)
            trajectory.append({"t": int(t), "x_t": x.cpu(), "pred_x0": out.pred_original_sample.cpu(),
                               "dir_xt": dir_xt(eps, a_prev, sigma).cpu()})
        x = out.prev_sample
    return SamplingOutput(images=(x.clamp(-1, 1) if clamp else x).cpu(), x_T=x_T.cpu(),
                          timesteps=[int(t) for t in scheduler.timesteps[start_index:]],
                          trajectory=trajectory)
