"""Selective Diffusion Distillation (Wang et al., ICCV 2023): the Hybrid Quality Score (HQS) that picks the timesteps
whose diffusion gradient carries the edit (Eqs. 8-12), and a one-pass manipulator f_phi distilled from a
text-to-image diffusion model at those timesteps (Eq. 7, Alg. 1).

Notation (paper -> code):

| paper | code | what |
| --- | --- | --- |
| y | `y` | an image (B, 3, 32, 32) in [-1, 1] |
| gamma | `prompt` | the text the edit goes towards |
| t in [1, T] | `t` | a paper timestep; the scheduler index is t - 1 |
| alpha_bar_t | `alpha_bar` | the cumulative noise schedule |
| d_t(y, gamma) (Eq. 8) | `direction(...)` | form "full": the gradient through the U-Net; "sds": w(t)(eps_theta - eps) |
| H_t (Eq. 9) | `entropy(d, form)` | "paper": softmax over all H*W*C of abs(d); "official": channel mean, over H*W |
| N_t (Eq. 10) | `l1_norm(d)` | sum of abs(d) |
| H_bar, N_bar (Eq. 11) | `minmax(v)` | min-max over the t grid, per image |
| HQS (Eq. 12) | `HQSCurve.hqs` | E_y[N_bar - H_bar] |
| S, xi | `select(curve, xi)` | {t : HQS_t > xi} |
| E, G | `toyae.encode`, `toyae.decode` | toy-ae, frozen (e4e + StyleGAN in the paper) |
| M_phi | `LatentMapper` | StyleCLIP's 4-layer mapper, on the flattened latent |
| f_phi(y) | `manipulate(...)` | G(E(y) + M_phi(E(y))) |

What the official code does differently (AndysonYs/Selective-Diffusion-Distillation): only the entropy term, on the
SDS form, channel-averaged, argmin over t = 100, 150, ..., 900 (`official_selection`); its shipped config fixes
t = 800; its identity loss compares the unedited image with itself and never acts (ours compares the edited image
with the original). The maintainers' full run is `python -m diffnb.sdd full-run runs/sdd` (diffnb.maint.sdd_run).
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from . import t2i, toyae, toyclip, world
from .progress import bar as progress_bar
from .tensorfile import weights_fingerprint  # noqa: F401  (public here too: manipulators store it)

FORMS = ("full", "sds")
ENTROPY_FORMS = ("paper", "official")
DEFAULT_GRID = tuple(range(20, 1001, 20))        # every 20 of T = 1000, as the issue asks
OFFICIAL_GRID = tuple(range(100, 901, 50))       # where the official code evaluates its entropy


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------
def check_images(y, size: int = world.SIZE) -> torch.Tensor:
    """(B, 3, size, size) float tensor in [-1, 1], else a ValueError that says what is accepted."""
    if not isinstance(y, torch.Tensor) or y.ndim != 4 or tuple(y.shape[1:]) != (3, size, size):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"images must be a (B, 3, {size}, {size}) tensor in [-1, 1], got {shape}")
    if not torch.isfinite(y).all() or y.min() < -1.001 or y.max() > 1.001:
        raise ValueError(f"images must lie in [-1, 1] (finite), got values in [{y.min():.3g}, {y.max():.3g}]")
    return y.float()


def check_prompt(bundle, prompt: str) -> str:
    """A prompt whose every word the text model knows (toyclip.tokenize raises naming the vocabulary)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    toyclip.tokenize(bundle.tokenizer, [prompt])
    return prompt


def check_xi(xi) -> float:
    if isinstance(xi, bool) or not isinstance(xi, (int, float)) or not -1.0 <= float(xi) <= 1.0:
        raise ValueError(f"xi must be a number in [-1, 1] (HQS lies in [-1, 1]), got {xi!r}")
    return float(xi)


def check_t_grid(ts, T: int = 1000) -> tuple:
    """Paper timesteps: integers in [1, T], at least one, no repeats, increasing order is imposed."""
    ts = [ts] if isinstance(ts, int) else list(ts)
    bad = [t for t in ts if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= T]
    if not ts or bad or len(set(ts)) != len(ts):
        raise ValueError(f"timesteps must be distinct integers in [1, {T}] (paper t; index t - 1 of the schedule), "
                         f"got {bad or ts!r}")
    return tuple(sorted(ts))


