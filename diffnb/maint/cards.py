"""Model cards and the trainers' registry: how each toy model is trained (`TRAINERS`, `train`) and how good it
measured (`write_card`). `python -m diffnb.zoo install <name> <run_dir>` writes a card from the run's log and a
fresh measurement."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from .. import evaluate, toyae, toyclip
from ..rectifier import RectifierTrainConfig as rectifier_config
from ..zoo import load
from . import ae_training, clip_training, t2i_training, training


def _train_t2i(cfg, out_dir, **kwargs):
    return t2i_training.train_t2i(cfg, out_dir, load("toy-clip"), **kwargs)


def _train_rectifier(cfg, out_dir, **kwargs):   # toy-rectifier (notebook 03): over the shipped toy-ddpm
    from .. import rectifier
    b = load("toy-ddpm")
    return rectifier.train(b.unet, b.scheduler, cfg, out_dir, **kwargs)[1]


TRAINERS = {  # name -> (config dataclass, trainer(cfg, out_dir, progress=True[, resume=False]) -> TrainResult)
    "toy-ddpm": (training.DDPMTrainConfig, training.train_ddpm),
    "toy-attr": (training.AttrTrainConfig, training.train_attr),
    "toy-seg": (training.SegTrainConfig, training.train_seg),
    "toy-t2i": (t2i_training.T2ITrainConfig, _train_t2i),
    "toy-clip": (toyclip.ClipTrainConfig, clip_training.train_clip),
    "toy-rectifier": (rectifier_config, _train_rectifier),
    "toy-ae": (toyae.AETrainConfig, ae_training.train_ae),   # issue 19: SDD's frozen encoder and generator
}


def train(name: str, steps=None, out=None, resume: bool = False, **overrides) -> training.TrainResult:
    """Train toy model `name` with its default config (optionally another number of steps, or other config
    fields such as batch_size, device, workers, max_minutes) into `out`.
    resume=True continues a diffusion model's run in `out` (see fit.resume)."""
    if name not in TRAINERS:
        raise ValueError(f"no trainer for {name!r}; trainable: {', '.join(sorted(TRAINERS))}")
    config_cls, fn = TRAINERS[name]
    fields = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(fields) - set(config_cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{name} has no training option {unknown}; its options are "
                         f"{sorted(config_cls.__dataclass_fields__)}")
    if steps is not None:
        fields["steps"] = int(steps)
    cfg = replace(config_cls(), **fields)
    kwargs = {"resume": True} if resume else {}
    return fn(cfg, Path(out or Path("runs") / name), **kwargs)


def _header(name: str, run_dir: Path) -> list:
    log = json.loads((run_dir / "train_log.json").read_text())
    steps = log["step"]
    cfg = log["config"]
    defaults = TRAINERS[name][0]()
    flags = "".join(f" --{k.replace('_', '-')} {cfg[k]}" for k in ("batch_size", "lr", "device", "workers")
                    if k in cfg and cfg[k] != getattr(defaults, k, cfg[k]))
    return [f"# {name}", "",
            f"Retrain: `python -m diffnb.zoo train {name} --steps {steps}{flags}` then "
            f"`python -m diffnb.zoo install {name} runs/{name}`.", "",
            f"- steps: {steps} (batch {cfg['batch_size']}, lr {cfg['lr']}), seed {cfg['seed']}",
            f"- wall time: {log['minutes']:.1f} minutes on {log.get('machine', 'a 2-core CPU')}",
            f"- final training loss: {log['losses'][-1][1]:.4f}" if log.get("losses") else "- final loss: n/a",
            f"- config: `{json.dumps(cfg)}`", ""]


