"""Gradient guidance (thesis §3.3, Alg. 1): nudge x_{t-1} by -grad(lambda * f(P_{t-1})) * alpha_bar_t^2 over the
reverse-process indices [t1, t2), optionally only inside a mask M (Eq. 16).

Guidance functions are small objects with one call signature, f(pred_x0) -> (B,) score to *minimise*:
    Colour(channel, target)            mean |P_{t,c} - w|                                      (§3.3.1)
    SegmentationMass(net, classes, more)  softmax mass of classes, negated to grow them        (Eqs. 14-15)
    AttributeLogit(net, attribute, target) the logit, negated to turn the attribute on         (§3.3.3)
    Regularised(f, g, x0_score, keep)   s_f + (s_g(P_t) -/+ s_g(x_0))^2                        (Eqs. 17-18)
The thesis writes the direction into the sign of lambda (e.g. -5000 to open eyes); here lambda >= 0 is a
strength and each function says which way it pushes, which is easier to read in a slider.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import sampling, world


# ------------------------------------------------------------------------------------------------
# Guidance functions
# ------------------------------------------------------------------------------------------------
@dataclass
class Colour:
    """Mean absolute difference of colour channel `channel` (0=R, 1=G, 2=B) from `target` in [-1, 1]."""
    channel: int
    target: float

    def __post_init__(self):
        if self.channel not in (0, 1, 2):
            raise ValueError(f"channel must be 0 (red), 1 (green) or 2 (blue), got {self.channel!r}")
        if not -1.0 <= self.target <= 1.0:
            raise ValueError(f"target must be a pixel value in [-1, 1], got {self.target!r}")

    def __call__(self, pred_x0: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        diff = (pred_x0[:, self.channel] - self.target).abs()
        if mask is None:
            return diff.mean((1, 2))
        m = mask[:, 0].to(diff)
        return (diff * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)


@dataclass
class SegmentationMass:
    """Softmax mass of `classes` (names from world.MASK_CLASSES) under a segmentation net; more=True grows them."""
    net: torch.nn.Module
    classes: tuple
    more: bool = True

    def __post_init__(self):
        unknown = [c for c in self.classes if c not in world.MASK_CLASSES]
        if unknown or not self.classes:
            raise ValueError(f"unknown class(es) {unknown}; accepted: {', '.join(world.MASK_CLASSES)}")

    def __call__(self, pred_x0: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        idx = [world.MASK_CLASSES.index(c) for c in self.classes]
        mass = self.net(pred_x0.clamp(-1, 1)).softmax(1)[:, idx].sum(1).mean((1, 2))   # Eq. 15
        return -mass if self.more else mass


@dataclass
class AttributeLogit:
    """The logit of binary attribute `attribute` (world.BINARY) under toy-attr; target=True turns it on."""
    net: torch.nn.Module
    attribute: str
    target: bool = True

    def __post_init__(self):
        if self.attribute not in world.BINARY:
            raise ValueError(f"unknown binary attribute {self.attribute!r}; accepted: {', '.join(world.BINARY)}")

    def logit(self, pred_x0: torch.Tensor) -> torch.Tensor:
        return self.net(pred_x0.clamp(-1, 1))["binary"][:, world.BINARY.index(self.attribute)]

    def __call__(self, pred_x0: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return -self.logit(pred_x0) if self.target else self.logit(pred_x0)


@dataclass
class Regularised:
    """Eq. 17 (keep=True: hold attribute g at its value in x_0) and Eq. 18 (keep=False: push g away from it).
    `g_x0` is s_g(x_0), the regulariser's score on the original image, shape (B,)."""
    f: Callable
    g: AttributeLogit
    g_x0: torch.Tensor
    keep: bool = True

    def __call__(self, pred_x0: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        s_g = self.g.logit(pred_x0)
        reg = (s_g - self.g_x0) ** 2 if self.keep else (s_g + self.g_x0) ** 2
        return self.f(pred_x0, mask) + reg


# ------------------------------------------------------------------------------------------------
# Alg. 1
# ------------------------------------------------------------------------------------------------
@dataclass
class GuidanceResult:
    """A guided sampling run."""
    images: torch.Tensor                          # (B, C, H, W) in [-1, 1]
    x_T: torch.Tensor
    scores: list = field(default_factory=list)    # (index, t, mean score) at every guided step
    mean_pred_x0: Optional[torch.Tensor] = None   # the average P_t over the trajectory (thesis Fig. 14)


def check_range(t1: int, t2: int, num_inference_steps: int) -> None:
    if not (isinstance(t1, int) and isinstance(t2, int) and 0 <= t1 <= t2 <= num_inference_steps):
        raise ValueError(f"the conditioning range needs 0 <= t1 <= t2 <= num_inference_steps "
                         f"({num_inference_steps}); got t1={t1!r}, t2={t2!r} (indices of the reverse process)")


def _check_mask(mask: Optional[torch.Tensor], x: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    m = mask.float()
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:] or m.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask must be (B, H, W) or (B, 1, H, W) with H, W = {tuple(x.shape[-2:])} and B = 1 or "
                         f"{x.shape[0]}; got {tuple(mask.shape)}")
    return m.to(x.device)


