"""Table 2 of StyleDiffusion in miniature: real-image text editing measured three ways.

- structure distance (Tumanyan et al. 2022): the mean squared difference between the self-similarity matrices
  (cosine between every pair of positions) of deep features of the source and the edited image. Tumanyan et
  al. use DINO-ViT keys; here the features are toy-attr's 16x16 block (named in every table). Lower keeps
  the layout better.
- NS-LPIPS: the perceptual distance outside the edited region, taken from the source's cross-attention map
  of the edited word during DDIM inversion (min-max normalised, binarised at `threshold`); here the toy
  perceptual metric (LPIPS's formula over toy-attr's trunk, `metrics.toy_lpips`) in its spatial form.
  Lower leaves the rest of the image alone.
- CLIP score: toy-clip's cosine between the edited image and the target caption. Higher follows the text.

    pairs = edit_pairs(n_per_kind=10)                    # colour, attribute and subject swaps of photo images
    rows = run_methods(bundle, pairs, methods=("ddim", "sdedit", "p2p", "p2plus"))
    table = summarise(rows)                              # {method: {kind: (structure, ns_lpips, clip)}}
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import attention, attention_control, checks, inversion, t2i, toyclip, world

KINDS = ("colour", "attribute", "subject")
METHODS = ("ddim", "sdedit", "p2p", "p2plus")
METHOD_NAMES = {"source": "unedited source", "ddim": "DDIM inversion + word swap", "sdedit": "SDEdit",
                "p2p": "Null-text + P2P", "p2plus": "Null-text + P2Plus", "stylediffusion": "StyleDiffusion + P2Plus"}
# StyleDiffusion Table 2 (Stable Diffusion, their edit set): structure distance, NS-LPIPS, CLIP score (as a
# fraction). Its "Null-text" row is null-text inversion + P2P; "Ours" is StyleDiffusion + P2Plus; it has no
# row for null-text + P2Plus, and no SDEdit strength is stated. MasaCtrl: 0.039 / 0.2259 / 0.804.
PAPER_TABLE2 = {"source": (None, None, None), "ddim": (0.092, 0.4131, 0.819),
                "sdedit": (0.046, 0.2473, 0.780), "p2p": (0.027, 0.1480, 0.752),
                "p2plus": (None, None, None), "stylediffusion": (0.026, 0.1165, 0.779)}


@dataclass
class EditPair:
    """A real (photo) image, its caption, and an edited caption that swaps one thing."""
    kind: str                      # "colour", "attribute" or "subject"
    image: torch.Tensor            # (3, 32, 32) in [-1, 1]
    source: str                    # caption of the image
    target: str                    # the edit
    word: str                      # the edited word of the source caption (its map is the edited region)
    attributes: object = None      # world.Attributes of the image

    @property
    def target_word(self) -> str:
        """The word that replaces `word` in the target caption."""
        return self.target.split()[self.source.split().index(self.word)]


def _swap(words: list, old: str, new: str) -> list:
    return [new if w == old else w for w in words]


def edit_pairs(n_per_kind: int = 10, seed: int = 0, domain: str = "photo", partial: bool = False) -> list:
    """n_per_kind pairs of each kind, from fresh world images (deterministic from seed):
    colour swaps (hair or background colour), attribute swaps (smiling <-> serious, open <-> closed eyes),
    subject swaps (person / cat / robot, with the subject's own words for hair and skin).
    partial: the captions name only the subject and the edited attribute ("a cat on a blue background" ->
    "a cat on a red background"), the captions that miss most of the image of StyleDiffusion's Fig. 3."""
    n_per_kind = checks.count("n_per_kind", n_per_kind)
    if not isinstance(partial, bool):
        raise ValueError(f"partial must be True or False, got {partial!r}")
    droppable = [n for n in world.ATTRIBUTE_NAMES if n != "subject"]
    batch = world.sample(3 * n_per_kind, seed=seed, domain=domain)
    rng = np.random.default_rng(seed)
    pairs = []
    for k, (img, a) in enumerate(zip(batch.images, batch.attributes)):
        kind = KINDS[k // n_per_kind]
        edited = {"colour": "hair" if k % 2 == 0 else "background",
                  "attribute": "smiling" if k % 2 == 0 else "eyes_open", "subject": None}[kind]
        drop = [n for n in droppable if n != edited] if partial else []
        src = world.caption(a, drop=drop)
        words = src.split()
        if kind == "colour":
            if k % 2 == 0:
                old = a.hair
                new = rng.choice([c for c in world.PALETTES["hair"] if c != old])
            else:
                old = a.background
                new = rng.choice([c for c in world.PALETTES["background"] if c != old])
            tgt = " ".join(_swap(words, old, str(new)))
        elif kind == "attribute":
            if k % 2 == 0:
                old, new = ("smiling", "serious") if a.smiling else ("serious", "smiling")
            else:
                old, new = ("open", "closed") if a.eyes_open else ("closed", "open")
            tgt = " ".join(_swap(words, old, new))
        else:
            old = a.subject
            new = str(rng.choice([s for s in world.SUBJECTS if s != old]))
            b = world.Attributes(**{**a.__dict__, "subject": new})
            tgt = world.caption(b, drop=drop)
        pairs.append(EditPair(kind, img, src, tgt, old, a))
    return pairs


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def self_similarity(trunk, images: torch.Tensor, layer: int = 1) -> torch.Tensor:
    """(B, N, N) cosine similarity between every pair of positions of trunk.features(x)[layer]."""
    f = trunk.features(images)[layer].flatten(2).transpose(1, 2)          # (B, N, C)
    f = F.normalize(f, dim=-1)
    return f @ f.transpose(1, 2)


def structure_distance(trunk, a: torch.Tensor, b: torch.Tensor, layer: int = 1) -> torch.Tensor:
    """(B,) mean squared difference of self-similarity matrices (Tumanyan et al., on a toy trunk)."""
    return (self_similarity(trunk, a, layer) - self_similarity(trunk, b, layer)).pow(2).mean((1, 2))


@torch.no_grad()
def ns_lpips(metric, a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) perceptual distance outside `region` (B, 1, H, W in [0, 1]): the spatial LPIPS map weighted by
    1 - region, averaged over the non-selected pixels."""
    module = metric.module
    spatial = module.spatial
    module.spatial = True
    try:
        d = module(a, b)                                                  # (B, 1, H, W)
    finally:
        module.spatial = spatial
    keep = 1 - region
    return (d * keep).flatten(1).sum(1) / keep.flatten(1).sum(1).clamp_min(1.0)


def changed(source: str, target: str) -> dict:
    """{attribute: (source value, target value)} for what a caption swap changes (world.parse_caption)."""
    a, b = world.parse_caption(source), world.parse_caption(target)
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


def reads(attr_model, images: torch.Tensor, captions, others) -> torch.Tensor:
    """(B,) bool: toy-attr reads in image i the value that captions[i] states for every attribute in which
    captions[i] and others[i] differ (an attribute a caption does not state reads as absent, e.g. no glasses).
    reads(edits, targets, sources) is edit success; reads(sources, sources, targets) checks the unedited image."""
    captions, others = toyclip._as_prompts(captions), toyclip._as_prompts(others)
    if not (len(captions) == len(others) == len(images)):
        raise ValueError(f"give one caption and one other caption per image: {len(images)} images, "
                         f"{len(captions)} captions, {len(others)} others")
    read = attr_model.predict(images).attributes()
    out = []
    for r, c, o in zip(read, captions, others):
        want = {k: v for k, (v, _) in changed(c, o).items()}
        want = {k: (False if v is None and k in world.BINARY else v) for k, v in want.items()}
        out.append(all(getattr(r, k) == v for k, v in want.items() if v is not None))
    return torch.tensor(out)


# toy-seg's classes that show each attribute a pair can swap (the part of the image the edited word names)
ATTRIBUTE_CLASSES = {"hair": ("hair",), "background": ("background",), "smiling": ("mouth",),
                     "eyes_open": ("left_eye", "right_eye"), "glasses": ("glasses",), "hat": ("hat",),
                     "subject": tuple(c for c in world.MASK_CLASSES if c != "background")}


def attribute_regions(seg_model, pairs) -> torch.Tensor:
    """(n_pairs, 1, H, W) {0, 1}: toy-seg's region of the attribute each pair swaps, on the source image."""
    labels = seg_model.predict(_images(pairs))
    out = []
    for p, lab in zip(pairs, labels):
        names = list(changed(p.source, p.target))
        name = "subject" if "subject" in names or not names else names[0]
        ids = [world.MASK_CLASSES.index(c) for c in ATTRIBUTE_CLASSES[name]]
        out.append(torch.isin(lab, torch.tensor(ids)).float())
    return torch.stack(out).unsqueeze(1)


def region_overlap(regions: torch.Tensor, reference: torch.Tensor) -> dict:
    """Per pair: coverage |R & S| / |S| (how much of the reference part S the region R covers), precision
    |R & S| / |R| and IoU, each (B,) (1 where the denominator is empty)."""
    r, s = regions.flatten(1) > 0.5, reference.flatten(1) > 0.5
    inter, union = (r & s).sum(1).float(), (r | s).sum(1).float()
    ratio = lambda a, b: torch.where(b > 0, a / b.clamp_min(1), torch.ones_like(a))  # noqa: E731
    return {"coverage": ratio(inter, s.sum(1).float()), "precision": ratio(inter, r.sum(1).float()),
            "iou": ratio(inter, union)}


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    method: str
    edited: torch.Tensor           # (n_pairs, 3, H, W)
    reconstruction: Optional[torch.Tensor] = None
    seconds: float = 0.0


@dataclass
class EditRun:
    """Every method's edits of the same pairs, the regions, and the shared inversions."""
    pairs: list
    results: dict                  # method -> MethodResult
    regions: torch.Tensor          # (n_pairs, 1, H, W) binarised edited-word regions
    settings: dict = field(default_factory=dict)
    null_text: object = None       # the shared null-text inversion (inversion.InversionResult), when one ran


def _images(pairs) -> torch.Tensor:
    return torch.stack([p.image for p in pairs])


def word_regions(bundle, pairs, num_inference_steps: int, threshold: float = 0.5):
    """DDIM-invert the images under their captions (guidance 1) while recording attention
    (`attention_control.invert_recording`); return the inversion and each edited word's cross-attention region
    (averaged over steps and 16x16 layers, upsampled, `attention.binarise`d, as local blending thresholds) at
    image size."""
    images, prompts = _images(pairs), [p.source for p in pairs]
    inv, store = attention_control.invert_recording(bundle, images, prompts, num_inference_steps)
    maps = store.maps(16)
    region = torch.stack([maps[i, :, :, attention.token_index(bundle.tokenizer, p.source, p.word)].sum(-1)
                          for i, p in enumerate(pairs)]).unsqueeze(1)
    region = F.interpolate(region, size=(bundle.image_size, bundle.image_size), mode="bilinear", align_corners=False)
    return inv, attention.binarise(region, threshold)


def sdedit(bundle, images: torch.Tensor, prompts, strength: float = 0.5, guidance_scale: float = 5.0,
           num_inference_steps: int = 25, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022), the Table 2 row: `t2i.sdedit` (noise the image to t = strength * T, then
    denoise with the target prompt: DDIM, eta 0, guidance). The checks are t2i.sdedit's, made before any work."""
    return t2i.sdedit(bundle, images, prompts, strength, guidance_scale, num_inference_steps, generator)


@torch.no_grad()
def ddim_word_swap(bundle, inv, prompts, guidance_scale: float = 5.0) -> torch.Tensor:
    """Sample from a guidance-1 DDIM inversion's x_T with the target prompt and guidance (no attention control)."""
    if not isinstance(inv, inversion.InversionResult):
        raise TypeError(f"inv must be an inversion.InversionResult (from text_ddim_invert), got {type(inv).__name__}")
    t2i.check_run(bundle, guidance_scale, len(inv.timesteps))
    prompts = toyclip._as_prompts(prompts)
    t2i.check_x_T(bundle, inv.x_T, len(inv.x_T), "the inversion's")
    t2i.check_prompt_count(prompts, len(inv.x_T), "one prompt per inverted image")
    x = t2i.denoise(bundle, inv.x_T, t2i.encode_prompt(bundle, prompts), t2i.null_embedding(bundle, len(prompts)),
                    guidance_scale, len(inv.timesteps), inverted=True)
    return t2i.decode(bundle, x).cpu()


def run_methods(bundle, pairs, methods: Sequence[str] = METHODS, guidance_scale: float = 5.0,
                num_inference_steps: int = 20, tau_c: float = 0.6, tau_s: float = 0.8, tau_u: float = 0.5,
                sdedit_strength: float = 0.6, null_inner_steps: int = 4, null_lr: float = 5e-2,
                threshold: float = 0.5, local_blend: bool = True, seed: int = 0,
                extra: Optional[dict] = None) -> EditRun:
    """Edit every pair with each method. The inversions are shared: one DDIM inversion (for the DDIM row and the
    edited-word regions) and one null-text inversion (for P2P and P2Plus). With local_blend, P2P and P2Plus blend
    with Prompt-to-Prompt's local blending on the edited word and its replacement. `extra` maps more method names to
    callables (bundle, pairs, null_text_inversion) -> edited images (e.g. StyleDiffusion); the null-text inversion is
    None unless "p2p" or "p2plus" is among the methods."""
    unknown = [m for m in methods if m not in METHODS and m not in (extra or {})]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS) + list(extra or {})}")
    # every argument is checked here, before the inversions (minutes of work) start
    num_inference_steps = t2i.check_run(bundle, guidance_scale, num_inference_steps)
    attention_control.check_tau(tau_c=tau_c, tau_s=tau_s, tau_u=tau_u)
    checks.number("sdedit_strength", sdedit_strength, 0.0, 1.0, low_open=True)
    checks.count("null_inner_steps", null_inner_steps, minimum=0)
    checks.number("null_lr", null_lr, 0.0, None, low_open=True)
    checks.number("threshold", threshold, 0.0, 1.0, "(of the min-max normalised attention map)")
    checks.count("seed", seed, minimum=0)
    if not isinstance(pairs, (list, tuple)) or not pairs or not all(isinstance(p, EditPair) for p in pairs):
        raise ValueError("pairs must be a non-empty list of EditPair (from edit_pairs)")
    images = _images(pairs)
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    results = {}
    t0 = time.perf_counter()
    ddim_inv, regions = word_regions(bundle, pairs, num_inference_steps, threshold)
    t_ddim = time.perf_counter() - t0
    if "ddim" in methods:
        t0 = time.perf_counter()
        results["ddim"] = MethodResult("ddim", ddim_word_swap(bundle, ddim_inv, targets, guidance_scale),
                                       seconds=t_ddim + time.perf_counter() - t0)
    if "sdedit" in methods:
        t0 = time.perf_counter()
        results["sdedit"] = MethodResult("sdedit", sdedit(bundle, images, targets, sdedit_strength, guidance_scale,
                                                          num_inference_steps, torch.Generator().manual_seed(seed)),
                                         seconds=time.perf_counter() - t0)
    null = None
    if any(m in methods for m in ("p2p", "p2plus")):
        null = inversion.null_text_invert(bundle, images, sources, num_inference_steps, guidance_scale,
                                          inner_steps=null_inner_steps, lr=null_lr)
    for name, tu in (("p2p", 0.0), ("p2plus", tau_u)):
        if name in methods:
            blend = attention.LocalBlend(bundle.tokenizer, sources, targets, [[p.word, p.target_word] for p in pairs],
                                         threshold=threshold) if local_blend else None
            ctrl = attention.Replace(bundle.tokenizer, sources, targets, tau_c=tau_c, tau_s=tau_s, tau_u=tu,
                                     local_blend=blend)
            out = attention.edit(bundle, ctrl, x_T=null.x_T, guidance_scale=guidance_scale,
                                 num_inference_steps=num_inference_steps, null_embeddings=null.null_embeddings)
            results[name] = MethodResult(name, out.target, out.source, seconds=null.seconds + out.seconds)
    for name, fn in (extra or {}).items():
        if name in methods:
            t0 = time.perf_counter()
            results[name] = MethodResult(name, fn(bundle, pairs, null), seconds=time.perf_counter() - t0)
    settings = dict(guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, tau_c=tau_c,
                    tau_s=tau_s, tau_u=tau_u, sdedit_strength=sdedit_strength, null_inner_steps=null_inner_steps,
                    threshold=threshold, local_blend=local_blend)
    return EditRun(pairs, results, regions, settings, null)


