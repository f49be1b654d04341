"""Inverting an image into a diffusion model's noise: DDIM inversion (thesis Eq. 7) and edit-friendly DDPM
inversion (thesis Eqs. 8-9, Huberman-Spiegelglas et al.). Both take any noise predictor: a diffusers
UNet2DModel or a callable (x_t, t) -> eps (e.g. a text-conditioned model with guidance, see t2i.cfg_eps).

    inv = ddim_invert(unet, scheduler, x0, num_inference_steps=50)           # inv.x_T, inv.latents
    x0_hat = ddim_reconstruct(unet, scheduler, inv.x_T, num_inference_steps=50)
    ef = edit_friendly_invert(unet, scheduler, x0, 50, generator=torch.Generator().manual_seed(0))
    x0_exact = edit_friendly_sample(unet, scheduler, ef)                        # equals x0 to float error
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import checks, sampling
from .progress import bar as progress_bar
from .sampling import inversion_schedulers  # noqa: F401  (public here too: the schedulers inversion uses)
from .t2i import check_guidance_scale
from .tensorfile import read_safetensors, write_safetensors  # noqa: F401  (moved; kept importable from here)


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
    null_embeddings: list = field(default_factory=list)  # null-text / negative-prompt: the context of the
                                                         # unconditional branch at each sampling step
    cond: Optional[torch.Tensor] = None          # text methods: the prompt's embedding (B, L, D)
    guidance_scale: float = 1.0                  # text methods: the scale the trajectory is meant for
    losses: list = field(default_factory=list)   # null-text: the final retrace loss of each step
    seconds: float = 0.0                         # wall time of the inversion


def _check(x0: torch.Tensor, num_inference_steps, scheduler, model=None) -> None:
    """The steps, and x0: with a pixel model, an image batch (sampling.check_x0: finite, in [-1, 1], the model's
    shape and dtype); otherwise (latents of a text model) a finite (B, C, H, W) float tensor."""
    checks.num_inference_steps(num_inference_steps, scheduler.config.num_train_timesteps)
    if model is not None:
        sampling.check_x0(model, x0)
    else:
        checks.tensor("x0", x0, shape=(None, None, None, None), hint="a (B, C, H, W) batch")


def ddim_invert_step(eps: torch.Tensor, t: int, x: torch.Tensor, scheduler) -> torch.Tensor:
    """One step of Eq. 7 written out: from x at timestep t - Δ to timestep t, with eps = eps_theta(x, t):
    x_t = sqrt(alpha_bar_t) * P + sqrt(1 - alpha_bar_t) * eps,
    P = (x - sqrt(1 - alpha_bar_{t-Δ}) eps) / sqrt(alpha_bar_{t-Δ})."""
    n = scheduler.config.num_train_timesteps
    t_from = int(t) - n // scheduler.num_inference_steps
    a_from = scheduler.alphas_cumprod[t_from] if t_from >= 0 else scheduler.initial_alpha_cumprod
    a_to = scheduler.alphas_cumprod[int(t)]
    return sampling.ddim_map(x, eps, a_from, a_to)


@torch.no_grad()
def ddim_invert(model, scheduler, x0: torch.Tensor, num_inference_steps: int = 50) -> InversionResult:
    """DDIM inversion (Eq. 7) through diffusers' DDIMInverseScheduler. Approximate: eps is evaluated at x_{t-Δ}
    but used as if at x_t (the linearisation that makes it drift when steps are few or guidance is high).
    x0: (B, C, H, W) images in [-1, 1], of the model's sample shape and dtype."""
    _check(x0, num_inference_steps, scheduler, model)
    return _ddim_invert(model, scheduler, x0, num_inference_steps)


@torch.no_grad()
def _ddim_invert(model, scheduler, x0: torch.Tensor, num_inference_steps: int) -> InversionResult:
    """ddim_invert without the image checks (for latents, checked by the caller)."""
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
    """Deterministic DDIM sampling (eta = 0, no clipping) from an inverted x_T back to x_0. x_T: a finite
    (B, C, H, W) float tensor of the model's sample shape and dtype."""
    checks.num_inference_steps(num_inference_steps, scheduler.config.num_train_timesteps)
    sampling.check_x_T(model, x_T)
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
    _check(x0, num_inference_steps, scheduler, model)
    checks.number("eta", eta, 0.0, 1.0, "for edit-friendly inversion", low_open=True)
    generator = checks.generator(generator)
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
                         z_hook: Optional[Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]] = None
                         ) -> torch.Tensor:
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