def nudge(model, scheduler, x: torch.Tensor, t: int, fn: Callable, lam: float, mask=None):
    """Lines 6-10 of Alg. 1 at one step: s = f(P(x)), x += -grad_x(lam * s) * M * alpha_bar_t^2.
    Returns (nudged x, the scores). Raises FloatingPointError when the nudge is not finite."""
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        a_t = scheduler.alphas_cumprod[int(t)]
        pred = sampling.pred_x0(x_req, sampling.predict_eps(model, x_req, t), a_t)
        score = fn(pred, mask)
        grad, = torch.autograd.grad((lam * score).sum(), x_req)
    step = -grad * a_t ** 2
    if mask is not None:
        step = step * mask
    out = x + step
    if not torch.isfinite(out).all():
        raise FloatingPointError(f"guidance made x non-finite at t = {int(t)} (lambda = {lam}); lower lambda")
    return out.detach(), score.detach()


@torch.no_grad()
def guided_sample(model, scheduler, fn: Callable, lam: float, t1: int, t2: int, batch_size: int = 8,
                  num_inference_steps: int = 50, eta: float = 1.0, mask: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None, x_T: Optional[torch.Tensor] = None,
                  device=None) -> GuidanceResult:
    """Alg. 1 with a diffusers DDIMScheduler: after each step whose index lies in [t1, t2), nudge x_{t-1} using
    P_{t-1} (one extra UNet call with gradients). eta = 1 is the thesis's default (DDPM-like)."""
    from diffusers.utils.torch_utils import randn_tensor
    if not isinstance(lam, (int, float)) or lam < 0:
        raise ValueError(f"lam (guidance strength) must be a number >= 0, got {lam!r}; the guidance function "
                         "chooses the direction")
    check_range(t1, t2, num_inference_steps)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (batch_size, model.config.in_channels, model.config.sample_size, model.config.sample_size)
    x_T = randn_tensor(shape, generator=generator, device=torch.device("cpu")) if x_T is None else x_T
    x = x_T.to(dev)
    mask = _check_mask(mask, x)
    scheduler.set_timesteps(num_inference_steps)
    ts = list(scheduler.timesteps)
    scores, pred_sum = [], torch.zeros_like(x)
    for i, t in enumerate(ts):
        out = scheduler.step(sampling.predict_eps(model, x, t), t, x, eta=eta, generator=generator)
        x, pred_sum = out.prev_sample, pred_sum + out.pred_original_sample
        if t1 <= i < t2 and i + 1 < len(ts):
            x, s = nudge(model, scheduler, x, ts[i + 1], fn, lam, mask)
            scores.append((i, int(ts[i + 1]), float(s.mean())))
    return GuidanceResult(x.clamp(-1, 1).cpu(), x_T.cpu(), scores, (pred_sum / len(ts)).clamp(-1, 1).cpu())
