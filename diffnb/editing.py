"""Editing trained like score matching (Hou et al., AAAI 2024, §Training Editing like Score Matching, Alg. 1)
and the two strategies it is compared with: Markovian fine-tuning (DiffusionCLIP) and h-space editing (Asyrp).

Notation (the paper's Eqs. 4-6 and Alg. 1):

    L_direction(x_tar, t_tar; x_src, t_src) = 1 - cos(E_I(x_tar) - E_I(x_src), E_T(t_tar) - E_T(t_src))   (Eq. 4)
    L_l1(x_tar, x_src)                      = |x_tar - x_src|                                              (Eq. 5)
    L_edit = lambda_clip * L_direction + lambda_recon * L_l1                                               (Eq. 6)

    Alg. 1:  x_0 ~ q(x_0),  t ~ U{1..T},  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (lines 2-5)
             theta~ = theta * (1 + R(x_0, P_t[eps_theta(x_t)], t))                                         (line 6)
             step on grad_R  L_edit(P_t[eps_theta~(x_t)], t_tar; x_0, t_src)                                (line 7)

x_t always comes from the *original* image's forward process, never from an edited trajectory: the deviation an
edit causes at one step is never fed back into the next (the paper's point against Markovian training). R starts
from toy-rectifier (notebook 03) and is the only thing that learns; the U-Net stays frozen. The texts t_src and
t_tar are the world captions of each training image before and after the edit (`edit_texts`).

Baselines, on the same U-Net, images, losses and number of gradient steps (`EditTrainConfig.method`):

    "markovian"  DiffusionCLIP: DDIM-invert x_0 to t_0 (S_inv steps, base model), denoise S_gen steps with the
                 model being tuned (the same rectifier as Alg. 1, so the strategy is the only difference), put
                 L_edit on the final image and backpropagate through the chain (gradient checkpointing per step).
    "hspace"     Asyrp: a small network f(h, t) shifts the U-Net's mid-block output h by Delta_h on the editing
                 interval [T, t_edit]. The asymmetric reverse process uses the shifted eps in P_t only; L_edit is
                 put on each step's P_t against the original P_t (Asyrp's losses), and the trajectory it walks is
                 the edited one (detached between steps).
                 After t_edit the original model finishes; below t_boost, steps are stochastic (eta = 1), Asyrp's
                 quality boost.

Each baseline has its own interval ("original") and a "full" variant over the whole trajectory (the paper's Fig. 6).
Inference for every method: DDIM (eta = 0) from the x_T of the original image, inverted by the reconstruction
model (toy-ddpm with toy-rectifier: notebook 03's finding that a model inverts best for itself), then every step
with the edited model (Alg. 1 and "full"), or the edited model on the method's interval only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks, inversion, rectifier, sampling, toyclip, world
from .progress import bar as progress_bar
from .tensorfile import weights_fingerprint

METHODS = ("alg1", "markovian", "hspace")
EDITS = {  # name: (attribute, source value, target value) -- notebook 04's three edits (Table 2)
    "smiling": ("smiling", False, True),
    "glasses": ("glasses", False, True),
    "blonde": ("hair", "black", "blonde"),
}
TRAIN_SEED, HELD_OUT_SEED = 90_000, 91_000   # world seeds of the edit-training pool and of the held-out images


def _integer(name: str, value, low: int = 1, high: Optional[int] = None) -> int:
    """An integer in [low, high] (bool refused), through the shared checks."""
    v = checks.count(name, value, minimum=low)
    if high is not None and v > high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return v


# ------------------------------------------------------------------------------------------------
# Losses (Eqs. 4-6)
# ------------------------------------------------------------------------------------------------
def check_lambdas(lambda_clip, lambda_recon) -> tuple:
    """Both weights must be finite numbers >= 0, and not both 0."""
    lc = checks.number("lambda_clip", lambda_clip, low=0.0)
    lr = checks.number("lambda_recon", lambda_recon, low=0.0)
    if lc == 0 and lr == 0:
        raise ValueError("lambda_clip and lambda_recon are both 0: the edit loss (Eq. 6) would be 0; "
                         "accepted: finite numbers >= 0, at least one positive")
    return lc, lr


def check_texts(tokenizer, texts) -> list:
    """Every word of every prompt must be one toy-clip's tokenizer knows (no <unk>)."""
    texts = toyclip._as_prompts(texts)
    vocab = set(tokenizer.get_vocab())
    for text in texts:
        unknown = sorted({w for w in toyclip.words(tokenizer, text) if w not in vocab})
        if unknown:
            raise ValueError(f"unknown word(s) {unknown} in prompt {text!r}; toy-clip's tokenizer knows: "
                             f"{' '.join(sorted(w for w in vocab if not w.startswith('<')))}")
    return texts