# ------------------------------------------------------------------------------------------------
# Text-conditioned models (toy-t2i, Stable Diffusion): DDIM at any guidance scale, null-text, negative prompt
# ------------------------------------------------------------------------------------------------
def _text_setup(bundle, images, prompts, num_inference_steps):
    from . import t2i
    from .images import to_tensor
    x0 = to_tensor(images, size=bundle.image_size)
    prompts = [prompts] * x0.shape[0] if isinstance(prompts, str) else list(prompts)
    if len(prompts) != x0.shape[0]:
        raise ValueError(f"give one prompt or one per image ({x0.shape[0]}), got {len(prompts)}")
    with torch.no_grad():
        z0 = t2i.encode_image(bundle, x0.to(t2i.device_of(bundle)))
    cond, uncond = t2i.encode_prompt(bundle, prompts), t2i.null_embedding(bundle, len(prompts))
    _check(z0, num_inference_steps, bundle.scheduler)
    return z0, cond, uncond


def text_ddim_invert(bundle, images, prompts, num_inference_steps: int = 50,
                     guidance_scale: float = 1.0, controller=None) -> InversionResult:
    """DDIM inversion (Eq. 7) of images under a text-conditioned model with classifier-free guidance at
    `guidance_scale` (1 = the conditional branch alone, what null-text inversion uses as its pivot).

    controller: an attention controller installed by the caller (see `attention_control.invert_recording`). Step
    convention: the k-th UNet call of the inversion (low t first) is told it is sampling step i = n - 1 - k, the
    step that later samples back over the same interval, so recorded maps line up with `t2i.denoise`'s steps."""
    import time

    from . import t2i
    check_guidance_scale(guidance_scale)
    z0, cond, uncond = _text_setup(bundle, images, prompts, num_inference_steps)
    calls = []

    def eps(x, t):
        if controller is None:
            return t2i.cfg_eps(bundle.unet, x, t, cond, uncond, guidance_scale)
        calls.append(t)
        step = t2i.ControlStep(num_inference_steps - len(calls), num_inference_steps, guidance_scale != 1.0)
        with controller.at(step):
            return t2i.cfg_eps(bundle.unet, x, t, cond, uncond, guidance_scale)
    start = time.perf_counter()
    inv = _ddim_invert(eps, bundle.scheduler, z0, num_inference_steps)
    inv.cond, inv.guidance_scale, inv.seconds = cond.cpu(), float(guidance_scale), time.perf_counter() - start
    inv.null_embeddings = [uncond.cpu()] * num_inference_steps
    return inv


@torch.no_grad()
def text_reconstruct(bundle, inv: InversionResult, guidance_scale: Optional[float] = None) -> torch.Tensor:
    """Sample back from inv.x_T with DDIM (eta = 0, no clipping), the prompt and the inversion's per-step null
    embeddings, at `guidance_scale` (default: the scale the inversion was made for). Returns decoded images."""
    from . import t2i
    scale = inv.guidance_scale if guidance_scale is None else guidance_scale
    x = t2i.denoise(bundle, inv.x_T, inv.cond, inv.null_embeddings, scale, len(inv.timesteps), inverted=True)
    return t2i.decode(bundle, x).cpu()


