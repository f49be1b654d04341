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
import torch.nn.functional as F

from . import sampling, world
from .reuse import same


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
    `g_x0` is s_g(x_0), the regulariser's score on the original image, shape (B,). `weight` scales the
    squared term (the thesis uses 1; a classifier with large logits needs less)."""
    f: Callable
    g: AttributeLogit
    g_x0: torch.Tensor
    keep: bool = True
    weight: float = 1.0

    def __call__(self, pred_x0: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        s_g = self.g.logit(pred_x0)
        reg = (s_g - self.g_x0) ** 2 if self.keep else (s_g + self.g_x0) ** 2
        return self.f(pred_x0, mask) + self.weight * reg


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
    pred_x0s: list = field(default_factory=list)  # P_t at every step (when keep_pred_x0=True)


def check_range(t1: int, t2: int, num_inference_steps: int) -> None:
    if not (isinstance(t1, int) and isinstance(t2, int) and 0 <= t1 <= t2 <= num_inference_steps):
        raise ValueError(f"the conditioning range needs 0 <= t1 <= t2 <= num_inference_steps "
                         f"({num_inference_steps}); got t1={t1!r}, t2={t2!r} (indices of the reverse process)")


def _check_lam(lam, batch_size: int) -> torch.Tensor:
    """lambda as a (B, 1, 1, 1) tensor: a number >= 0, or one per image (a grid of strengths in one batch)."""
    lam_t = torch.as_tensor(lam, dtype=torch.float32).flatten()
    if lam_t.numel() not in (1, batch_size) or not torch.isfinite(lam_t).all() or (lam_t < 0).any():
        raise ValueError(f"lam (guidance strength) must be a number >= 0 or one per image ({batch_size}), got "
                         f"{lam!r}; the guidance function chooses the direction")
    return lam_t.expand(batch_size).reshape(-1, 1, 1, 1).clone()


def _check_mask(mask: Optional[torch.Tensor], x: torch.Tensor) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    m = mask.float()
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:] or m.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask must be (B, H, W) or (B, 1, H, W) with H, W = {tuple(x.shape[-2:])} and B = 1 or "
                         f"{x.shape[0]}; got {tuple(mask.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("mask must hold values in [0, 1] (1 where guidance acts), got NaN or inf")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"mask must hold values in [0, 1] (1 where guidance acts), got values in "
                         f"[{float(m.min()):g}, {float(m.max()):g}]")
    return m.to(x.device)


def region_mask(seg_net: torch.nn.Module, images: torch.Tensor, classes, dilate: int = 2) -> torch.Tensor:
    """Eq. 16: M = 1 where the segmentation S = E_S(x_0) is one of `classes`, grown by `dilate` pixels so an
    edit has room (glasses reach past the eyes). (B, 1, H, W) float."""
    unknown = [c for c in classes if c not in world.MASK_CLASSES]
    if unknown or not classes:
        raise ValueError(f"unknown class(es) {unknown}; accepted: {', '.join(world.MASK_CLASSES)}")
    if not isinstance(dilate, int) or dilate < 0:
        raise ValueError(f"dilate must be an integer >= 0 (pixels), got {dilate!r}")
    labels = seg_net.predict(images)
    m = sum((labels == world.MASK_CLASSES.index(c)).float() for c in classes)[:, None].clamp(max=1)
    return F.max_pool2d(m, 2 * dilate + 1, 1, dilate) if dilate else m


# Where each binary attribute lives: the mask for an attribute edit (toy-seg classes).
ATTRIBUTE_REGIONS = {"smiling": ("mouth",), "eyes_open": ("left_eye", "right_eye"),
                     "glasses": ("left_eye", "right_eye", "glasses"), "hat": ("hat", "hair")}


def guidance_grad(model, x: torch.Tensor, t: int, a_t, fn: Callable, lam: torch.Tensor, mask=None,
                  return_eps: bool = False):
    """grad_x (lam * f(P_t(x))) and the scores: the one UNet call with gradients that every variant needs.
    With return_eps=True also the noise prediction eps_theta(x_t) of that call (detached), so a caller that
    needs eps at x_t too (Eq. 13) makes no second UNet call."""
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        eps = sampling.predict_eps(model, x_req, t)
        score = fn(sampling.pred_x0(x_req, eps, a_t), mask)
        grad, = torch.autograd.grad((lam.flatten() * score).sum(), x_req)
    if return_eps:
        return grad, score.detach(), eps.detach()
    return grad, score.detach()


# A blow-up bound: x at a timestep with alpha_bar has the expected scale sqrt(alpha_bar) + sqrt(1 - alpha_bar)
# (|x_0| <= 1 plus unit-variance noise). Guidance that drives max |x| past X_BLOWUP times that scale has left the
# images the model can denoise: every pixel would saturate. The notebooks' settings stay under 30x (Eq. 13 at
# lambda 20 unmasked reaches 27x, segmentation guidance at the slider's top, lambda 8000, 21x).
X_BLOWUP = 100.0


def _bounded(x: torch.Tensor, alpha_bar, t, lam, step: int) -> torch.Tensor:
    """x unchanged, or a FloatingPointError naming the step, t and lambda when x is non-finite or past the bound
    (alpha_bar None: the finite check alone)."""
    lam_s = float(lam.max())
    if not torch.isfinite(x).all():
        raise FloatingPointError(f"guidance made x non-finite at t = {int(t)} (step {step}, lambda up to {lam_s:g}); "
                                 f"lower lambda")
    if alpha_bar is None:
        return x
    scale = float(alpha_bar) ** 0.5 + (1 - float(alpha_bar)) ** 0.5
    peak = float(x.abs().max())
    if peak > X_BLOWUP * scale:
        raise FloatingPointError(f"guidance blew x up at step {step} (t = {int(t)}): max |x| = {peak:.3g}, over "
                                 f"{X_BLOWUP:g} times the scale the schedule expects there ({scale:.2f}); lambda up "
                                 f"to {lam_s:g} is too strong: lower lambda")
    return x


def nudge(model, scheduler, x: torch.Tensor, t: int, fn: Callable, lam, mask=None, step_index: int = 0):
    """Lines 6-10 of Alg. 1 at one step: s = f(P(x)), x += -grad_x(lam * s) * M * alpha_bar_t^2.
    Returns (nudged x, the scores). Raises FloatingPointError, naming `step_index`, when the nudged x is not
    finite or is past X_BLOWUP times the scale the schedule expects at t."""
    lam = _check_lam(lam, x.shape[0]).to(x.device)
    a_t = scheduler.alphas_cumprod[int(t)]
    grad, score = guidance_grad(model, x, t, a_t, fn, lam, mask)
    step = -grad * a_t ** 2
    if mask is not None:
        step = step * mask
    return _bounded(x + step, a_t, t, lam, step_index).detach(), score


def _generators(generator, batch_size):
    """A torch.Generator, a seed (one generator per image: seed, seed + 1, ... so image i is the same whatever
    batch it is in) or a list of generators."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        return [torch.Generator().manual_seed(generator + i) for i in range(batch_size)]
    if isinstance(generator, list) and len(generator) != batch_size:
        raise ValueError(f"give one generator per image ({batch_size}), got {len(generator)}")
    return generator