def direction_loss(clip_model, tokenizer, x_tar, x_src, text_tar, text_src) -> torch.Tensor:
    """(B,) Eq. 4: 1 - cos(E_I(x_tar) - E_I(x_src), E_T(t_tar) - E_T(t_src)). Keeps gradients w.r.t. x_tar."""
    return 1 - toyclip.directional_similarity(clip_model, tokenizer, x_src, x_tar, text_src, text_tar)


def l1_loss(x_tar: torch.Tensor, x_src: torch.Tensor) -> torch.Tensor:
    """(B,) Eq. 5: the mean absolute difference per image."""
    return (x_tar - x_src).abs().flatten(1).mean(1)


def edit_loss(clip_model, tokenizer, x_tar, x_src, text_tar, text_src, lambda_clip: float = 1.0,
              lambda_recon: float = 1.0) -> torch.Tensor:
    """Eq. 6, averaged over the batch: lambda_clip * L_direction + lambda_recon * L_l1 (supplement B: both 1)."""
    lc, lr = check_lambdas(lambda_clip, lambda_recon)
    loss = lr * l1_loss(x_tar, x_src)
    if lc:
        loss = loss + lc * direction_loss(clip_model, tokenizer, x_tar, x_src, text_tar, text_src)
    return loss.mean()


# ------------------------------------------------------------------------------------------------
# The edits' data: source images and caption pairs
# ------------------------------------------------------------------------------------------------
def check_edit(edit: str) -> tuple:
    if edit not in EDITS:
        raise ValueError(f"unknown edit {edit!r}; accepted: {', '.join(EDITS)}")
    return EDITS[edit]


def edit_images(edit: str, n: int, seed: int, domain: str = "toy") -> world.WorldBatch:
    """n world images whose edited attribute has the source value (a person, as the paper's faces)."""
    name, src, _ = check_edit(edit)
    return world.sample(n, seed=seed, domain=domain, subject="person", **{name: src})


def edit_texts(edit: str, attrs) -> tuple:
    """(t_src, t_tar): the full world caption of each image before and after the edit."""
    name, _, tar = check_edit(edit)
    src = [world.caption(a) for a in attrs]
    return src, [world.caption(replace(a, **{name: tar})) for a in attrs]


def edit_success(attr_model, images: torch.Tensor, edit: str) -> torch.Tensor:
    """(B,) bool: toy-attr reads the edit's target value."""
    name, _, tar = check_edit(edit)
    return torch.tensor([getattr(r, name) == tar for r in attr_model.predict(images).attributes()])


def others_kept(attr_model, edited: torch.Tensor, original: torch.Tensor, edit: str) -> torch.Tensor:
    """(B,) fraction of the other binary attributes whose toy-attr reading is unchanged by the edit."""
    name = check_edit(edit)[0]
    others = [b for b in world.BINARY if b != name]
    a, b = attr_model.predict(edited).attributes(), attr_model.predict(original).attributes()
    return torch.tensor([sum(getattr(x, k) == getattr(y, k) for k in others) / len(others) for x, y in zip(a, b)])