def null_text_invert(bundle, images, prompts, num_inference_steps: int = 50, guidance_scale: float = 7.5,
                     inner_steps: int = 10, lr: float = 1e-2, early_stop: float = 1e-5) -> InversionResult:
    """Null-text inversion (Mokady et al. 2023, as StyleDiffusion §3.2.2 describes it): DDIM-invert at guidance
    1 to get the pivot trajectory z*_t, then walk back from z*_T optimising the unconditional branch's
    embedding at each step (Adam, `inner_steps` iterations, stopping once the loss is under `early_stop`) so
    that DDIM with classifier-free guidance at `guidance_scale` lands on z*_{t-1}. Each step starts from the previous
    step's result."""
    import time

    import torch.nn.functional as F

    from . import t2i
    check_guidance_scale(guidance_scale)
    checks.count("inner_steps", inner_steps, minimum=0)
    start = time.perf_counter()
    pivot = text_ddim_invert(bundle, images, prompts, num_inference_steps, guidance_scale=1.0)
    fwd = sampling.ddim_scheduler(bundle.scheduler, inverted=True)     # for the trial steps of the inner loop
    fwd.set_timesteps(num_inference_steps)
    dev = t2i.device_of(bundle)
    cond = pivot.cond.to(dev)
    targets = list(reversed(pivot.latents[:-1]))            # z*_{t-1} for each sampling step, high t first
    nulls, losses = [pivot.null_embeddings[0].to(dev).clone()], []
    steps = progress_bar(total=num_inference_steps, desc="null-text inversion", unit="step")

    def fit_null(i, t, x):
        """Step i's null embedding: Adam on ||z_{t-1}(null) - z*_{t-1}||², from the previous step's."""
        target = targets[i].to(dev)
        with torch.no_grad():
            eps_cond = bundle.unet(x, t, encoder_hidden_states=cond).sample
        null = nulls[-1].to(dev).detach().clone().requires_grad_(True)   # a fresh tensor: Adam updates it in place
        opt = torch.optim.Adam([null], lr=lr)
        loss_value = float("nan")
        for _ in range(inner_steps):
            with torch.enable_grad():
                eps_uncond = bundle.unet(x, t, encoder_hidden_states=null).sample
                eps = sampling.classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
                loss = F.mse_loss(fwd.step(eps, t, x).prev_sample, target)
            loss_value = loss.item()
            if loss_value < early_stop:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        null = null.detach()
        nulls.append(null.clone().cpu())
        losses.append(loss_value)
        steps.update()
        return null
    t2i.denoise(bundle, pivot.x_T, cond, fit_null, guidance_scale, num_inference_steps, inverted=True)
    steps.close()
    nulls = nulls[1:]
    return InversionResult("null-text", pivot.x_T, pivot.latents, pivot.timesteps, null_embeddings=nulls,
                           cond=pivot.cond, guidance_scale=float(guidance_scale), losses=losses,
                           seconds=time.perf_counter() - start)


def negative_prompt_invert(bundle, images, prompts, num_inference_steps: int = 50,
                           guidance_scale: float = 7.5) -> InversionResult:
    """Negative-prompt inversion (Miyake et al. 2023): null-text inversion's answer without optimisation, using
    the source prompt's embedding as the null embedding at every step. Guided sampling then reduces to the
    conditional branch alone, which retraces the guidance-1 DDIM inversion up to its linearisation error."""
    import time
    check_guidance_scale(guidance_scale)
    start = time.perf_counter()
    pivot = text_ddim_invert(bundle, images, prompts, num_inference_steps, guidance_scale=1.0)
    pivot.method, pivot.guidance_scale = "negative-prompt", float(guidance_scale)
    pivot.null_embeddings = [pivot.cond] * num_inference_steps
    pivot.seconds = time.perf_counter() - start
    return pivot


def save(inv: InversionResult, path, dtype: torch.dtype = torch.float16) -> None:
    """Write a text inversion (x_T, the caption's embedding, the per-step unconditional embeddings) to safetensors;
    the trajectory itself is not kept."""
    tensors = {"x_T": inv.x_T}
    if inv.cond is not None:
        tensors["cond"] = inv.cond
    tensors.update({f"null.{i}": n for i, n in enumerate(inv.null_embeddings)})
    meta = {"method": inv.method, "timesteps": [int(t) for t in inv.timesteps], "guidance_scale": inv.guidance_scale,
            "losses": [float(v) for v in inv.losses], "seconds": inv.seconds, "eta": inv.eta}
    write_safetensors(tensors, path, "inversion", meta, dtype)


def load(path) -> InversionResult:
    """Read what `save` wrote (safetensors: nothing is unpickled)."""
    meta, t = read_safetensors(path, "inversion")
    n = len(meta["timesteps"])
    return InversionResult(meta["method"], t["x_T"], [], meta["timesteps"], eta=meta["eta"],
                           null_embeddings=[t[f"null.{i}"] for i in range(n) if f"null.{i}" in t],
                           cond=t.get("cond"), guidance_scale=meta["guidance_scale"], losses=meta["losses"],
                           seconds=meta["seconds"])