class PrefixCache:
    """Reuse between calls of `guided_sample` that draw the same images: every step before t1 is plain sampling, the
    same in every call that starts from the same x_T with the same generators, model, scheduler, steps and eta. A call
    with a cache resumes from the latest state it holds for those images at or before its t1 (an empty range,
    t1 = t2, guides no step: it may resume anywhere), and stores its state at t1 and at each of the cache's `at` steps
    that it passes before its first guided step: the sampler's latent, the running sum of P_t, and each generator's
    state (so the noise that eta draws after the resumed step is the same too). The result is the same as a full
    run, bit for bit (the same batch through the same steps). A model changed in place misses (the key holds its
    parameters' version counters). States are kept for the `max_runs` image sets used last; calls with
    keep_pred_x0=True neither use nor fill the cache.

        prefix = guidance.PrefixCache(at=(12,))
        pool = guided_sample(unet, sched, f, 0.0, 0, 0, generator=0, batch_size=20, prefix=prefix)  # stores step 12
        a = guided_sample(unet, sched, f, 1.0, 12, 25, generator=0, batch_size=20, prefix=prefix)   # resumes at 12
    """

    def __init__(self, at=(), max_runs: int = 8):
        if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in at):
            raise ValueError(f"at must list step indices (positive integers), got {at!r}")
        self.at, self.max_runs = tuple(sorted(set(at))), int(max_runs)
        self.runs, self.steps_saved = [], 0       # runs: [(key, {step: state})], most recently used last

    def __repr__(self) -> str:
        return (f"PrefixCache(at={self.at}: {len(self.runs)} image sets, {self.steps_saved} sampling steps reused "
                f"so far)")

    def states(self, model, scheduler, num_inference_steps, eta, x_T, generator, device) -> dict:
        """{step index: (x, running sum of P_t, generator states)} for these images (a new, empty record if none)."""
        key = (id(model), tuple(p._version for p in model.parameters()), type(scheduler).__name__,
               dict(scheduler.config), int(num_inference_steps), float(eta), x_T.clone(),
               _generator_states(generator), str(device))
        for i, (k, states) in enumerate(self.runs):
            if same(k, key):
                self.runs.append(self.runs.pop(i))        # most recently used last
                return states
        self.runs.append((key, {}))
        del self.runs[:-self.max_runs]
        return self.runs[-1][1]


