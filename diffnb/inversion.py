"""Inverting an image into a diffusion model's noise: DDIM inversion (thesis Eq. 7) and edit-friendly DDPM
inversion (thesis Eqs. 8-9, Huberman-Spiegelglas et al.). Both take any noise predictor: a diffusers
UNet2DModel or a callable (x_t, t) -> eps (e.g. a text-conditioned model with guidance, see t2i.guided_eps).

    inv = ddim_invert(unet, scheduler, x0, num_inference_steps=50)           # inv.x_T, inv.latents
    x0_hat = ddim_reconstruct(unet, scheduler, inv.x_T, num_inference_steps=50)
    ef = edit_friendly_invert(unet, scheduler, x0, 50, generator=torch.Generator().manual_seed(0))
    x0_exact = edit_friendly_sample(unet, scheduler, ef)                        # equals x0 to float error
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import sampling


@dataclass
class InversionResult:
    """A trajectory from the image to noise."""
    method: str                    # "ddim" or "edit-friendly"
    x_T: torch.Tensor              # where sampling starts, (B, C, H, W)
    latents: list                  # x at every visited timestep, from x_0 up to x_T (num_inference_steps + 1)
    timesteps: list                # the sampling timesteps, high to low (as scheduler.timesteps)
    zs: list = field(default_factory=list)       # edit-friendly: the noise map z_t of each step (Eq. 9)
    sigmas: list = field(default_factory=list)   # edit-friendly: sigma_t of each step (Eq. 6 with eta)
    eta: float = 0.0


def _check(x0: torch.Tensor, num_inference_steps, scheduler) -> None:
    if not isinstance(x0, torch.Tensor) or x0.ndim != 4:
        raise ValueError("x0 must be a (B, C, H, W) tensor; convert images with diffnb.images.to_tensor")
    n = scheduler.config.num_train_timesteps
    if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= n:
        raise ValueError(f"num_inference_steps must be an integer in [1, {n}], got {num_inference_steps!r}")


def inversion_schedulers(scheduler):
    """(DDIMScheduler, DDIMInverseScheduler) sharing `scheduler`'s betas, with clip_sample=False: clipping P_t
    breaks the symmetry that inversion relies on (on toy-ddpm it raises the 50-step reconstruction MSE ~30x)."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler
    return (DDIMScheduler.from_config(scheduler.config, clip_sample=False),
            DDIMInverseScheduler.from_config(scheduler.config, clip_sample=False))


def ddim_invert_step(eps: torch.Tensor, t: int, x: torch.Tensor, scheduler) -> torch.Tensor:
    """One step of Eq. 7 written out: from x at timestep t - Δ to timestep t, with eps = eps_theta(x, t):
    x_t = sqrt(alpha_bar_t) * P + sqrt(1 - alpha_bar_t) * eps, P = (x - sqrt(1 - alpha_bar_{t-Δ}) eps) / sqrt(alpha_bar_{t-Δ})."""
    n = scheduler.config.num_train_timesteps
    t_from = int(t) - n // scheduler.num_inference_steps
    a_from = scheduler.alphas_cumprod[t_from] if t_from >= 0 else scheduler.initial_alpha_cumprod
    a_to = scheduler.alphas_cumprod[int(t)]
    return a_to ** 0.5 * sampling.pred_x0(x, eps, a_from) + (1 - a_to) ** 0.5 * eps


@torch.no_grad()
def ddim_invert(model, scheduler, x0: torch.Tensor, num_inference_steps: int = 50) -> InversionResult:
    """DDIM inversion (Eq. 7) through diffusers' DDIMInverseScheduler. Approximate: eps is evaluated at x_{t-Δ}
    but used as if at x_t (the linearisation that makes it drift when steps are few or guidance is high)."""
    _check(x0, num_inference_steps, scheduler)
    fwd, inv = inversion_schedulers(scheduler)
    inv.set_timesteps(num_inference_steps)
    fwd.set_timesteps(num_inference_steps)
    x, latents = x0, [x0.cpu()]
    for t in inv.timesteps:
        x = inv.step(sampling.predict_eps(model, x, t), t, x).prev_sample
        latents.append(x.cpu())
    return InversionResult("ddim", x.cpu(), latents, [int(t) for t in fwd.timesteps])


