"""The one training loop of the toy zoo, and what every trainer shares: world batches drawn ahead, the
photometric augmentation, checkpoints that resume, a time budget and the training log.

    start = resume(out_dir, model, ema) if resume_run else 0      # the step a resumed run continues after
    result = fit("toy-ddpm", model, cfg, out_dir, loss_at, optimizer=opt, lr_scheduler=sched, ema=ema,
                 start=start, save_weights=lambda step: save_half(ema, out_dir))

`cfg` is the trainer's dataclass config; fit reads steps, log_every, save_every, warmup, ema_decay and max_minutes
from it (the last three when present). `loss_at(step)` draws the step's batch and returns its scalar loss.
Checkpoints: `save_weights(step)` writes the shipped weights; with an EMA copy, resume_state.safetensors keeps the
fp32 weights and the EMA (model.* and ema.*, the step in its metadata); train_log.json keeps the config, the step,
the minutes, the loss curve, the machine and `extra_log`.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import world
from .progress import bar as progress_bar


@dataclass
class TrainResult:
    """What a training run did."""
    name: str
    steps: int
    minutes: float
    final_loss: float                 # mean loss over the last `log_every` steps
    out_dir: str
    losses: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Checkpoints and the log
# ------------------------------------------------------------------------------------------------
def prepare(cfg, out_dir) -> Path:
    """Threads as cfg.num_threads says (0: torch's default) and the run folder, created."""
    if getattr(cfg, "num_threads", 0):
        torch.set_num_threads(cfg.num_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def out_of_time(cfg, t_start: float) -> bool:
    """True once a run with cfg.max_minutes > 0 has used its wall time (measured from this session's start)."""
    minutes = getattr(cfg, "max_minutes", 0.0)
    return bool(minutes) and time.time() - t_start > 60 * minutes


def machine(cfg) -> str:
    import platform
    if getattr(cfg, "device", "cpu").startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} GPU ({cfg.workers} data workers)"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def write_log(out_dir: Path, cfg, step: int, t0: float, losses: list, extra: dict | None = None):
    """train_log.json: what the model card reports (config, steps, minutes, loss curve, machine, and `extra`)."""
    (Path(out_dir) / "train_log.json").write_text(json.dumps(
        {"config": asdict(cfg), "step": step, "minutes": (time.time() - t0) / 60, "losses": losses,
         "machine": machine(cfg), **(extra or {})}))


def log_loss(window: list, loss: float, losses: list, step: int, log_every: int, t0: float, progress: bool,
             note: Optional[Callable[[], str]] = None) -> list:
    """Add a step's loss to the window; every log_every steps append its mean to `losses` (and print it, with
    `note()` after the loss). Returns the window to keep using."""
    window.append(loss)
    if step % log_every:
        return window
    losses.append((step, sum(window) / len(window)))
    if progress:
        extra = f" {note()}" if note is not None else ""
        print(f"step {step} loss {losses[-1][1]:.4f}{extra} min {(time.time() - t0) / 60:.1f}", flush=True)
    return []


def save_half(model, out_dir: Path):
    """The shipped weights: a float16 copy of `model` through its save_pretrained (safetensors)."""
    half = copy.deepcopy(model).cpu().half()
    half.save_pretrained(out_dir, safe_serialization=True)


def save_state(out_dir: Path, step: int, model, ema) -> None:
    """Everything needed to resume a run (fp32 weights and EMA; the optimiser restarts with a short warm-up)."""
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    save_file(tensors, str(Path(out_dir) / "resume_state.safetensors"), metadata={"step": str(step)})


def resume(out_dir, model, ema=None) -> int:
    """Resume from out_dir/resume_state.safetensors; failing that, from a shipped model folder copied into out_dir
    (its weights, the EMA weights of a model trained with one, as the start of both networks, the step count from
    its train_log.json). A model trained without EMA (ema=None, toy-ae) saves fp32 weights at every checkpoint, so
    its run folder resumes from them. Returns the step (0 when there is nothing to resume)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    out_dir = Path(out_dir)
    path = out_dir / "resume_state.safetensors"
    if path.is_file() and ema is not None:
        with safe_open(str(path), "pt") as f:
            step = int(f.metadata()["step"])
            model.load_state_dict({k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")})
            ema.load_state_dict({k[4:]: f.get_tensor(k) for k in f.keys() if k.startswith("ema.")})
        return step
    weights = out_dir / "diffusion_pytorch_model.safetensors"
    if weights.is_file() and (out_dir / "train_log.json").is_file():
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        model.load_state_dict(state)
        if ema is not None:
            ema.load_state_dict(state)
        return int(json.loads((out_dir / "train_log.json").read_text())["step"])
    return 0


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------
def fit(name: str, model: torch.nn.Module, cfg, out_dir, loss_at: Callable[[int], torch.Tensor], *,
        optimizer, lr_scheduler=None, ema: Optional[torch.nn.Module] = None, start: int = 0,
        save_weights: Callable[[int], None], clip_grad: Optional[float] = 1.0,
        after_step: Optional[Callable[[], None]] = None, extra_log: Optional[dict] = None,
        log_note: Optional[Callable[[], str]] = None, progress: bool = True) -> TrainResult:
    """Steps start + 1 .. cfg.steps of `loss_at(step)`: backward, gradient clipping (clip_grad, None for none),
    the optimiser and learning-rate steps, `after_step()`, the EMA update (decay cfg.ema_decay; 0, a copy, during
    a fresh run's warm-up), the loss log, and a checkpoint every cfg.save_every steps and at the end. The run ends
    after cfg.steps or once cfg.max_minutes have passed in this session (then it saves first). A resumed run
    (start > 0) continues the loss curve and the minutes of out_dir/train_log.json."""
    out_dir = Path(out_dir)
    t0, losses, window = time.time(), [], []
    t_start = time.time()
    if start and (out_dir / "train_log.json").is_file():
        prev = json.loads((out_dir / "train_log.json").read_text())
        losses, t0 = [tuple(x) for x in prev["losses"]], time.time() - 60 * prev["minutes"]
    step = start
    steps = progress_bar(range(start + 1, cfg.steps + 1), desc=f"training {Path(out_dir).name}", unit="step")
    for step in steps:
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        if after_step is not None:
            after_step()
        if ema is not None:
            ema_update(ema, model, cfg.ema_decay if step > cfg.warmup or start else 0.0)
        window = log_loss(window, loss.item(), losses, step, cfg.log_every, t0, progress, log_note)
        if losses and losses[-1][0] == step:
            steps.set_postfix(loss=f"{losses[-1][1]:.4f}", refresh=False)
        done = step == cfg.steps or out_of_time(cfg, t_start)
        if step % cfg.save_every == 0 or done:
            save_weights(step)
            if ema is not None:
                save_state(out_dir, step, model, ema)
            write_log(out_dir, cfg, step, t0, losses, extra_log)
        if done:
            break
    return TrainResult(name, step, (time.time() - t0) / 60, losses[-1][1] if losses else float("nan"),
                       str(out_dir), losses)
