"""The rectifier of Hou et al. (AAAI 2024, "High-Fidelity Diffusion-based Image Editing"): a hypernetwork that
reads the original image and each step's estimate and corrects the U-Net's convolution kernels at every step.

Notation (the paper's §Hypernetwork as Rectifier and supplement A):

    P_t      = pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t)) / sqrt(alpha_bar_t)   the step's estimate of x_0
    Delta    = R(x_0, P_t, t)                                                                  (Eq. 1)
    theta^   = theta * (1 + Delta)     on every modulated kernel, per image                   (Eq. 2)
    L_rec    = E || eps - eps_theta^(x_t) ||^2                                                 (Eq. 3)
    Delta_l  = a_l (h*w*C_in*1) x b_l (h*w*1*C_out)     separable offsets, per kernel position  (§Hypernetwork)

R is a global encoder over the 6-channel concatenation [x_0, P_t] (a small ResNet standing in for ResNet-34) and
one sub-net per modulated layer that reduces the features to 1x1, adds a sinusoidal time embedding the way the
U-Net's resnets do (diffusers `Timesteps` + `TimestepEmbedding`), and emits the two slim factors.

The modulated forward runs the unchanged diffusers `UNet2DModel` through `torch.func.functional_call` with the
per-image kernels, either vectorised over the batch (`torch.func.vmap`) or in a loop (`modulated_eps(mode=...)`).
`RectifiedUNet(unet, rectifier, x0, scheduler)` is a drop-in eps model with the `(x_t, t)` signature that
`diffnb.sampling` and `diffnb.inversion` drive, so DDIM reconstruction and SDEdit need no loop of their own.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import sampling
from .devices import Bundle

MODULATED_BLOCKS = ("mid_block", "up_blocks")   # the paper's choice: the middle and up-sampling blocks


def modulated_layers(unet, blocks=MODULATED_BLOCKS) -> dict:
    """{name: kernel shape (C_out, C_in, h, w)} of every nn.Conv2d inside `blocks` of a diffusers U-Net."""
    return {n: tuple(m.weight.shape) for n, m in unet.named_modules()
            if isinstance(m, nn.Conv2d) and n.split(".")[0] in blocks}


def check_layers(unet, layers) -> dict:
    """{name: shape} for the given layer names; an unknown name fails with the list of accepted ones."""
    convs = {n: tuple(m.weight.shape) for n, m in unet.named_modules() if isinstance(m, nn.Conv2d)}
    unknown = [n for n in layers if n not in convs]
    if unknown:
        raise ValueError(f"unknown layer(s) to modulate: {unknown}; accepted are the U-Net's convolutions, "
                         f"e.g. {sorted(modulated_layers(unet))[:4]} ... ({len(convs)} in all)")
    return {n: convs[n] for n in layers}


def fingerprint(shapes: dict) -> str:
    """A short hash of the modulated layers' names and kernel shapes: the rectifier fits only that U-Net."""
    text = json.dumps(sorted((n, list(s)) for n, s in shapes.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def offset_counts(shapes: dict) -> tuple:
    """(full, separable) numbers of generated values per image: sum h*w*C_in*C_out against sum h*w*(C_in + C_out)."""
    full = sum(h * w * ci * co for co, ci, h, w in shapes.values())
    sep = sum(h * w * (ci + co) for co, ci, h, w in shapes.values())
    return full, sep


@dataclass
class RectifierConfig:
    """The hypernetwork's shape; `layers`/`shapes` tie it to one U-Net (checked by `fingerprint`)."""
    layers: tuple                 # names of the modulated convolutions in the U-Net
    shapes: tuple                 # their kernel shapes (C_out, C_in, h, w)
    width: int = 32               # encoder channels at 32x32 (x2 at 16x16 and 8x8)
    sub_width: int = 16           # channels of each sub-net
    time_dim: int = 32            # sinusoidal time embedding size (projected to 2 * width)
    image_channels: int = 3       # x_0 and P_t each; the encoder reads 2 * image_channels

    @property
    def fingerprint(self) -> str:
        return fingerprint(dict(zip(self.layers, self.shapes)))


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class _SubNet(nn.Module):
    """One modulated layer's branch: encoder features (B, 2w, 8, 8) + time embedding -> factors a, b."""

    def __init__(self, in_ch: int, ch: int, temb_dim: int, shape: tuple):
        super().__init__()
        c_out, c_in, h, w = shape
        self.shape = shape
        self.reduce = nn.Sequential(nn.Conv2d(in_ch, ch, 3, stride=2, padding=1), nn.SiLU(),     # 8 -> 4
                                    nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.SiLU(),        # 4 -> 2
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten())                       # -> 1x1
        self.time = nn.Linear(temb_dim, ch)
        self.to_in = nn.Linear(ch, h * w * c_in)      # h x w x C_in x 1
        self.to_out = nn.Linear(ch, h * w * c_out)    # h x w x 1 x C_out
        nn.init.zeros_(self.to_out.weight)            # Delta = 0 at the start: training starts from the U-Net
        nn.init.zeros_(self.to_out.bias)

    def forward(self, feats, temb):
        c_out, c_in, h, w = self.shape
        z = F.silu(self.reduce(feats) + self.time(temb))
        a = self.to_in(z).view(-1, h * w, c_in)
        b = self.to_out(z).view(-1, h * w, c_out)
        return torch.einsum("bki,bko->boik", a, b).reshape(-1, c_out, c_in, h, w)


class Rectifier(nn.Module):
    """R(x_0, P_t, t) -> {layer name: Delta (B, C_out, C_in, h, w)} (Eq. 1, supplement A)."""

    def __init__(self, config: RectifierConfig):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps
        self.config = config
        w, c = config.width, config.image_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(2 * c, w, 3, padding=1), _ResBlock(w),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), _ResBlock(2 * w),         # 16x16
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), _ResBlock(2 * w))     # 8x8
        self.time_proj = Timesteps(config.time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)  # as the U-Net
        self.time_embedding = TimestepEmbedding(config.time_dim, 2 * w)
        self.subnets = nn.ModuleList(_SubNet(2 * w, config.sub_width, 2 * w, tuple(s)) for s in config.shapes)

    def forward(self, x0: torch.Tensor, p_t: torch.Tensor, t) -> dict:
        check_images(x0, p_t)
        t = torch.as_tensor(t, device=x0.device).reshape(-1).expand(x0.shape[0])
        feats = self.encoder(torch.cat([x0, p_t.clamp(-1, 1)], dim=1))
        temb = self.time_embedding(self.time_proj(t).to(x0.dtype))
        return {name: net(feats, temb) for name, net in zip(self.config.layers, self.subnets)}