@dataclass
class Scores:
    """Per-pair scores of one method."""
    structure: torch.Tensor
    ns_lpips: torch.Tensor
    clip: torch.Tensor


def score(run: EditRun, attr_model, clip_bundle, metric, with_source: bool = False) -> dict:
    """{method: Scores} for every method of the run, each against the source images. with_source: first a
    "source" row that scores the unedited image itself (the do-nothing baseline: no structure change, nothing
    changed outside the region, and the source's CLIP score against the target caption)."""
    src = _images(run.pairs)
    targets = [p.target for p in run.pairs]
    out = {}
    edits = {"source": src} if with_source else {}
    edits.update({name: res.edited for name, res in run.results.items()})
    for name, edited in edits.items():
        e = edited.clamp(-1, 1)
        out[name] = Scores(structure_distance(attr_model, src, e), ns_lpips(metric, src, e, run.regions),
                           toyclip.clip_score(clip_bundle.model, clip_bundle.tokenizer, e, targets).detach())
    return out


def summarise(run: EditRun, scores: dict) -> dict:
    """{method: {kind or "all": (structure, ns_lpips, clip) means}}."""
    kinds = np.array([p.kind for p in run.pairs])
    table = {}
    for name, s in scores.items():
        row = {}
        for kind in ("all",) + KINDS:
            sel = torch.from_numpy(kinds == kind) if kind != "all" else torch.ones(len(kinds), dtype=torch.bool)
            if sel.any():
                row[kind] = (float(s.structure[sel].mean()), float(s.ns_lpips[sel].mean()), float(s.clip[sel].mean()))
        table[name] = row
    return table