def write_card(name: str, run_dir: Path, force: bool = False) -> str:
    """Measure the model in `run_dir` and return its card (markdown). A toy-t2i that measures below the shipped one
    is refused (ValueError giving both numbers) unless force=True."""
    from safetensors.torch import load_file  # noqa: F401  (the loaders below use safetensors only)
    lines = _header(name, run_dir)
    if name == "toy-attr":
        from ..classifiers import AttrConfig, AttributeClassifier
        model = AttributeClassifier(AttrConfig())
        model.load_state_dict({k: v.float() for k, v in load_file(str(run_dir / "model.safetensors")).items()})
        model.eval()
        lines += ["## Measured (python -m diffnb.zoo install)", "",
                  "| attribute | toy (2,000) | photo (2,000) | painting (2,000) |",
                  "| --- | --- | --- | --- |"]
        acc = {d: evaluate.attr_accuracy(model, d).accuracy for d in ("toy", "photo", "painting")}
        for attr in acc["toy"]:
            lines.append(f"| {attr} | {acc['toy'][attr]:.3f} | {acc['photo'][attr]:.3f} | "
                         f"{acc['painting'][attr]:.3f} |")
        lines += ["", "Bars (tests/test_quality.py): every binary attribute >= 0.98 on toy and >= 0.90 on photo.",
                  "Painting is out of domain (like METFACES for FFHQ) and has no bar."]
    elif name == "toy-seg":
        from ..segmentation import SegConfig, SegmentationNet
        model = SegmentationNet(SegConfig())
        model.load_state_dict({k: v.float() for k, v in load_file(str(run_dir / "model.safetensors")).items()})
        model.eval()
        res = {d: evaluate.seg_miou(model, d) for d in ("toy", "photo", "painting")}
        lines += ["## Measured (python -m diffnb.zoo install), IoU on 1,000 fresh images per domain", "",
                  "| class | toy | photo | painting |", "| --- | --- | --- | --- |"]
        lines += [f"| {c} | {res['toy']['per_class'][c]:.3f} | {res['photo']['per_class'][c]:.3f} | "
                  f"{res['painting']['per_class'][c]:.3f} |" for c in res["toy"]["per_class"]]
        lines += [f"| **mean** | **{res['toy']['mean_iou']:.3f}** | **{res['photo']['mean_iou']:.3f}** | "
                  f"**{res['painting']['mean_iou']:.3f}** |", "",
                  "Bars (tests/test_quality.py): mean IoU >= 0.85 on toy and >= 0.75 on photo."]
    elif name == "toy-ddpm":
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

        from ..zoo import DiffusionBundle
        unet = UNet2DModel.from_pretrained(str(run_dir), use_safetensors=True, torch_dtype=torch.float32,
                                           low_cpu_mem_usage=False).eval()
        ddpm = DDPMScheduler.from_pretrained(str(run_dir), subfolder="scheduler")
        bundle = DiffusionBundle(name, unet, DDIMScheduler.from_config(ddpm.config), ddpm, 32, str(run_dir))
        attr = load("toy-attr").model
        q, q0 = (evaluate.sample_quality(evaluate.ddpm_samples(bundle, eta=eta), attr) for eta in (1.0, 0.0))
        lines += ["## Measured on 256 DDIM samples (50 steps, eta 1, seed 0), read by toy-attr", "",
                  "These are the bars of tests/test_quality.py. The eta 0 column (deterministic DDIM, same seed) is",
                  "for comparison: it reads as confidently but draws the backgrounds less evenly (see the note).", "",
                  f"- confident (P > 0.9 or < 0.1) on every binary attribute: {q.confident_all_binary:.3f} (bar 0.90; "
                  f"eta 0: {q0.confident_all_binary:.3f})"]
        lines += [f"- confident on {b}: {v:.3f}" for b, v in q.confident_binary.items()]
        lines += [f"- confident colour ({c}): {v:.3f} (bar 0.90; eta 0: {q0.confident_colours[c]:.3f})"
                  for c, v in q.confident_colours.items()]
        lines += [f"- largest gap between sampled and world attribute frequency: {q.max_frequency_gap:.3f} (bar 0.10; "
                  f"eta 0: {q0.max_frequency_gap:.3f})", "",
                  "| attribute value | sampled, eta 1 | sampled, eta 0 | world |", "| --- | --- | --- | --- |"]
        lines += [f"| {k} | {s:.3f} | {q0.frequency[k][0]:.3f} | {w:.3f} |" for k, (s, w) in q.frequency.items()]
    elif name == "toy-t2i":
        lines += _t2i_card(run_dir, force)
    if name == "toy-clip":
        lines += _clip_card(run_dir)
    if name == "toy-ae":   # issue 19
        lines += ae_training.card_lines(run_dir)
    if name == "toy-rectifier":   # issue 17: Table 1 in miniature, and table1.safetensors beside the weights
        from ..reconbench import card_lines
        lines += card_lines(run_dir)
    return "\n".join(lines) + "\n"


def _clip_card(run_dir: Path) -> list:
    """The toy-clip section of its card: the bars of tests/test_quality.py, measured on toy and photo images."""
    from transformers import CLIPModel, PreTrainedTokenizerFast
    model = CLIPModel.from_pretrained(str(run_dir), use_safetensors=True, dtype=torch.float32).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(run_dir))
    n_params = sum(p.numel() for p in model.parameters())
    q = {d: evaluate.clip_quality(model, tokenizer, domain=d) for d in ("toy", "photo")}
    lines = [f"- parameters: {n_params:,} (text {model.config.text_config.num_hidden_layers} x "
             f"{model.config.text_config.hidden_size}, vision {model.config.vision_config.num_hidden_layers} x "
             f"{model.config.vision_config.hidden_size}, patch {model.config.vision_config.patch_size}, "
             f"projection {model.config.projection_dim})", "",
             "## Measured (python -m diffnb.zoo install)", "",
             "| measure | toy | photo | bar (toy) |", "| --- | --- | --- | --- |",
             f"| caption -> image top-1 among 64 random pairs (8 groups) | {q['toy'].retrieval_top1:.3f} | "
             f"{q['photo'].retrieval_top1:.3f} | >= 0.80 |"]
    for b in q["toy"].zero_shot:
        yes, no = evaluate.zero_shot_prompts("cat", b)
        lines.append(f"| zero-shot {b} (e.g. '{yes}' vs '{no}', true subject, 512 images) | "
                     f"{q['toy'].zero_shot[b]:.3f} | "
                     f"{q['photo'].zero_shot[b]:.3f} | >= 0.90 |")
    for b in q["toy"].directional:
        bar = ">= 0.95" if b == "glasses" else "none"
        lines.append(f"| directional similarity > 0, edit {b} (256 pairs; mean "
                     f"{q['toy'].directional_mean[b]:.2f}) | {q['toy'].directional[b]:.3f} | "
                     f"{q['photo'].directional[b]:.3f} | {bar} |")
    lines += ["", "Directional similarity is cos(E_I(b) - E_I(a), E_T(b) - E_T(a)) for the same world image "
              "without (a) and with (b) the attribute, against the two full captions.",
              "Photo images are never seen in training (only toy images with photometric augmentation); no bar."]
    return lines