def _generator_list(generator) -> list:
    """The generators of a run as a list (none, one, or one per image)."""
    return [] if generator is None else [generator] if isinstance(generator, torch.Generator) else list(generator)


def _generator_states(generator) -> list:
    return [g.get_state() for g in _generator_list(generator)]


def _restore_generators(generator, states) -> None:
    for g, st in zip(_generator_list(generator), states):
        g.set_state(st)


@torch.no_grad()
def guided_sample(model, scheduler, fn: Callable, lam, t1: int, t2: int, batch_size: int = 8,
                  num_inference_steps: int = 50, eta: float = 1.0, mask: Optional[torch.Tensor] = None,
                  generator=None, x_T: Optional[torch.Tensor] = None, mode: str = "x",
                  keep_pred_x0: bool = False, device=None, prefix: Optional[PrefixCache] = None) -> GuidanceResult:
    """Alg. 1 with a diffusers DDIMScheduler. mode="x" (the thesis): after each step whose index lies in
    [t1, t2), nudge x_{t-1} using P_{t-1} (one extra UNet call with gradients). mode="eps" (universal guidance,
    Eq. 13): shift the noise prediction instead, eps_hat = eps + sqrt(1 - alpha_bar_t) grad_x(lam f(P_t)); the
    step's own UNet call is made with gradients and gives both eps and the gradient (one UNet forward per step,
    plus a backward pass, where mode="x" makes two forwards on a guided step). eta = 1 is the thesis's default
    (DDPM-like). `lam` may be one number or one per image; `generator` a torch.Generator, a list of them, or an int
    seed (one generator per image).

    Names are the thesis's: `lam` is its guidance strength lambda (`lambda` is a Python keyword), and t1, t2 are
    indices of the reverse process (0 is the noisiest step), not timesteps, as the thesis defines them ("the terms t_1
    and t_2 are defined as indices of the reverse process").

    prefix: a `PrefixCache`; calls that draw the same images reuse the unguided steps before t1 (same result)."""
    from diffusers.utils.torch_utils import randn_tensor
    if mode not in ("x", "eps"):
        raise ValueError(f"mode must be 'x' (Alg. 1, nudge x_t) or 'eps' (Eq. 13, shift the noise), got {mode!r}")
    check_range(t1, t2, num_inference_steps)
    sampling._check_sampling_args(batch_size, num_inference_steps, eta, scheduler.config.num_train_timesteps)
    if x_T is not None:
        batch_size = x_T.shape[0]
    lam = _check_lam(lam, batch_size)
    generator = _generators(generator, batch_size)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    shape = (batch_size, model.config.in_channels, model.config.sample_size, model.config.sample_size)
    x_T = randn_tensor(shape, generator=generator, device=torch.device("cpu")) if x_T is None else x_T
    x, lam = x_T.to(dev), lam.to(dev)
    mask = _check_mask(mask, x)
    if prefix is not None and not isinstance(prefix, PrefixCache):
        raise TypeError(f"prefix must be a guidance.PrefixCache or None, got {type(prefix).__name__}")
    scheduler.set_timesteps(num_inference_steps)
    ts = list(scheduler.timesteps)
    scores, pred_sum, preds = [], torch.zeros_like(x), []
    first, stored = 0, None
    if prefix is not None and not keep_pred_x0:
        stored = prefix.states(model, scheduler, num_inference_steps, eta, x_T, generator, dev)
        guided_from = t1 if t1 < t2 else len(ts)          # the first step with guidance (none: the end)
        keep_at = {k for k in prefix.at + (t1,) if 0 < k <= guided_from and k < len(ts)}
        first = max((k for k in stored if k <= guided_from), default=0)
        if first:
            x, pred_sum = stored[first][0].clone(), stored[first][1].clone()
            _restore_generators(generator, stored[first][2])
            prefix.steps_saved += first
    for i, t in enumerate(ts):
        if i < first:
            continue
        if stored is not None and i in keep_at and i not in stored:
            stored[i] = (x.clone(), pred_sum.clone(), _generator_states(generator))
        if mode == "eps" and t1 <= i < t2:
            a_t = scheduler.alphas_cumprod[int(t)]
            # one UNet call (with gradients) gives both eps_theta(x_t) and grad_x lam f(P_t): no second call
            grad, s, eps = guidance_grad(model, x, t, a_t, fn, lam, mask, return_eps=True)
            eps = eps + (1 - a_t) ** 0.5 * (grad if mask is None else grad * mask)
            scores.append((i, int(t), float(s.mean())))
        else:
            eps = sampling.predict_eps(model, x, t)
        out = scheduler.step(eps, t, x, eta=eta, generator=generator)
        x, pred_sum = _bounded(out.prev_sample, sampling.alpha_bar_pair(scheduler, t)[1], t, lam, i), \
            pred_sum + out.pred_original_sample
        if keep_pred_x0:
            preds.append(out.pred_original_sample.clamp(-1, 1).cpu())
        if mode == "x" and t1 <= i < t2 and i + 1 < len(ts):
            x, s = nudge(model, scheduler, x, ts[i + 1], fn, lam, mask, step_index=i)
            scores.append((i, int(ts[i + 1]), float(s.mean())))
    return GuidanceResult(x.clamp(-1, 1).cpu(), x_T.cpu(), scores, (pred_sum / len(ts)).clamp(-1, 1).cpu(), preds)