def success_by_kind(pairs, ok: torch.Tensor) -> dict:
    """{"all" or kind: fraction of pairs where ok} from a (n_pairs,) bool tensor (e.g. `reads`)."""
    kinds = np.array([p.kind for p in pairs])
    out = {"all": float(ok.float().mean())}
    for kind in KINDS:
        sel = torch.from_numpy(kinds == kind)
        if sel.any():
            out[kind] = float(ok[sel].float().mean())
    return out


def markdown_table(table: dict, metric_name: str, success: Optional[dict] = None) -> str:
    """Table 2 as markdown: ours (all pairs, and per kind) beside the paper's. success: {method: {"all" or kind:
    fraction}} (`success_by_kind`), shown first, so that no fidelity number appears without the edit's success."""
    ok = lambda name, k: f"{success[name][k]:.0%}" if success and k in success.get(name, {}) else "–"  # noqa: E731
    head = "| method | edit success ↑ (toy-attr) " if success else "| method "
    lines = [head + f"| structure dist. ↓ (toy-attr) | NS-LPIPS ↓ ({metric_name}) | CLIP score ↑ (toy-clip) "
             f"| paper: structure / NS-LPIPS / CLIP |", "| --- " * (5 + bool(success)) + "|"]
    for name, row in table.items():
        paper = PAPER_TABLE2.get(name, (None, None, None))
        ptxt = " / ".join("–" if v is None else f"{v:.3f}" for v in paper)
        s, n, c = row["all"]
        first = f"| {METHOD_NAMES.get(name, name)} " + (f"| {ok(name, 'all')} " if success else "")
        lines.append(first + f"| {s:.4f} | {n:.4f} | {c:.3f} | {ptxt} |")
    unit = ("success / " if success else "") + "struct / NS-LPIPS / CLIP"
    lines += ["", "| method | " + " | ".join(f"{k}: {unit}" for k in KINDS) + " |",
              "| --- |" + " --- |" * len(KINDS)]
    for name, row in table.items():
        cells = [((ok(name, k) + " / ") if success else "") + " / ".join(f"{v:.3f}" for v in row[k])
                 if k in row else "–" for k in KINDS]
        lines.append(f"| {METHOD_NAMES.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
