"""Model cards: how each toy model was trained and how good it measured. Written by
`python -m diffnb.zoo install <name> <run_dir>` from the run's log and a fresh measurement."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from . import evaluate, training

TRAINERS = {
    "toy-ddpm": (training.DDPMTrainConfig, training.train_ddpm),
    "toy-attr": (training.AttrTrainConfig, training.train_attr),
}


def train(name: str, steps=None, out=None) -> training.TrainResult:
    """Train toy model `name` with its default config (optionally another number of steps) into `out`."""
    config_cls, fn = TRAINERS[name]
    cfg = config_cls() if steps is None else replace(config_cls(), steps=int(steps))
    return fn(cfg, Path(out or Path("runs") / name))


def _header(name: str, run_dir: Path) -> list:
    log = json.loads((run_dir / "train_log.json").read_text())
    steps = log["step"]
    cfg = log["config"]
    return [f"# {name}", "",
            f"Retrain: `python -m diffnb.zoo train {name} --steps {steps}` then "
            f"`python -m diffnb.zoo install {name} runs/{name}`.", "",
            f"- steps: {steps} (batch {cfg['batch_size']}, lr {cfg['lr']}), seed {cfg['seed']}",
            f"- wall time: {log['minutes']:.1f} minutes on {log.get('machine', 'a 2-core CPU')}",
            f"- final training loss: {log['losses'][-1][1]:.4f}" if log.get("losses") else "- final loss: n/a",
            f"- config: `{json.dumps(cfg)}`", ""]


def write_card(name: str, run_dir: Path) -> str:
    """Measure the model in `run_dir` and return its card (markdown)."""
    from safetensors.torch import load_file  # noqa: F401  (the loaders below use safetensors only)
    lines = _header(name, run_dir)
    if name == "toy-attr":
        from .classifiers import AttrConfig, AttributeClassifier
        model = AttributeClassifier(AttrConfig())
        model.load_state_dict({k: v.float() for k, v in load_file(str(run_dir / "model.safetensors")).items()})
        model.eval()
        lines += ["## Measured (python -m diffnb.zoo install)", "", "| attribute | toy (2,000) | photo (2,000) | painting (2,000) |",
                  "| --- | --- | --- | --- |"]
        acc = {d: evaluate.attr_accuracy(model, d).accuracy for d in ("toy", "photo", "painting")}
        for attr in acc["toy"]:
            lines.append(f"| {attr} | {acc['toy'][attr]:.3f} | {acc['photo'][attr]:.3f} | {acc['painting'][attr]:.3f} |")
        lines += ["", "Bars (tests/test_quality.py): every binary attribute >= 0.98 on toy and >= 0.90 on photo.",
                  "Painting is out of domain (like METFACES for FFHQ) and has no bar."]
    elif name == "toy-ddpm":
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

        from .zoo import DiffusionBundle, load
        unet = UNet2DModel.from_pretrained(str(run_dir), use_safetensors=True, torch_dtype=torch.float32).eval()
        ddpm = DDPMScheduler.from_pretrained(str(run_dir), subfolder="scheduler")
        bundle = DiffusionBundle(name, unet, DDIMScheduler.from_config(ddpm.config), ddpm, 32, str(run_dir))
        q = evaluate.sample_quality(evaluate.ddpm_samples(bundle), load("toy-attr").model)
        lines += ["## Measured on 256 DDIM samples (50 steps, eta 0, seed 0), read by toy-attr", "",
                  f"- confident (P > 0.9 or < 0.1) on every binary attribute: {q.confident_all_binary:.3f} (bar 0.90)"]
        lines += [f"- confident on {b}: {v:.3f}" for b, v in q.confident_binary.items()]
        lines += [f"- confident colour ({c}): {v:.3f} (bar 0.90)" for c, v in q.confident_colours.items()]
        lines += [f"- largest gap between sampled and world attribute frequency: {q.max_frequency_gap:.3f} (bar 0.10)", "",
                  "| attribute value | sampled | world |", "| --- | --- | --- |"]
        lines += [f"| {k} | {s:.3f} | {w:.3f} |" for k, (s, w) in q.frequency.items()]
    return "\n".join(lines) + "\n"
