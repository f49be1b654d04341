"""Training the toy zoo on the toy world. `python -m diffnb.zoo train <name>` calls these.

Each trainer takes a dataclass config, logs to stdout, writes checkpoints into `out_dir` as it goes
(so a long run that is stopped early still leaves a usable model) and returns a small result dataclass.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import world


@dataclass
class DDPMTrainConfig:
    """toy-ddpm: an unconditional diffusers UNet2DModel on `toy` world images."""
    steps: int = 16000                # optimiser steps
    batch_size: int = 32
    lr: float = 4e-4                  # AdamW, constant after warm-up
    warmup: int = 500
    ema_decay: float = 0.999          # the shipped weights are the EMA weights
    seed: int = 0
    block_out_channels: tuple = (32, 64, 128)
    layers_per_block: int = 1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"     # as google/ddpm-celebahq-256
    save_every: int = 500
    log_every: int = 50
    num_threads: int = 0              # 0: leave torch's default
    device: str = "cpu"               # "cuda" on a GPU: same loop, noise still drawn on the CPU generator
    workers: int = 0                  # processes drawing world batches ahead (0: in the training process)
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


@dataclass
class TrainResult:
    """What a training run did."""
    name: str
    steps: int
    minutes: float
    final_loss: float                 # mean loss over the last `log_every` steps
    out_dir: str
    losses: list = field(default_factory=list)


class _WorldBatches(torch.utils.data.IterableDataset):
    """World batches for a DataLoader: worker i of w draws batches k = i, i + w, i + 2w, ... of `world.stream`,
    and the loader hands them back in order k = 0, 1, 2, ..., so any number of workers yields the same data."""

    def __init__(self, batch_size: int, seed: int, workers: int):
        self.batch_size, self.seed, self.workers = batch_size, seed, max(1, workers)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        i = info.id if info is not None else 0
        k = i
        while True:
            yield world.sample(self.batch_size, seed=self.seed * 1_000_003 + k)
            k += self.workers


def batches(batch_size: int, seed: int, workers: int = 0):
    """An endless iterator of WorldBatches, equal to `world.stream(batch_size, seed)`, drawn by `workers`
    background processes (0: in this process)."""
    if workers <= 0:
        return world.stream(batch_size, seed=seed)
    loader = torch.utils.data.DataLoader(_WorldBatches(batch_size, seed, workers), batch_size=None,
                                         num_workers=workers, prefetch_factor=8, persistent_workers=True)
    return iter(loader)


def out_of_time(cfg, t_start: float) -> bool:
    """True once a run with cfg.max_minutes > 0 has used its wall time (measured from this session's start)."""
    return bool(cfg.max_minutes) and time.time() - t_start > 60 * cfg.max_minutes


def ddpm_unet(cfg: DDPMTrainConfig):
    from diffusers import UNet2DModel
    return UNet2DModel(
        sample_size=world.SIZE, in_channels=3, out_channels=3,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=16, attention_head_dim=32)


def ddpm_scheduler(cfg: DDPMTrainConfig):
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         clip_sample=True, prediction_type="epsilon")


@torch.no_grad()
def _ema_update(ema, model, decay):
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def _write_log(out_dir: Path, cfg, step: int, t0: float, losses: list, extra: dict | None = None):
    """train_log.json: what the model card reports (config, steps, minutes, loss curve, machine, and `extra`)."""
    (out_dir / "train_log.json").write_text(json.dumps(
        {"config": asdict(cfg), "step": step, "minutes": (time.time() - t0) / 60, "losses": losses,
         "machine": _machine(cfg), **(extra or {})}))


def _machine(cfg) -> str:
    import platform
    if getattr(cfg, "device", "cpu").startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} GPU ({cfg.workers} data workers)"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def _log_loss(window: list, loss: float, losses: list, step: int, log_every: int, t0: float, progress: bool) -> list:
    """Add a step's loss to the window; every log_every steps append its mean to `losses` (and print it).
    Returns the window to keep using."""
    window.append(loss)
    if step % log_every:
        return window
    losses.append((step, sum(window) / len(window)))
    if progress:
        print(f"step {step} loss {losses[-1][1]:.4f} min {(time.time() - t0) / 60:.1f}", flush=True)
    return []


def _save_half(model, out_dir: Path):
    half = copy.deepcopy(model).cpu().half()
    half.save_pretrained(out_dir, safe_serialization=True)


def _save_state(out_dir: Path, step: int, model, ema) -> None:
    """Everything needed to resume a run (fp32 weights and EMA; the optimiser restarts with a short warm-up)."""
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    save_file(tensors, str(out_dir / "resume_state.safetensors"), metadata={"step": str(step)})