# ------------------------------------------------------------------------------------------------
# Real images (thesis §4.5): through DDIM inversion (Eq. 7) or DDPM inversion with nudged z_t (Eq. 19)
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def edit_ddim_inverted(model, scheduler, inv, fn: Callable, lam, t1: int, t2: int,
                       mask: Optional[torch.Tensor] = None, prefix: Optional[PrefixCache] = None) -> GuidanceResult:
    """Alg. 1 from a DDIM-inverted x_T (inversion.ddim_invert), sampling back deterministically (eta = 0, no
    clipping, as inversion needs). With lam = 0 this is the DDIM reconstruction. prefix: see `guided_sample`."""
    from .inversion import inversion_schedulers
    fwd, _ = inversion_schedulers(scheduler)
    return guided_sample(model, fwd, fn, lam, t1, t2, num_inference_steps=len(inv.timesteps), eta=0.0,
                         mask=mask, x_T=inv.x_T, prefix=prefix)


@torch.no_grad()
def edit_ddpm_inverted(model, scheduler, inv, fn: Callable, lam, t1: int, t2: int,
                       mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Eq. 19: sample with the edit-friendly noise maps of `inv` (inversion.edit_friendly_invert), nudging each
    z_t at reverse indices [t1, t2): z_t <- z_t - grad_{x_t}(lam f(P_t)) * M * alpha_bar_t^2. With lam = 0 it
    returns the image exactly."""
    from .inversion import edit_friendly_sample
    check_range(t1, t2, len(inv.timesteps))
    lam_t = _check_lam(lam, inv.x_T.shape[0])
    mask = _check_mask(mask, inv.x_T)
    index = {t: i for i, t in enumerate(inv.timesteps)}

    def hook(t, x, z):
        a_t = scheduler.alphas_cumprod[int(t)]
        _bounded(x, a_t, t, lam_t, index[t])     # x_t, after the previous step's nudged z_t
        if not t1 <= index[t] < t2:
            return z
        grad, _ = guidance_grad(model, x, t, a_t, fn, lam_t.to(x.device), mask)
        step = -grad * a_t ** 2
        # z_t itself has no fixed scale (edit-friendly maps reach |z| ~ 70 near the end), so its blow-up is caught
        # in the x_t it makes, at the next step or in the result
        return _bounded(z + (step if mask is None else step * mask), None, t, lam_t, index[t])

    x0 = edit_friendly_sample(model, scheduler, inv, z_hook=hook)
    return _bounded(x0, 1.0, 0, lam_t, len(inv.timesteps) - 1).clamp(-1, 1)


# ------------------------------------------------------------------------------------------------
# Attribute consistency (thesis §4.4, Tables 1-2)
# ------------------------------------------------------------------------------------------------
@dataclass
class AttributeEdit:
    """Attribute-classifier edits of toy-ddpm samples, judged by toy-attr before and after."""
    attribute: str
    target: bool
    lam: float
    t1: int
    t2: int
    seeds: list                    # the per-image seeds (image i is sampled with generator seed seeds[i])
    before: torch.Tensor           # original images
    after: torch.Tensor            # edited images
    logits_before: dict            # toy-attr logits: "binary" (N, 4) and each categorical (N, K)
    logits_after: dict

    def _on(self, logits) -> torch.Tensor:
        return logits["binary"] > 0

    @property
    def changed(self) -> torch.Tensor:
        """(N,) bool: the target attribute ended as asked."""
        return self._on(self.logits_after)[:, world.BINARY.index(self.attribute)] == self.target

    def kept(self) -> dict:
        """Table 1: the classifier's accuracy on the edited images against the originals' labels, per attribute
        (binary and categorical); for the target attribute lower is better."""
        out = {n: float((self._on(self.logits_after)[:, j] == self._on(self.logits_before)[:, j]).float().mean())
               for j, n in enumerate(world.BINARY)}
        for n in world.CATEGORICAL:
            out[n] = float((self.logits_after[n].argmax(1) == self.logits_before[n].argmax(1)).float().mean())
        return out

    def logit_change(self) -> list:
        """Table 2: mean change of each binary logit (after - before), sorted by size, largest first."""
        d = (self.logits_after["binary"] - self.logits_before["binary"]).mean(0)
        return sorted(((n, float(d[j])) for j, n in enumerate(world.BINARY)), key=lambda r: -abs(r[1]))


def _logits(attr_net, images) -> dict:
    with torch.no_grad():
        dev = next(attr_net.parameters()).device
        return {k: v.cpu() for k, v in attr_net(images.to(dev)).items()}


def attribute_edits(model, scheduler, attr_net, attribute: str, target: bool = True, lam: float = 1.0,
                    t1: int = 12, t2: int = 25, n: int = 100, num_inference_steps: int = 25, eta: float = 1.0,
                    seg_net: Optional[torch.nn.Module] = None, only_lacking: bool = True, seed: int = 0,
                    batch_size: int = 100, candidates: int = 400,
                    samples: Optional[torch.Tensor] = None, hold: Optional[str] = None,
                    hold_weight: float = 0.2, prefix: Optional[PrefixCache] = None) -> AttributeEdit:
    """Sample images, keep the first `n` whose attribute differs from `target` (only_lacking) or the first n,
    and edit each from its own x_T and noise with AttributeLogit guidance, masked to ATTRIBUTE_REGIONS when a
    segmentation net is given. Every image has its own generator, so results do not depend on batching.
    `samples`, if given, are the unguided samples of seeds seed, seed + 1, ... (as `guided_sample(...,
    generator=seed)` draws them with the same steps and eta): they are used instead of sampling candidates again.
    `hold` names a second binary attribute to hold at its value on the original with Eq. 17's regulariser
    (weight `hold_weight`). prefix: a `PrefixCache` for the edits (see `guided_sample`)."""
    fn = AttributeLogit(attr_net, attribute, target)
    if hold is not None and (hold not in world.BINARY or hold == attribute):
        raise ValueError(f"hold must be a binary attribute other than {attribute!r}; "
                         f"accepted: {', '.join(world.BINARY)}")
    j = world.BINARY.index(attribute)
    seeds, befores = [], []
    if samples is not None:
        candidates, batch_size = samples.shape[0], samples.shape[0]
    for start in range(seed, seed + candidates, batch_size):
        if len(seeds) >= n:
            break
        images = samples if samples is not None else guided_sample(
            model, scheduler, fn, 0.0, 0, 0, batch_size=batch_size, num_inference_steps=num_inference_steps,
            eta=eta, generator=start).images
        on = _logits(attr_net, images)["binary"][:, j] > 0
        keep = [i for i in range(batch_size) if not only_lacking or bool(on[i]) != target]
        seeds += [start + i for i in keep]
        befores.append(images[keep])
    if len(seeds) < n:
        raise RuntimeError(f"only {len(seeds)} of {candidates} samples lack {attribute!r}; raise candidates")
    seeds, before = seeds[:n], torch.cat(befores)[:n]
    afters = []
    for k in range(0, n, batch_size):
        chunk = seeds[k:k + batch_size]
        mask = region_mask(seg_net, before[k:k + batch_size], ATTRIBUTE_REGIONS[attribute]) if seg_net else None
        gens = [torch.Generator().manual_seed(s) for s in chunk]
        chunk_fn = fn
        if hold is not None:
            g = AttributeLogit(attr_net, hold)
            with torch.no_grad():
                g_x0 = g.logit(before[k:k + batch_size].to(next(attr_net.parameters()).device))
            chunk_fn = Regularised(fn, g, g_x0, keep=True, weight=hold_weight)
        afters.append(guided_sample(model, scheduler, chunk_fn, lam, t1, t2, batch_size=len(chunk),
                                    num_inference_steps=num_inference_steps, eta=eta, mask=mask,
                                    generator=gens, prefix=prefix).images)
    after = torch.cat(afters)
    return AttributeEdit(attribute, target, lam, t1, t2, seeds, before, after, _logits(attr_net, before),
                         _logits(attr_net, after))