# ------------------------------------------------------------------------------------------------
# h-space (Asyrp): Delta_h on the mid-block output
# ------------------------------------------------------------------------------------------------
class DeltaH(nn.Module):
    """Asyrp's f(h, t): two 1x1-mixed 3x3 convolutions over the mid-block output h, conditioned on t; the last layer
    starts at zero, so an untrained f leaves the model unchanged."""

    def __init__(self, channels: int, width: int = 64, time_dim: int = 32):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps
        self.time_proj = Timesteps(time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_dim, width)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, h: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, device=h.device).reshape(-1).expand(h.shape[0])
        temb = self.time_embedding(self.time_proj(t).to(h.dtype))
        return self.conv_out(F.silu(self.conv_in(h) + temb[:, :, None, None]))


class HSpaceUNet(nn.Module):
    """eps model (x_t, t) -> eps of `unet` with its mid-block output shifted by f(h, t) (a forward hook on
    `unet.mid_block`; the U-Net itself is unchanged)."""

    def __init__(self, unet, delta_h: DeltaH):
        super().__init__()
        self.unet, self.delta_h, self.config = unet, delta_h, unet.config
        self._t = None

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        self._t = t

        def shift(module, args, out):
            return out + self.delta_h(out, self._t)
        handle = self.unet.mid_block.register_forward_hook(shift)
        try:
            return self.unet(x_t, t).sample
        finally:
            handle.remove()


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
@dataclass
class EditTrainConfig:
    """One edit's training run. The defaults are supplement B's editing recipe scaled to the toy world."""
    edit: str = "smiling"              # a key of EDITS
    method: str = "alg1"               # one of METHODS
    steps: int = 60                    # gradient steps (every method gets the same number)
    batch_size: int = 4
    n_images: int = 100                # training images per attribute (the paper's number)
    lr: float = 1e-3                   # supplement B: Adam, lr 1e-3 x 0.9 every 10 steps, weight decay 0
    lr_decay: float = 0.9
    decay_every: int = 10
    weight_decay: float = 0.0
    lambda_clip: float = 1.0           # supplement B: both 1
    lambda_recon: float = 1.0
    interval: str = "original"         # baselines: "original" (their own interval) or "full" (the whole trajectory)
    t0: int = 500                      # markovian "original": DiffusionCLIP's inversion depth (of 1,000)
    s_inv: int = 10                    # markovian: inversion steps to t_0 (DiffusionCLIP: 40)
    s_gen: int = 6                     # markovian: generative steps in training (DiffusionCLIP: 6)
    t_edit: int = 500                  # hspace "original": edit on [T, t_edit] (Asyrp: an attribute-dependent t_edit)
    t_boost: int = 200                 # hspace: stochastic steps below t_boost (Asyrp's quality boost)
    hspace_steps: int = 10             # hspace training: DDIM steps of the edited trajectory per image batch
    trainable: str = "to_out"          # rectifier methods: "to_out" (each sub-net's C_out factor: a run ships in
                                       # under 1 MB) or "all" (every parameter of R, as Alg. 1 writes it)
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self):
        check_edit(self.edit)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; accepted: {', '.join(METHODS)}")
        if self.trainable not in ("to_out", "all"):
            raise ValueError(f"trainable must be 'to_out' or 'all', got {self.trainable!r}")
        if self.interval not in ("original", "full"):
            raise ValueError(f"interval must be 'original' or 'full', got {self.interval!r}")
        check_lambdas(self.lambda_clip, self.lambda_recon)
        for name in ("t0", "t_edit", "t_boost"):
            _integer(name, getattr(self, name), low=0, high=1000)
        if self.t_boost > self.t_edit:
            raise ValueError(f"the editing interval is reversed: t_boost {self.t_boost} > t_edit {self.t_edit}; "
                             "accepted: 0 <= t_boost <= t_edit <= 1000")
        for name in ("steps", "batch_size", "n_images", "s_inv", "s_gen", "hspace_steps", "decay_every"):
            _integer(name, getattr(self, name), low=1)


@dataclass
class EditRun:
    """A trained edit: the model that edits (a Rectifier or a DeltaH), its config and the loss curve."""
    config: EditTrainConfig
    model: nn.Module
    losses: list = field(default_factory=list)     # [(step, L_edit)]
    seconds: float = 0.0