# ------------------------------------------------------------------------------------------------
# Eqs. 8-12: the direction, its entropy and norm, and the Hybrid Quality Score
# ------------------------------------------------------------------------------------------------
def alpha_bar(bundle, t: int) -> torch.Tensor:
    return bundle.scheduler.alphas_cumprod[t - 1].float()


def _eps_hat(bundle, x_t, t: int, cond, uncond, guidance_scale: float):
    tt = torch.tensor(t - 1, dtype=torch.long)
    return t2i.cfg_eps(bundle.unet, x_t, tt, cond, uncond, guidance_scale)


def directions(bundle, y: torch.Tensor, prompt: str, t: int, guidance_scale: float = 1.0,
               generator: Optional[torch.Generator] = None, forms=FORMS) -> dict:
    """d_t(y, gamma) of Eq. 8 in both forms from one noise draw and one U-Net pass: {"full": the gradient of
    ||eps - eps_theta(sqrt(a) y + sqrt(1 - a) eps, t, gamma)||^2 w.r.t. y (through the U-Net, as the paper writes),
    "sds": w(t)(eps_theta - eps) with w = 1 - alpha_bar_t (the Jacobian skipped, as the official code)}, each
    (B, C, H, W). guidance_scale 1 is the conditional eps_theta(., gamma) of Eq. 8. forms=("sds",) skips the
    backward pass (the SDS form needs none)."""
    y = check_images(y, bundle.image_size)
    t = check_t_grid(t, bundle.scheduler.config.num_train_timesteps)[0]
    check_prompt(bundle, prompt)
    cond = t2i.encode_prompt(bundle, [prompt] * len(y))
    uncond = t2i.null_embedding(bundle, len(y))
    z = t2i.encode_image(bundle, y).detach()
    eps = torch.randn(z.shape, generator=generator).to(z.device)    # CPU generator: the same noise on any device
    a = alpha_bar(bundle, t)
    bad = [f for f in forms if f not in FORMS]
    if bad or not forms:
        raise ValueError(f"forms must be a non-empty subset of {FORMS}, got {forms!r}")
    with torch.set_grad_enabled("full" in forms):
        z = z.clone().requires_grad_("full" in forms)
        e = _eps_hat(bundle, a.sqrt() * z + (1 - a).sqrt() * eps, t, cond, uncond, guidance_scale)
        out = {"sds": (1 - a) * (e.detach() - eps)}
        if "full" in forms:
            out["full"] = torch.autograd.grad(((eps - e) ** 2).sum(), z)[0].detach()
    return {f: out[f] for f in forms}