def check_images(x0: torch.Tensor, x_t: torch.Tensor, tol: float = 1e-3) -> None:
    """x_0 must be a (B, C, H, W) image in [-1, 1] with the shape of x_t (or P_t)."""
    if not isinstance(x0, torch.Tensor) or x0.ndim != 4:
        raise ValueError("x0 must be a (B, C, H, W) tensor in [-1, 1]; convert images with diffnb.images.to_tensor")
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 and x_t must have the same shape (B, C, H, W), got {tuple(x0.shape)} and "
                         f"{tuple(x_t.shape)}")
    lo, hi = float(x0.min()), float(x0.max())
    if lo < -1 - tol or hi > 1 + tol:
        raise ValueError(f"x0 must lie in [-1, 1] (diffnb.images.to_tensor's range), got values in "
                         f"[{lo:.3f}, {hi:.3f}]")


def check_unet(unet, config: RectifierConfig) -> None:
    """The U-Net must have the layers and kernel shapes the rectifier was trained for."""
    convs = {n: tuple(m.weight.shape) for n, m in unet.named_modules() if isinstance(m, nn.Conv2d)}
    found = {n: convs.get(n) for n in config.layers}
    if fingerprint(found) != config.fingerprint:
        bad = [f"{n}: {found[n]} (expected {tuple(s)})" for n, s in zip(config.layers, config.shapes)
               if found[n] != tuple(s)]
        raise ValueError(f"this U-Net does not match the rectifier (fingerprint {fingerprint(found)} != "
                         f"{config.fingerprint}); the rectifier accepts only the U-Net it was trained for "
                         f"(layers {', '.join(bad[:3])} ...)")


def modulated_weights(unet, deltas: dict) -> dict:
    """{name.weight: theta * (1 + Delta)} (Eq. 2), one kernel per image: (B, C_out, C_in, h, w)."""
    mods = dict(unet.named_modules())
    return {f"{n}.weight": mods[n].weight * (1 + d) for n, d in deltas.items()}