def check_batch(x0: torch.Tensor, sample_size: int) -> torch.Tensor:
    if not isinstance(x0, torch.Tensor) or x0.ndim != 4 or x0.shape[1] != 3 or x0.shape[-1] != sample_size \
            or x0.shape[-2] != sample_size:
        raise ValueError(f"training images must be a (B, 3, {sample_size}, {sample_size}) tensor in [-1, 1], got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if not torch.isfinite(x0).all() or x0.min() < -1 - 1e-3 or x0.max() > 1 + 1e-3:
        raise ValueError(f"training images must lie in [-1, 1], got values in [{float(x0.min()):.3f}, "
                         f"{float(x0.max()):.3f}]")
    return x0


def _alpha_bar(scheduler, t, like):
    return scheduler.alphas_cumprod.to(like.device)[torch.as_tensor(t).reshape(-1)].to(like.dtype).reshape(-1, 1, 1, 1)


def alg1_loss(unet, scheduler, rect, clip_model, tokenizer, x0, text_src, text_tar, t, noise,
              lambda_clip: float = 1.0, lambda_recon: float = 1.0) -> torch.Tensor:
    """One batch of Alg. 1, lines 4-7: x_t from the original image's forward process, theta~ from R, and L_edit on
    P_t[eps_theta~(x_t)] against x_0 and the caption pair."""
    a_t = _alpha_bar(scheduler, t, x0)
    x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise                                   # line 5
    with torch.no_grad():
        p_t = sampling.pred_x0(x_t, unet(x_t, t).sample, a_t)                           # P_t[eps_theta(x_t)]
    deltas = rect(x0, p_t, t)                                                           # line 6
    p_edit = sampling.pred_x0(x_t, rectifier.modulated_eps(unet, deltas, x_t, t), a_t).clamp(-1, 1)
    return edit_loss(clip_model, tokenizer, p_edit, x0, text_tar, text_src, lambda_clip, lambda_recon)  # line 7


def _move(scheduler, x, eps, t_from: int, t_to: int):
    """`sampling.ddim_map` between timesteps t_from and t_to (either direction); a negative timestep means
    alpha_bar = 1 (the clean image)."""
    a_from = _alpha_bar(scheduler, t_from, x) if t_from >= 0 else torch.ones(1, 1, 1, 1, dtype=x.dtype)
    a_to = _alpha_bar(scheduler, t_to, x) if t_to >= 0 else torch.ones(1, 1, 1, 1, dtype=x.dtype)
    return sampling.ddim_map(x, eps, a_from, a_to)


@torch.no_grad()
def invert_to(unet, scheduler, x0: torch.Tensor, t0: int, n: int) -> torch.Tensor:
    """DiffusionCLIP's partial inversion: n deterministic DDIM steps from x_0 up to timestep t0 (base model)."""
    ts = [-1] + [int(round(t0 * (i + 1) / n)) for i in range(n)]
    x = x0
    for t_from, t_to in zip(ts[:-1], ts[1:]):
        x = _move(scheduler, x, unet(x, max(t_from, 0)).sample, t_from, t_to)
    return x


def _timesteps(t_start: int, n: int) -> list:
    """n DDIM timesteps from t_start down (uniform), and -1 at the end."""
    ts = [int(round(t_start - i * (t_start + 1) / n)) for i in range(n)]
    return ts + [-1]


def markovian_loss(unet, scheduler, rect, clip_model, tokenizer, x0, text_src, text_tar, t0: int, s_inv: int,
                   s_gen: int, lambda_clip: float = 1.0, lambda_recon: float = 1.0) -> torch.Tensor:
    """DiffusionCLIP's step: invert x_0 to t_0 with the base model (no gradient), denoise s_gen steps with the model
    being tuned (RectifiedUNet over `rect`), L_edit on the final image, gradients through the whole chain
    (checkpointed per step)."""
    from torch.utils.checkpoint import checkpoint
    x = invert_to(unet, scheduler, x0, t0, s_inv)
    model = rectifier.RectifiedUNet(unet, rect, x0, scheduler)
    ts = _timesteps(t0, s_gen)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        x = checkpoint(lambda x_, t=t, t_prev=t_prev: _move(scheduler, x_, model(x_, t), t, t_prev), x,
                       use_reentrant=False)
    return edit_loss(clip_model, tokenizer, x.clamp(-1, 1), x0, text_tar, text_src, lambda_clip, lambda_recon)


def hspace_losses(unet, scheduler, delta_h, clip_model, tokenizer, x0, text_src, text_tar, t_edit: int,
                  n_steps: int, lambda_clip: float = 1.0, lambda_recon: float = 1.0):
    """Asyrp's training walk: from the inverted x_T, n_steps DDIM steps over [T, t_edit]; at each, P_t uses the
    shifted eps and the direction term the original one (the asymmetric reverse process). Yields one L_edit per step,
    Asyrp's: the edited P_t against the *original* P_t of the same x_t (direction and L1), not against x_0, which
    an early, blurry P_t cannot match; the trajectory is detached between steps."""
    with torch.no_grad():
        x = inversion.ddim_invert(unet, scheduler, x0, n_steps * 2).x_T
    model = HSpaceUNet(unet, delta_h)
    n_total = max(n_steps, 1)
    ts = [int(round(999 - i * (999 - t_edit) / n_total)) for i in range(n_total)] + [t_edit]
    for t, t_prev in zip(ts[:-1], ts[1:]):
        a_t, a_prev = _alpha_bar(scheduler, t, x), _alpha_bar(scheduler, t_prev, x)
        eps_edit = model(x, t)
        with torch.no_grad():
            eps = unet(x, t).sample
            p_src = sampling.pred_x0(x, eps, a_t).clamp(-1, 1)
        p_edit = sampling.pred_x0(x, eps_edit, a_t)
        yield edit_loss(clip_model, tokenizer, p_edit.clamp(-1, 1), p_src, text_tar, text_src, lambda_clip,
                        lambda_recon)
        x = (a_prev.sqrt() * p_edit + (1 - a_prev).sqrt() * eps).detach()


def train(unet, scheduler, base_rect, clip_bundle, cfg: EditTrainConfig, progress: bool = False) -> EditRun:
    """Train one edit with `cfg.method` on `cfg.n_images` toy images whose attribute has the source value. Every
    method takes `cfg.steps` Adam steps (supplement B's schedule). Returns an EditRun (the model in eval mode).
    Runs on `cfg.num_threads` torch threads (0: torch's setting) and restores the count afterwards."""
    from .threads import torch_threads
    with torch_threads(cfg.num_threads or None):
        return _train(unet, scheduler, base_rect, clip_bundle, cfg, progress)


def _train(unet, scheduler, base_rect, clip_bundle, cfg: EditTrainConfig, progress: bool) -> EditRun:
    import copy
    import time

    torch.manual_seed(cfg.seed)
    unet = unet.requires_grad_(False)
    clip_model, tok = clip_bundle.model.requires_grad_(False), clip_bundle.tokenizer
    dev = unet.device                      # everything follows the U-Net (a CPU generator draws all randomness)
    pool = edit_images(cfg.edit, cfg.n_images, seed=TRAIN_SEED + cfg.seed)
    x_pool = check_batch(pool.images, unet.config.sample_size).to(dev)
    t_src, t_tar = edit_texts(cfg.edit, pool.attributes)
    check_texts(tok, t_src + t_tar)
    if cfg.method == "hspace":
        model = DeltaH(unet.config.block_out_channels[-1])
    else:
        rectifier.check_unet(unet, base_rect.config)
        model = copy.deepcopy(base_rect)
    model = model.to(dev).train().requires_grad_(True)
    if any(p.device != dev for p in clip_model.parameters()):
        raise ValueError(f"toy-clip is on {next(clip_model.parameters()).device} but the U-Net on {dev}: load both "
                         "on one device (zoo.load(..., device=...))")
    if cfg.method != "hspace" and cfg.trainable == "to_out":
        for name, p in model.named_parameters():
            p.requires_grad_(".to_out." in name)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                           weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=cfg.lr_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_train = scheduler.config.num_train_timesteps
    run = EditRun(cfg, model)
    start = time.time()
    steps = progress_bar(range(1, cfg.steps + 1), desc=f"{cfg.method} {cfg.edit}", unit="step") if progress \
        else range(1, cfg.steps + 1)
    for step in steps:
        idx = torch.randint(0, cfg.n_images, (cfg.batch_size,), generator=gen)
        x0, src, tar = x_pool[idx.to(dev)], [t_src[i] for i in idx], [t_tar[i] for i in idx]
        if cfg.method == "alg1":
            t = torch.randint(0, n_train, (cfg.batch_size,), generator=gen).to(dev)  # Alg. 1, line 3
            noise = torch.randn(x0.shape, generator=gen).to(dev)                      # line 4
            loss = alg1_loss(unet, scheduler, model, clip_model, tok, x0, src, tar, t, noise,
                             cfg.lambda_clip, cfg.lambda_recon)
        elif cfg.method == "markovian":
            t0 = 999 if cfg.interval == "full" else cfg.t0
            loss = markovian_loss(unet, scheduler, model, clip_model, tok, x0, src, tar, t0, cfg.s_inv, cfg.s_gen,
                                  cfg.lambda_clip, cfg.lambda_recon)
        else:
            t_edit = 0 if cfg.interval == "full" else cfg.t_edit
            losses = list(hspace_losses(unet, scheduler, model, clip_model, tok, x0, src, tar, t_edit,
                                        cfg.hspace_steps, cfg.lambda_clip, cfg.lambda_recon))
            loss = torch.stack(losses).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        sched.step()
        run.losses.append((step, loss.item()))
    run.seconds = time.time() - start
    model.eval().requires_grad_(False)
    return run


# ------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------
def check_interval(t_start, t_end) -> tuple:
    """An editing interval [t_end, t_start] within [0, 1000], not reversed."""
    a = _integer("t_start", t_start, low=0, high=1000)
    b = _integer("t_end", t_end, low=0, high=1000)
    if b > a:
        raise ValueError(f"the editing interval is reversed: t_end {b} > t_start {a}; accepted: 0 <= t_end <= "
                         "t_start <= 1000")
    return a, b


@dataclass
class EditTrajectory:
    """One edit's walk and the reconstruction's from the same inverted x_T: x at each timestep (before the step)."""
    timesteps: list                    # the DDIM timesteps walked, T first
    edited: list                       # [(B, C, H, W)] the edited walk's x_t at each timestep, then its x_0 (clamped)
    reconstructed: list                # the same for the reconstruction model alone

    def distance(self) -> torch.Tensor:
        """(len(timesteps) + 1, B): RMS distance per image between the two walks, step by step (Fig. 3)."""
        return torch.stack([(a - b).pow(2).flatten(1).mean(1).sqrt() for a, b in zip(self.edited, self.reconstructed)])


def _interval(cfg, t_start, t_end) -> tuple:
    if t_start is None:
        t_start = cfg.t0 if (cfg.method == "markovian" and cfg.interval == "original") else 1000
    if t_end is None:
        t_end = cfg.t_edit if (cfg.method == "hspace" and cfg.interval == "original") else 0
    return check_interval(t_start, t_end)


def _check_x_T(x_T, x0) -> None:
    if x_T is not None and x_T.shape != x0.shape:
        raise ValueError(f"x_T must have the images' shape {tuple(x0.shape)}, got {tuple(x_T.shape)}")


@torch.no_grad()
def invert(unet, scheduler, base_rect, x0: torch.Tensor, num_inference_steps: int = 50) -> torch.Tensor:
    """The x_T every method's edit starts from: x0 DDIM-inverted by the reconstruction model (toy-ddpm + base_rect).
    Compute it once and pass it to `edit(..., x_T=...)` to edit the same images with several trained edits."""
    n = checks.num_inference_steps(num_inference_steps)
    x0 = check_batch(x0, unet.config.sample_size).to(unet.device)
    return inversion.ddim_invert(rectifier.RectifiedUNet(unet, base_rect, x0, scheduler), scheduler, x0, n).x_T


@torch.no_grad()
def _walk(unet, scheduler, base_rect, run: Optional[EditRun], x0, n: int, t_start: int, t_end: int, generator,
          x_T=None):
    """Yields (t, x_t) along DDIM from the inverted x_T of x0, then (-1, x_0). run None: the reconstruction model."""
    cfg = run.config if run is not None else None
    recon = rectifier.RectifiedUNet(unet, base_rect, x0, scheduler)
    hspace = cfg is not None and cfg.method == "hspace"
    if cfg is not None:
        run.model.to(unet.device)
        edited = HSpaceUNet(unet, run.model) if hspace else rectifier.RectifiedUNet(unet, run.model, x0, scheduler)
    x = inversion.ddim_invert(recon, scheduler, x0, n).x_T if x_T is None else x_T.to(x0.device)
    ddim = sampling.ddim_scheduler(scheduler, inverted=True)          # retracing an inversion: no clipping
    ddim.set_timesteps(n)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    for t in ddim.timesteps:
        ti = int(t)
        yield ti, x
        in_interval = cfg is not None and t_end <= ti <= t_start
        if hspace and in_interval:
            # the asymmetric reverse process: P_t from the shifted eps, the direction from the original eps
            t_prev = ti - ddim.config.num_train_timesteps // n
            a_t = _alpha_bar(scheduler, ti, x)
            a_prev = _alpha_bar(scheduler, t_prev, x) if t_prev >= 0 else torch.ones_like(a_t)
            p = sampling.pred_x0(x, edited(x, ti), a_t)
            x = a_prev.sqrt() * p + (1 - a_prev).sqrt() * unet(x, ti).sample
            continue
        eps = (edited if in_interval else recon)(x, ti)
        eta = 1.0 if (hspace and ti < cfg.t_boost) else 0.0
        noise = torch.randn(x.shape, generator=gen).to(x.device) if eta else None
        x = ddim.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    yield -1, x.clamp(-1, 1)


@torch.no_grad()
def edit(unet, scheduler, base_rect, run: EditRun, x0: torch.Tensor, num_inference_steps: int = 50,
         t_start: Optional[int] = None, t_end: Optional[int] = None,
         generator: Optional[torch.Generator] = None, x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Edit images x0 with a trained EditRun. DDIM (eta = 0) from the x_T of x0 inverted by the reconstruction
    model (toy-ddpm + base_rect; `x_T` if given, from `invert` with the same steps); the edited model acts on
    timesteps in [t_end, t_start] (default: the method's interval: the whole trajectory for Alg. 1 and "full",
    [T, t_0] for markovian, [T, t_edit] for hspace) and the reconstruction model elsewhere. hspace below t_boost
    takes stochastic steps (eta = 1, `generator`)."""
    n = checks.num_inference_steps(num_inference_steps)
    x0 = check_batch(x0, unet.config.sample_size).to(unet.device)
    _check_x_T(x_T, x0)
    t_start, t_end = _interval(run.config, t_start, t_end)
    for _, x in _walk(unet, scheduler, base_rect, run, x0, n, t_start, t_end, generator, x_T):
        pass
    return x.cpu()


@torch.no_grad()
def reconstruct(unet, scheduler, base_rect, x0: torch.Tensor, num_inference_steps: int = 50,
                x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The no-edit baseline every edit starts from: invert x0 and sample it back with the reconstruction model
    (toy-ddpm + base_rect), DDIM eta = 0, as `edit` does outside the edited model's interval."""
    n = checks.num_inference_steps(num_inference_steps)
    x0 = check_batch(x0, unet.config.sample_size).to(unet.device)
    _check_x_T(x_T, x0)
    for _, x in _walk(unet, scheduler, base_rect, None, x0, n, 0, 0, None, x_T):
        pass
    return x.cpu()


@torch.no_grad()
def trajectory(unet, scheduler, base_rect, run: EditRun, x0: torch.Tensor, num_inference_steps: int = 50,
               t_start: Optional[int] = None, t_end: Optional[int] = None,
               generator: Optional[torch.Generator] = None) -> EditTrajectory:
    """`edit`'s walk beside the reconstruction model's walk from the same x_T (the paper's Fig. 3): where the
    edited trajectory leaves the original one, step by step. Arguments as `edit`."""
    n = checks.num_inference_steps(num_inference_steps)
    x0 = check_batch(x0, unet.config.sample_size).to(unet.device)
    t_start, t_end = _interval(run.config, t_start, t_end)
    walk = list(_walk(unet, scheduler, base_rect, run, x0, n, t_start, t_end, generator))
    ref = list(_walk(unet, scheduler, base_rect, None, x0, n, t_start, t_end, None))
    return EditTrajectory([t for t, _ in walk[:-1]], [x.cpu() for _, x in walk], [x.cpu() for _, x in ref])


# ------------------------------------------------------------------------------------------------
# Saving and loading an edit (safetensors only)
# ------------------------------------------------------------------------------------------------
def save_edit(run: EditRun, path, base_rect=None, dtype: torch.dtype = torch.float16) -> None:
    """Write a trained edit as safetensors: for rectifier methods only the parameters that differ from `base_rect`
    (the trained ones), for hspace the whole f(h, t); the config, the base rectifier's fingerprint and a hash of its
    weights ride in the metadata, so the edit loads only onto the base it was trained from."""
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file
    meta = {"config": json.dumps(asdict(run.config)), "losses": json.dumps(run.losses), "seconds": f"{run.seconds:.1f}"}
    if run.config.method == "hspace":
        state = run.model.state_dict()
        meta["channels"] = str(run.model.conv_in.in_channels)
        meta["width"] = str(run.model.conv_in.out_channels)
    else:
        base = dict(base_rect.state_dict())
        state = {k: v for k, v in run.model.state_dict().items() if not torch.equal(v, base[k])}
        meta["base_fingerprint"] = base_rect.config.fingerprint
        meta["base_hash"] = weights_fingerprint(base_rect)
    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path), metadata=meta)