def direction(bundle, y, prompt: str, t: int, form: str = "full", guidance_scale: float = 1.0,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """d_t(y, gamma) (Eq. 8) in one form: "full" (the paper) or "sds" (the official code). (B, C, H, W)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return directions(bundle, y, prompt, t, guidance_scale, generator)[form]


def entropy(d: torch.Tensor, form: str = "paper") -> torch.Tensor:
    """H_t (Eq. 9) of each direction in a batch, (B,): the Shannon entropy of a softmax (no temperature) over
    abs(d): "paper" over all H*W*C elements; "official" over the H*W pixels of the channel mean."""
    if form not in ENTROPY_FORMS:
        raise ValueError(f"entropy form must be one of {ENTROPY_FORMS}, got {form!r}")
    a = d.abs().mean(1) if form == "official" else d.abs()
    logp = torch.log_softmax(a.flatten(1).double(), dim=1)
    return -(logp.exp() * logp).sum(1).float()


def l1_norm(d: torch.Tensor) -> torch.Tensor:
    """N_t (Eq. 10), (B,): the L1 norm of each direction."""
    return d.abs().flatten(1).sum(1)


def minmax(v: torch.Tensor) -> torch.Tensor:
    """Eq. 11 along the last axis (the t grid): (v - min) / (max - min); a constant row gives zeros."""
    lo, hi = v.min(-1, keepdim=True).values, v.max(-1, keepdim=True).values
    return (v - lo) / (hi - lo).clamp_min(1e-12)


@dataclass
class HQSCurve:
    """The score of one prompt over a grid of t, for the images it was measured on."""
    prompt: str
    form: str                       # the form of d_t: "full" or "sds"
    t: tuple                        # paper timesteps
    H: dict                         # entropy form -> (n_images, n_t) H_t
    N: torch.Tensor                 # (n_images, n_t) N_t
    n_images: int
    guidance_scale: float

    def H_bar(self, entropy_form: str = "paper") -> torch.Tensor:
        return minmax(self.H[entropy_form])

    @property
    def N_bar(self) -> torch.Tensor:
        return minmax(self.N)

    def hqs(self, entropy_form: str = "paper") -> torch.Tensor:
        """HQS (Eq. 12), (n_t,): the mean over images of N_bar - H_bar."""
        return (self.N_bar - self.H_bar(entropy_form)).mean(0)


def hqs_curves(bundle, images: torch.Tensor, prompt: str, ts=DEFAULT_GRID, guidance_scale: float = 1.0,
               generator: Optional[torch.Generator] = None, batch_size: int = 64, forms=FORMS) -> dict:
    """H_t (both entropy forms) and N_t for every image and every t of the grid, for both forms of d_t.
    Returns {"full": HQSCurve, "sds": HQSCurve}. One noise draw per (image, t), shared by the two forms."""
    images = check_images(images, bundle.image_size)
    ts = check_t_grid(ts, bundle.scheduler.config.num_train_timesteps)
    check_prompt(bundle, prompt)
    H = {f: {e: torch.zeros(len(images), len(ts)) for e in ENTROPY_FORMS} for f in forms}
    N = {f: torch.zeros(len(images), len(ts)) for f in forms}
    for j, t in enumerate(ts):
        for i in range(0, len(images), batch_size):
            d = directions(bundle, images[i:i + batch_size], prompt, t, guidance_scale, generator, forms)
            for f in forms:
                N[f][i:i + batch_size, j] = l1_norm(d[f])
                for e in ENTROPY_FORMS:
                    H[f][e][i:i + batch_size, j] = entropy(d[f], e)
    return {f: HQSCurve(prompt, f, ts, H[f], N[f], len(images), float(guidance_scale)) for f in forms}


def select(curve: HQSCurve, xi: float, entropy_form: str = "paper") -> tuple:
    """S = {t | HQS_t > xi} (Alg. 1, line 3). Raises a ValueError when S would be empty."""
    xi = check_xi(xi)
    h = curve.hqs(entropy_form)
    S = tuple(t for t, v in zip(curve.t, h.tolist()) if v > xi)
    if not S:
        raise ValueError(f"xi = {xi} is at or above the largest HQS ({h.max():.3f} at t = {curve.t[int(h.argmax())]}): "
                         f"S would be empty; choose xi in [-1, {h.max():.3f})")
    return S


def largest(curve: HQSCurve, entropy_form: str = "paper") -> tuple:
    """The single t of largest HQS (Table 3's 'largest HQS')."""
    return (curve.t[int(curve.hqs(entropy_form).argmax())],)


def official_selection(curve: HQSCurve) -> tuple:
    """The official code's choice: the channel-averaged entropy of the SDS form, averaged over the images, argmin over
    the t of OFFICIAL_GRID that the curve has (t = 100, 150, ..., 900). Needs curve.form == "sds"."""
    if curve.form != "sds":
        raise ValueError("the official selection uses the SDS form of d_t; pass hqs_curves(...)['sds']")
    cols = [j for j, t in enumerate(curve.t) if t in OFFICIAL_GRID]
    if not cols:
        raise ValueError(f"the curve's grid has none of the official timesteps {OFFICIAL_GRID}")
    h = curve.H["official"][:, cols].mean(0)
    return (curve.t[cols[int(h.argmin())]],)


# ------------------------------------------------------------------------------------------------
# The manipulator f_phi(y) = G(E(y) + M_phi(E(y)))
# ------------------------------------------------------------------------------------------------
class LatentMapper(nn.Module):
    """M_phi: StyleCLIP's latent mapper in miniature: PixelNorm, then `n_layers` Linear layers with LeakyReLU(0.2)
    between them, on the flattened latent (C*h*w); the output is the latent offset, scaled by `scale` (StyleCLIP
    uses 0.1). The last layer starts near zero, so f_phi starts as G(E(y))."""

    def __init__(self, latent_shape: tuple, hidden: int = 64, n_layers: int = 4, scale: float = 0.1):
        super().__init__()
        self.latent_shape, self.scale = tuple(latent_shape), scale
        dim = 1
        for s in self.latent_shape:
            dim *= s
        sizes = [dim] + [hidden] * (n_layers - 1) + [dim]
        layers = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if k < n_layers - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.net[-1].weight.mul_(0.01)
            self.net[-1].bias.zero_()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        h = w.flatten(1)
        h = h * torch.rsqrt(h.pow(2).mean(1, keepdim=True) + 1e-8)     # PixelNorm
        return self.scale * self.net(h).view(len(w), *self.latent_shape)


def manipulate(ae, mapper: LatentMapper, y: torch.Tensor) -> torch.Tensor:
    """f_phi(y) = G(E(y) + M_phi(E(y))): one forward pass, (B, 3, 32, 32) in [-1, 1]."""
    y = check_images(y)
    w = toyae.encode(ae, y)
    return toyae.decode(ae, w + mapper(w))


@dataclass
class DistillConfig:
    """Alg. 1 with the regularisers of §5.1 (official values where the paper has none: AdamW lr 5e-3). The
    iterations and identity weight are the shipped run's, chosen by the settings sweep in the sdd-manipulators card
    (the largest mean validation success with the other attributes kept in >= 87% of validation images)."""
    iterations: int = 100             # gradient steps
    batch_size: int = 8
    lr: float = 5e-3                  # AdamW (official)
    weight_decay: float = 0.01
    guidance_scale: float = 30.0      # classifier-free guidance in eps_theta (official: 100 on Stable Diffusion)
    l2_weight: float = 0.03           # lambda_L2 * mean(M_phi(E(y))^2), the latent regulariser
    id_weight: float = 0.1            # lambda_id * toy-LPIPS(f_phi(y), y): the identity term, edited vs original
    clip_grad: float = 1.0            # gradient clipping (max norm of the mapper's gradient)
    hidden: int = 64                  # mapper width
    subject: str = "person"           # the domain the manipulator is trained on (faces, as CelebA-HQ)
    seed: int = 0


@dataclass
class Manipulator:
    """A distilled f_phi: its mapper and everything needed to say what it was trained for and against."""
    mapper: LatentMapper
    prompt: str
    timesteps: tuple                  # S, the timesteps it was trained on
    strategy: str                     # how S was chosen (e.g. "largest HQS", "random")
    config: DistillConfig
    fingerprints: dict                # {"toy-ae": ..., "toy-t2i": ...}
    losses: list = field(default_factory=list)    # (iteration, SDS term, L2 term, identity term)
    seconds: float = 0.0              # training wall time (tau_SDD,train)


def distill(ae, bundle, prompt: str, timesteps, cfg: DistillConfig = DistillConfig(), identity=None,
            strategy: str = "", progress: bool = False, callback=None) -> Manipulator:
    """Alg. 1: train M_phi so that f_phi(y) moves along Eq. 7's gradient (Jacobian skipped) at t drawn from S.

    identity: a differentiable (B,) distance between edited and original images (e.g. toy-LPIPS's module over
    toy-attr's trunk); None leaves the identity term out. Each iteration draws fresh `cfg.subject` images.
    It trains on the device of toy-t2i's U-Net (move toy-ae, toy-t2i and `identity` there first); the noise comes
    from a CPU generator, the mapper starts from the same CPU initialisation and comes back on the CPU.
    callback(iteration, mapper), if given, runs after every step (for example to score snapshots: the first k
    steps of a longer run are exactly a k-step run, since the learning rate is constant).
    Loss = (SDS: mean(g * f_phi(y)) with g = w(t)(eps_hat - eps) detached) + l2 * mean(delta^2) + id * identity."""
    import time
    check_prompt(bundle, prompt)
    S = check_t_grid(timesteps, bundle.scheduler.config.num_train_timesteps)
    t2i.check_guidance_scale(cfg.guidance_scale)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    dev = next(bundle.unet.parameters()).device
    mapper = LatentMapper(ae.latent_shape, cfg.hidden).to(dev)
    opt = torch.optim.AdamW(mapper.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cond = t2i.encode_prompt(bundle, [prompt] * cfg.batch_size)
    uncond = t2i.null_embedding(bundle, cfg.batch_size)
    losses = []
    for it in progress_bar(range(cfg.iterations), desc=f"distilling {prompt!r}", unit="it"):
        y = world.sample(cfg.batch_size, seed=cfg.seed * 100_003 + 500_000 + it, subject=cfg.subject).images.to(dev)
        with torch.no_grad():
            w = toyae.encode(ae, y)
        delta = mapper(w)
        x = toyae.decode(ae, w + delta)
        t = S[int(torch.randint(len(S), (1,), generator=gen))]
        eps = torch.randn(x.shape, generator=gen).to(dev)
        a = alpha_bar(bundle, t)
        with torch.no_grad():
            eps_hat = _eps_hat(bundle, a.sqrt() * x + (1 - a).sqrt() * eps, t, cond, uncond, cfg.guidance_scale)
            g = (1 - a) * (eps_hat - eps)
        l_sds = (g * x).mean()          # d l_sds / d x = g / (B C H W): Eq. 7's gradient, Jacobian skipped
        l_l2 = delta.pow(2).mean()
        l_id = identity(x, y).mean() if identity is not None else torch.zeros(())
        loss = l_sds + cfg.l2_weight * l_l2 + cfg.id_weight * l_id
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mapper.parameters(), cfg.clip_grad)
        opt.step()
        losses.append((it, l_sds.item(), l_l2.item(), l_id.item()))
        if callback is not None:
            callback(it + 1, mapper)
        if progress and (it + 1) % 20 == 0:
            print(f"{prompt!r} it {it + 1}: sds {l_sds:.3f} l2 {l_l2:.4f} id {l_id:.4f}", file=sys.stderr, flush=True)
    fps = {"toy-ae": weights_fingerprint(ae.vae), "toy-t2i": weights_fingerprint(bundle.unet)}
    return Manipulator(mapper.cpu().eval().requires_grad_(False), prompt, S, strategy, cfg, fps, losses,
                       time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------
# Saving and loading (safetensors; the fingerprints are checked on load)
# ------------------------------------------------------------------------------------------------
def save(m: Manipulator, path) -> None:
    from safetensors.torch import save_file
    meta = {"prompt": m.prompt, "timesteps": list(m.timesteps), "strategy": m.strategy, "config": asdict(m.config),
            "fingerprints": m.fingerprints, "latent_shape": list(m.mapper.latent_shape), "seconds": m.seconds,
            "final_losses": m.losses[-1] if m.losses else None}
    save_file({k: v.half().contiguous() for k, v in m.mapper.state_dict().items()}, str(path),
              metadata={"sdd": json.dumps(meta)})


class StaleManipulatorError(ValueError):
    """A manipulator trained against another toy-ae or toy-t2i than the ones loaded now."""


def load(path, ae, bundle) -> Manipulator:
    """Load a saved manipulator; refuse it (StaleManipulatorError) if it was trained against another toy-ae or
    toy-t2i than `ae` and `bundle`."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["sdd"])
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    here = {"toy-ae": weights_fingerprint(ae.vae), "toy-t2i": weights_fingerprint(bundle.unet)}
    stale = [k for k in here if meta["fingerprints"].get(k) != here[k]]
    if stale:
        raise StaleManipulatorError(
            f"{path} was trained against another {' and '.join(stale)} (fingerprint "
            f"{', '.join(meta['fingerprints'].get(k, '?') for k in stale)} there, {', '.join(here[k] for k in stale)} "
            f"here); retrain it: `python -m diffnb.sdd full-run runs/sdd`, then install as its card says")
    cfg = DistillConfig(**meta["config"])
    mapper = LatentMapper(tuple(meta["latent_shape"]), cfg.hidden)
    mapper.load_state_dict(state)
    return Manipulator(mapper.eval().requires_grad_(False), meta["prompt"], tuple(meta["timesteps"]),
                       meta["strategy"], cfg, meta["fingerprints"], [], meta["seconds"])


if __name__ == "__main__":
    from .maint.sdd_run import main
    sys.exit(main())