def modulated_eps(unet, deltas: dict, x_t: torch.Tensor, t, mode: str = "vmap") -> torch.Tensor:
    """eps_theta^(x_t, t) with per-image kernels theta * (1 + Delta) on the layers in `deltas`, through the
    unchanged diffusers U-Net (`torch.func.functional_call`). mode 'vmap' vectorises over the batch, 'loop'
    calls the U-Net once per image. Returns (B, C, H, W)."""
    from torch.func import functional_call, vmap
    if mode not in ("vmap", "loop"):
        raise ValueError(f"mode must be 'vmap' or 'loop', got {mode!r}")
    weights = modulated_weights(unet, deltas)
    t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])

    def one(w, x, tt):
        return functional_call(unet, w, (x[None], tt[None])).sample[0]
    if mode == "vmap":
        import warnings
        with warnings.catch_warnings():   # torch has no batching rule for CPU flash attention: a known fallback
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            return vmap(one, randomness="same")(weights, x_t, t)
    return torch.stack([one({k: v[i] for k, v in weights.items()}, x_t[i], t[i]) for i in range(x_t.shape[0])])


class RectifiedUNet(nn.Module):
    """A drop-in eps model (x_t, t) -> eps for `diffnb.sampling` and `diffnb.inversion`: at each call it runs the
    base U-Net for P_t, asks the rectifier for Delta = R(x_0, P_t, t) and returns the modulated U-Net's eps.
    x0 is the original (reconstruction) or guide (SDEdit) image, (B, C, H, W) in [-1, 1]."""

    def __init__(self, unet, rectifier: Rectifier, x0: torch.Tensor, scheduler, mode: str = "vmap"):
        super().__init__()
        check_unet(unet, rectifier.config)
        check_images(x0, x0)
        self.unet, self.rectifier, self.mode = unet, rectifier, mode
        self.register_buffer("x0", x0, persistent=False)
        self.alphas_cumprod = scheduler.alphas_cumprod
        self.config = unet.config

    def deltas(self, x_t: torch.Tensor, t) -> dict:
        check_images(self.x0, x_t)
        eps = self.unet(x_t, t).sample
        a_t = self.alphas_cumprod[int(t) if torch.as_tensor(t).numel() == 1 else torch.as_tensor(t).cpu()]
        a_t = torch.as_tensor(a_t, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1, 1, 1)
        return self.rectifier(self.x0, sampling.pred_x0(x_t, eps, a_t), t)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return modulated_eps(self.unet, self.deltas(x_t, t), x_t, t, self.mode)


# ------------------------------------------------------------------------------------------------
# Saving and loading (safetensors only)
# ------------------------------------------------------------------------------------------------
def save(rectifier: Rectifier, path, meta: Optional[dict] = None, dtype: torch.dtype = torch.float16) -> None:
    """Write the rectifier's weights (fp16 by default) and its config as safetensors metadata."""
    from safetensors.torch import save_file
    cfg = asdict(rectifier.config)
    save_file({k: v.detach().cpu().to(dtype).contiguous() for k, v in rectifier.state_dict().items()}, str(path),
              metadata={"config": json.dumps(cfg), "meta": json.dumps(meta or {})})


def load(path, unet=None) -> Rectifier:
    """Read what `save` wrote; with `unet`, check it is the U-Net this rectifier was trained for."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        cfg = json.loads(f.metadata()["config"])
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    cfg["layers"] = tuple(cfg["layers"])
    cfg["shapes"] = tuple(tuple(s) for s in cfg["shapes"])
    rect = Rectifier(RectifierConfig(**cfg))
    rect.load_state_dict(state)
    if unet is not None:
        check_unet(unet, rect.config)
    return rect.eval().requires_grad_(False)


@dataclass
class RectifierBundle(Bundle):
    """What `zoo.load("toy-rectifier")` returns: the hypernetwork, for the U-Net named in `base`."""
    name: str
    model: Rectifier
    base: str                        # the zoo name of the U-Net it modulates
    source: str
    card: str = ""


def load_bundle(folder, card: str = "", dtype: torch.dtype = torch.float32) -> RectifierBundle:
    """zoo's loader for a checked toy-rectifier folder (rectifier.safetensors)."""
    from pathlib import Path
    return RectifierBundle("toy-rectifier", load(Path(folder) / "rectifier.safetensors").to(dtype), "toy-ddpm",
                           str(folder), card)


def new_rectifier(unet, layers=None, **sizes) -> Rectifier:
    """A fresh rectifier for `unet` over `layers` (default: every convolution of the mid and up blocks)."""
    shapes = modulated_layers(unet) if layers is None else check_layers(unet, layers)
    return Rectifier(RectifierConfig(tuple(shapes), tuple(shapes.values()), **sizes))


# ------------------------------------------------------------------------------------------------
# Training (Eq. 3, supplement B) and the loss ablation of supplement C
# ------------------------------------------------------------------------------------------------
LOSSES = ("eps", "l1", "l1_dw")   # Eq. 3; L1 on P_t; L1 on P_t + offset-size penalty (supplement C)