def load_edit(path, base_rect, unet=None) -> EditRun:
    """An EditRun from `save_edit`'s file. A rectifier edit trained on another base rectifier (or for another
    U-Net) is refused."""
    import copy
    import json

    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    if "config" not in meta:
        raise ValueError(f"{path} is not an edit written by diffnb.editing.save_edit (no config in its metadata)")
    cfg = EditTrainConfig(**json.loads(meta["config"]))
    if cfg.method == "hspace":
        model = DeltaH(int(meta["channels"]), width=int(meta["width"]))
        model.load_state_dict(state)
    else:
        same = (meta.get("base_fingerprint"), meta.get("base_hash")) == (base_rect.config.fingerprint,
                                                                         weights_fingerprint(base_rect))
        if not same:
            raise ValueError(f"{path} was trained on another base rectifier (fingerprint "
                             f"{meta.get('base_fingerprint')}, weights {meta.get('base_hash')}); this one is "
                             f"{base_rect.config.fingerprint}, {weights_fingerprint(base_rect)}: load it onto the "
                             "rectifier it was trained from (toy-rectifier as shipped)")
        if unet is not None:
            rectifier.check_unet(unet, base_rect.config)
        model = copy.deepcopy(base_rect)
        missing = [k for k in state if k not in model.state_dict()]
        if missing:
            raise ValueError(f"{path} names parameters the rectifier does not have: {missing[:3]}")
        model.load_state_dict({**model.state_dict(), **state})
    return EditRun(cfg, model.eval().requires_grad_(False), json.loads(meta.get("losses", "[]")),
                   float(meta.get("seconds", 0)))