@torch.no_grad()
def ddim_reconstruct(model, scheduler, x_T: torch.Tensor, num_inference_steps: int = 50) -> torch.Tensor:
    """Deterministic DDIM sampling (eta = 0, no clipping) from an inverted x_T back to x_0."""
    fwd, _ = inversion_schedulers(scheduler)
    dev = x_T.device
    return sampling.sample(model, fwd, batch_size=x_T.shape[0], num_inference_steps=num_inference_steps,
                           x_T=x_T, image_shape=tuple(x_T.shape[1:]), device=dev, clamp=False).images


def _posterior_mean(model, scheduler, x: torch.Tensor, t: int, eta: float):
    """mu_t(x_t) = sqrt(alpha_bar_prev) P_t + D_t (Eq. 3 without its noise term) and sigma_t (Eq. 6)."""
    eps = sampling.predict_eps(model, x, t)
    a_t, a_prev, _ = sampling.alpha_bar_pair(scheduler, t)
    sigma = float(sampling.ddim_sigma(a_t, a_prev, eta))
    return a_prev ** 0.5 * sampling.pred_x0(x, eps, a_t) + sampling.dir_xt(eps, a_prev, sigma), sigma


@torch.no_grad()
def edit_friendly_invert(model, scheduler, x0: torch.Tensor, num_inference_steps: int = 50, eta: float = 1.0,
                         generator: Optional[torch.Generator] = None) -> InversionResult:
    """Edit-friendly DDPM inversion (Eqs. 8-9): draw every x_t independently from q(x_t | x_0) (Eq. 8), then
    extract z_t = (x_{t-1} - mu_t(x_t)) / sigma_t (Eq. 9), so that sampling with these z_t lands exactly on x_0.
    The last step has sigma = 0 when the scheduler sets alpha_bar to one there; its residual is kept as z with
    sigma 1 (a correction, not noise)."""
    _check(x0, num_inference_steps, scheduler)
    if not 0.0 < eta <= 1.0:
        raise ValueError(f"eta must be in (0, 1] for edit-friendly inversion, got {eta!r}")
    fwd, _ = inversion_schedulers(scheduler)
    fwd.set_timesteps(num_inference_steps)
    ts = [int(t) for t in fwd.timesteps]
    # Eq. 8: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) n_t with independent n_t
    xs = {t: fwd.alphas_cumprod[t] ** 0.5 * x0 + (1 - fwd.alphas_cumprod[t]) ** 0.5
          * torch.randn(x0.shape, generator=generator).to(x0.device) for t in ts}
    x_T = xs[ts[0]]
    x, zs, sigmas = x_T, [], []
    for i, t in enumerate(ts):
        target = xs[ts[i + 1]] if i + 1 < len(ts) else x0
        mu, sigma = _posterior_mean(model, fwd, x, t, eta)
        s = sigma if sigma > 0 else 1.0
        z = (target - mu) / s                                  # Eq. 9
        zs.append(z.cpu())
        sigmas.append(s)
        x = mu + s * z          # equals target up to float error; keeps the chain exact (as the authors' code)
    return InversionResult("edit-friendly", x_T.cpu(), [x0.cpu()] + [xs[t].cpu() for t in reversed(ts)], ts,
                           zs=zs, sigmas=sigmas, eta=eta)


@torch.no_grad()
def edit_friendly_sample(model, scheduler, inv: InversionResult,
                         z_hook: Optional[Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Sample with the noise maps of `inv`: x_{t-1} = mu_t(x_t) + sigma_t z_t. With the same model it returns
    x_0; `z_hook(t, x_t, z_t) -> z_t` may change each noise map on the way (the thesis nudges them, Eq. 19)."""
    fwd, _ = inversion_schedulers(scheduler)
    fwd.set_timesteps(len(inv.timesteps))
    dev = inv.x_T.device
    x = inv.x_T
    for t, z, s in zip(inv.timesteps, inv.zs, inv.sigmas):
        mu, _ = _posterior_mean(model, fwd, x, t, inv.eta)
        z = z.to(dev) if z_hook is None else z_hook(t, x, z.to(dev))
        x = mu + s * z
    return x.cpu()