@dataclass
class RectifierTrainConfig:
    """toy-rectifier: Eq. 3 on augmented `toy` world images over the frozen toy-ddpm."""
    steps: int = 1200                 # optimiser steps (a run stops earlier at max_minutes)
    batch_size: int = 8
    lr: float = 1e-3                  # Adam, supplement B
    weight_decay: float = 1e-5        # supplement B
    lr_decay: float = 0.9             # supplement B: x0.9 every 5,000 steps; here every `decay_every` steps
    decay_every: int = 120            # scaled to the run: ten decays, as supplement B's 50,000 steps at 5,000
    loss: str = "eps"                 # one of LOSSES
    dw_weight: float = 1e-2           # weight of the offset-size penalty mean(Delta^2) for loss 'l1_dw'
    seed: int = 0
    augment: bool = True              # photometric augmentation (training.augment): photo stays unseen
    mode: str = "vmap"                # modulated forward: 'vmap' or 'loop'
    width: int = 32                   # RectifierConfig.width
    sub_width: int = 16               # RectifierConfig.sub_width
    save_every: int = 100
    log_every: int = 25
    num_threads: int = 1              # 1 is fastest on a busy 2-core machine
    max_minutes: float = 25.0         # stop (and save) after this wall time; 0: run all `steps`


def rectifier_loss(unet, scheduler, rect: Rectifier, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   loss: str = "eps", dw_weight: float = 1e-2, mode: str = "vmap") -> torch.Tensor:
    """One batch of Eq. 3 (loss 'eps': ||eps - eps_theta^(x_t)||^2), or supplement C's alternatives ('l1':
    |x_0 - P_t(eps_theta^)|, 'l1_dw': the same + dw_weight * mean Delta^2). x_t = q(x_t | x_0) with `noise`."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    a_t = scheduler.alphas_cumprod.to(x0.device)[t].reshape(-1, 1, 1, 1)
    x_t = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * noise
    with torch.no_grad():
        p_t = sampling.pred_x0(x_t, unet(x_t, t).sample, a_t)
    deltas = rect(x0, p_t, t)
    eps = modulated_eps(unet, deltas, x_t, t, mode)
    if loss == "eps":
        return F.mse_loss(eps, noise)
    l1 = (x0 - sampling.pred_x0(x_t, eps, a_t)).abs().mean()
    if loss == "l1":
        return l1
    return l1 + dw_weight * sum(d.pow(2).mean() for d in deltas.values()) / len(deltas)


def train(unet, scheduler, cfg: RectifierTrainConfig, out_dir=None, rect: Optional[Rectifier] = None,
          progress: bool = True):
    """Fit a rectifier to the frozen `unet` with the zoo's one training loop (`training.fit`): Adam with weight
    decay and a step-decayed lr (supplement B), gradient clipping at 1. World batches come from `training.batches`
    (seed cfg.seed + 5000), augmented with `training.augment`; timesteps uniform over training's 1,000. Writes
    rectifier.safetensors and train_log.json into out_dir (a temporary folder when None) every `save_every` steps
    and at the end. Returns (rectifier, TrainResult). Runs on `cfg.num_threads` torch threads (0: torch's setting)
    and restores the count afterwards."""
    from .threads import torch_threads
    with torch_threads(cfg.num_threads or None):
        return _train(unet, scheduler, cfg, out_dir, rect, progress)


def _train(unet, scheduler, cfg: RectifierTrainConfig, out_dir, rect: Optional[Rectifier], progress: bool):
    import tempfile
    from pathlib import Path

    from . import fit as training  # the one training loop (diffnb.fit)
    torch.manual_seed(cfg.seed)
    unet = unet.requires_grad_(False)
    rect = rect if rect is not None else new_rectifier(unet, width=cfg.width, sub_width=cfg.sub_width)
    rect.train().requires_grad_(True)
    opt = torch.optim.Adam(rect.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=cfg.lr_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = training.batches(cfg.batch_size, cfg.seed + 5000)
    n_train = scheduler.config.num_train_timesteps

    def loss_at(step):
        x0 = next(data).images
        x0 = training.augment(x0, gen) if cfg.augment else x0
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_train, (x0.shape[0],), generator=gen)
        return rectifier_loss(unet, scheduler, rect, x0, noise, t, cfg.loss, cfg.dw_weight, cfg.mode)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir if out_dir is not None else tmp)
        out.mkdir(parents=True, exist_ok=True)
        result = training.fit("toy-rectifier", rect, cfg, out, loss_at, optimizer=opt, lr_scheduler=sched,
                              save_weights=lambda step: save(rect, out / "rectifier.safetensors", {"step": step}),
                              clip_grad=1.0, progress=progress)
    return rect.eval().requires_grad_(False), result