def t2i_quality_pair(bundle) -> tuple:
    """(eta 1, eta 0) T2IQuality of a toy-t2i bundle on the bars' 256 captions (50 DDIM steps, guidance 5)."""
    attr, clip = load("toy-attr").model, load("toy-clip")
    return tuple(evaluate.t2i_quality(bundle, attr, clip, eta=eta) for eta in (1.0, 0.0))


def check_not_worse(candidate: tuple, shipped: tuple) -> None:
    """Refuse a toy-t2i whose stated-attribute agreement is below the shipped model's at eta 1 or eta 0; the message
    gives both numbers. candidate, shipped: (eta 1, eta 0) T2IQuality pairs."""
    worse = [f"eta {eta}: {c.stated_agree:.3f} against the shipped {s.stated_agree:.3f}"
             for eta, c, s in zip((1, 0), candidate, shipped) if c.stated_agree < s.stated_agree]
    if worse:
        raise ValueError("refused: this toy-t2i measures below the shipped one on the stated-attribute bar ("
                         + "; ".join(worse) + "); pass --force to install it anyway")


def _t2i_card(run_dir: Path, force: bool = False) -> list:
    """toy-t2i's bars: 256 random partial captions, 50 DDIM steps, guidance 5. Unless `force`, a candidate that
    measures below the shipped model is refused first (`check_not_worse`)."""
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

    from ..t2i import T2IBundle, text_tower
    from .t2i_training import check_text_probe
    clip = load("toy-clip")
    log = json.loads((run_dir / "train_log.json").read_text())
    if "text_probe" in log:   # runs from before the probe existed carry none
        check_text_probe(log["text_probe"], text_tower(clip.model), clip.tokenizer)
    unet = UNet2DConditionModel.from_pretrained(str(run_dir), use_safetensors=True, torch_dtype=torch.float32,
                                                low_cpu_mem_usage=False).eval()
    ddpm = DDPMScheduler.from_pretrained(str(run_dir), subfolder="scheduler")
    bundle = T2IBundle("toy-t2i", unet, text_tower(clip.model), clip.tokenizer, DDIMScheduler.from_config(ddpm.config),
                       None, 32, str(run_dir))
    q, q0 = t2i_quality_pair(bundle)
    if not force:
        from ..zoo import ManifestError
        try:
            shipped = load("toy-t2i")
        except (FileNotFoundError, ManifestError, KeyError):   # nothing shipped yet: nothing to compare with
            shipped = None
        if shipped is not None:
            check_not_worse((q, q0), t2i_quality_pair(shipped))
    return ["## Measured on 256 random partial captions (50 DDIM steps, guidance 5, eta 1, seed 40000)", "",
            "These are the bars of tests/test_quality.py, measured with eta 1 as toy-ddpm's are. The eta 0 numbers",
            "(deterministic DDIM, same captions and seed) are for comparison.", "",
            f"- toy-attr agrees with every attribute the caption states: {q.stated_agree:.3f} (bar 0.85; "
            f"eta 0: {q0.stated_agree:.3f})",
            f"- subject right: {q.subject_right:.3f} (bar 0.95; eta 0: {q0.subject_right:.3f})",
            f"- toy-clip score with its caption beats a shuffled caption: {q.clip_beats_shuffled:.3f} (bar 0.90; "
            f"eta 0: {q0.clip_beats_shuffled:.3f})", "",
            "| stated attribute | captions stating it | toy-attr agrees, eta 1 | eta 0 |",
            "| --- | --- | --- | --- |"] + \
           [f"| {k} | {n} | {a:.3f} | {q0.per_attribute[k][0]:.3f} |" for k, (a, n) in q.per_attribute.items()] + \
           ["", *editability_lines(evaluate.t2i_editability(bundle, load("toy-attr").model))]


def editability_lines(e) -> list:
    """The card's editability section (issue 14's bar: Prompt-to-Prompt word swaps on generated images at eta 0)."""
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in e.per_kind.items())
    return ["## Editability (Prompt-to-Prompt word swaps on generated images, DDIM eta 0, notebook 06's tau)", "",
            f"- success on {e.success:.3f} of {e.n} caption pairs (bar 0.70); per kind: {kinds}",
            f"- the unedited sample shows the source on {e.source_right:.3f}, the edit the target on "
            f"{e.target_right:.3f}"]