def _load_state(out_dir: Path, model, ema) -> int:
    """Resume from out_dir/resume_state.safetensors; failing that, from a shipped model folder copied into out_dir
    (EMA weights as the start of both networks, the step count from its train_log.json). Returns the step."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = out_dir / "resume_state.safetensors"
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            step = int(f.metadata()["step"])
            model.load_state_dict({k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")})
            ema.load_state_dict({k[4:]: f.get_tensor(k) for k in f.keys() if k.startswith("ema.")})
        return step
    weights = out_dir / "diffusion_pytorch_model.safetensors"
    if weights.is_file() and (out_dir / "train_log.json").is_file():
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        model.load_state_dict(state)
        ema.load_state_dict(state)
        return int(json.loads((out_dir / "train_log.json").read_text())["step"])
    return 0


def train_ddpm(cfg: DDPMTrainConfig, out_dir, progress: bool = True, resume: bool = False) -> TrainResult:
    """Train toy-ddpm with the noise-prediction loss ||eps - eps_theta(x_t, t)||^2 (DDPM, Ho et al.).
    With resume=True a run continues from out_dir/resume_state.safetensors (written at every save)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    unet, scheduler = ddpm_unet(cfg), ddpm_scheduler(cfg)
    ema = copy.deepcopy(unet).requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    scheduler.save_pretrained(out_dir / "scheduler")
    start = _load_state(out_dir, unet, ema) if resume else 0
    if start:  # fresh optimiser moments: warm up again, and keep the data stream moving on
        gen.manual_seed(cfg.seed + start)
    data = batches(cfg.batch_size, cfg.seed + 1000 + start, cfg.workers)  # workers start before CUDA does
    unet.to(dev), ema.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (200 if start else cfg.warmup)))
    t0, losses, window = time.time(), [], []
    t_start = time.time()
    if start and (out_dir / "train_log.json").is_file():
        prev = json.loads((out_dir / "train_log.json").read_text())
        losses, t0 = [tuple(x) for x in prev["losses"]], time.time() - 60 * prev["minutes"]
    for step in range(start + 1, cfg.steps + 1):
        x0 = next(data).images
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (x0.shape[0],), generator=gen)
        x0, noise, t = x0.to(dev, non_blocking=True), noise.to(dev, non_blocking=True), t.to(dev)
        x_t = scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(x_t, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        _ema_update(ema, unet, cfg.ema_decay if step > cfg.warmup or start else 0.0)
        window = _log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress)
        done = step == cfg.steps or out_of_time(cfg, t_start)
        if step % cfg.save_every == 0 or done:
            _save_half(ema, out_dir)
            _save_state(out_dir, step, unet, ema)
            _write_log(out_dir, cfg, step, t0, losses)
        if done:
            break
    return TrainResult("toy-ddpm", step, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                       str(out_dir), losses)


@dataclass
class AttrTrainConfig:
    """toy-attr: the attribute classifier, trained on `toy` images with generic augmentations
    (noise, colour gain, lighting ramps, blur) so that it also reads `photo` images it never saw."""
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-3                  # AdamW with cosine decay
    seed: int = 0
    save_every: int = 500
    log_every: int = 100
    num_threads: int = 0


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Generic photometric augmentation of (B, 3, H, W) images in [-1, 1]."""
    B, _, H, W = x.shape
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    x = (x + 1) / 2
    x = x * (0.8 + 0.4 * u(B, 3, 1, 1)) + 0.1 * (u(B, 1, 1, 1) - 0.5)                    # gain and offset
    ramp = torch.linspace(-1, 1, W).view(1, 1, 1, W) * (u(B, 1, 1, 1) - 0.5) \
        + torch.linspace(-1, 1, H).view(1, 1, H, 1) * (u(B, 1, 1, 1) - 0.5)
    x = x * (1 + 0.8 * ramp)                                                            # lighting ramp
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    k = u(B, 1, 1, 1) * 0.8
    x = (1 - k) * x + k * blur                                                          # blur
    x = x + torch.randn(x.shape, generator=gen) * 0.08 * u(B, 1, 1, 1)                  # noise
    return (x.clamp(0, 1) * 2 - 1)


def _fit_classifier(name: str, model, config: dict, batch_loss, cfg, out_dir, data_seed: int,
                    progress: bool = True) -> TrainResult:
    """The loop toy-attr and toy-seg share: AdamW with one-cycle, augmented world batches, fp16 safetensors.
    batch_loss(model, augmented images, batch) -> scalar loss."""
    from safetensors.torch import save_file
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = world.stream(cfg.batch_size, seed=cfg.seed + data_seed)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    t0, losses, window = time.time(), [], []
    for step in range(1, cfg.steps + 1):
        batch = next(data)
        loss = batch_loss(model, augment(batch.images, gen), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window = _log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_file({k: v.half().contiguous() for k, v in model.state_dict().items()},
                      str(out_dir / "model.safetensors"))
            _write_log(out_dir, cfg, step, t0, losses)
    return TrainResult(name, cfg.steps, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                       str(out_dir), losses)


def train_attr(cfg: AttrTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-attr with BCE + cross-entropy (classifiers.attribute_loss)."""
    from .classifiers import AttrConfig, AttributeClassifier, attribute_loss, config_dict
    torch.manual_seed(cfg.seed)
    model = AttributeClassifier(AttrConfig())
    return _fit_classifier("toy-attr", model, config_dict(model.config),
                           lambda m, x, batch: attribute_loss(m(x), world.encode_attributes(batch.attributes)),
                           cfg, out_dir, data_seed=2000, progress=progress)


@dataclass
class SegTrainConfig:
    """toy-seg: the segmentation network, trained on `toy` images and their masks with the same generic
    augmentations as toy-attr."""
    steps: int = 2500
    batch_size: int = 32
    lr: float = 3e-3                  # AdamW, one-cycle
    seed: int = 0
    save_every: int = 500
    log_every: int = 100
    num_threads: int = 0


def train_seg(cfg: SegTrainConfig, out_dir, progress: bool = True) -> TrainResult:
    """Train toy-seg with per-pixel cross-entropy against the world's masks."""
    from .segmentation import SegConfig, SegmentationNet, config_dict
    torch.manual_seed(cfg.seed)
    model = SegmentationNet(SegConfig())
    return _fit_classifier("toy-seg", model, config_dict(model.config),
                           lambda m, x, batch: F.cross_entropy(m(x), batch.masks),
                           cfg, out_dir, data_seed=3000, progress=progress)
