"""Measuring the toy zoo: the quality bars that the model cards report and the tests enforce."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from . import sampling, world


@dataclass
class AttrAccuracy:
    """toy-attr accuracy per attribute on fresh world images."""
    domain: str
    n: int
    accuracy: dict                 # attribute name -> fraction correct

    def worst_binary(self) -> float:
        return min(self.accuracy[b] for b in world.BINARY)


@torch.no_grad()
def attr_accuracy(model, domain: str = "toy", n: int = 2000, seed: int = 10_000, batch_size: int = 500) -> AttrAccuracy:
    """Accuracy of an AttributeClassifier on n fresh images of `domain` (seeds disjoint from training)."""
    correct = {name: 0 for name in world.ATTRIBUTE_NAMES}
    for k in range(0, n, batch_size):
        batch = world.sample(min(batch_size, n - k), seed=seed + k, domain=domain)
        pred = model.predict(batch.images).attributes()
        for p, a in zip(pred, batch.attributes):
            for name in world.ATTRIBUTE_NAMES:
                correct[name] += getattr(p, name) == getattr(a, name)
    return AttrAccuracy(domain, n, {k: v / n for k, v in correct.items()})


@dataclass
class SampleQuality:
    """How toy-attr reads n samples of a diffusion model."""
    n: int
    confident_binary: dict         # binary attribute -> fraction with P > 0.9 or P < 0.1
    confident_all_binary: float    # fraction confident on every binary attribute at once
    confident_colours: dict        # hair / skin / background -> fraction with max P > 0.9
    frequency: dict                # attribute value -> (sampled frequency, world frequency)
    max_frequency_gap: float       # the largest |sampled - world| over all attribute values


def world_frequencies() -> dict:
    """The world's prior probability of every binary attribute and categorical value."""
    freq = {b: p for b, p in world.BINARY_PRIOR.items()}
    for name, values in world.CATEGORICAL.items():
        freq.update({f"{name}={v}": 1 / len(values) for v in values})
    return freq


def sample_quality(images: torch.Tensor, attr_model) -> SampleQuality:
    """Score generated images (B, 3, 32, 32) in [-1, 1] with toy-attr."""
    pred = attr_model.predict(images)
    n = images.shape[0]
    conf = (pred.binary > 0.9) | (pred.binary < 0.1)
    confident_binary = {b: conf[:, j].float().mean().item() for j, b in enumerate(world.BINARY)}
    colours = {c: (pred.categorical[c].max(-1).values > 0.9).float().mean().item() for c in world.PALETTES}
    sampled = {b: (pred.binary[:, j] > 0.5).float().mean().item() for j, b in enumerate(world.BINARY)}
    for name, values in world.CATEGORICAL.items():
        idx = pred.categorical[name].argmax(-1)
        sampled.update({f"{name}={v}": (idx == i).float().mean().item() for i, v in enumerate(values)})
    prior = world_frequencies()
    frequency = {k: (sampled[k], prior[k]) for k in prior}
    return SampleQuality(n, confident_binary, conf.all(1).float().mean().item(), colours, frequency,
                         max(abs(s - w) for s, w in frequency.values()))


@torch.no_grad()
def seg_miou(model, domain: str = "toy", n: int = 1000, seed: int = 30_000, batch_size: int = 250) -> dict:
    """toy-seg on n fresh images of `domain`: {"mean_iou": float, "per_class": {class: IoU}} over the whole set."""
    from .metrics import iou_per_class
    preds, targets = [], []
    for k in range(0, n, batch_size):
        batch = world.sample(min(batch_size, n - k), seed=seed + k, domain=domain)
        preds.append(model.predict(batch.images))
        targets.append(batch.masks)
    ious = iou_per_class(torch.cat(preds), torch.cat(targets))
    return {"mean_iou": float(ious.nanmean()), "per_class": dict(zip(world.MASK_CLASSES, ious.tolist()))}


def ddpm_samples(bundle, n: int = 256, num_inference_steps: int = 50, seed: int = 0, batch_size: int = 128,
                 eta: float = 0.0):
    """n DDIM samples of a DiffusionBundle (eta 0: deterministic DDIM; eta 1: the DDPM posterior's
    variance, Eq. 6), deterministic from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    out = [sampling.sample(bundle.unet, bundle.scheduler, batch_size=min(batch_size, n - k),
                           num_inference_steps=num_inference_steps, eta=eta, generator=gen).images
           for k in range(0, n, batch_size)]
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------
# toy-clip: retrieval, zero-shot attributes, directional similarity
# ------------------------------------------------------------------------------------------------
@dataclass
class ClipQuality:
    """How well a CLIP model (toy-clip) reads the toy world."""
    retrieval_top1: float          # caption -> image top-1 among `group` random pairs, averaged over groups
    group: int                     # images per retrieval group
    zero_shot: dict                # binary attribute -> accuracy of the two-prompt zero-shot choice
    directional: dict              # binary attribute -> fraction of edit pairs with positive directional sim.
    directional_mean: dict         # binary attribute -> mean directional similarity


@torch.no_grad()
def clip_retrieval(model, tokenizer, n_groups: int = 8, group: int = 64, seed: int = 20_000,
                   domain: str = "toy") -> float:
    """Caption -> image top-1 retrieval among `group` fresh (image, full caption) pairs, averaged over
    n_groups groups. A retrieved image whose caption equals the query (a duplicate) counts as correct."""
    from .toyclip import image_embeds, text_embeds
    correct = 0
    for g in range(n_groups):
        batch = world.sample(group, seed=seed + g, domain=domain)
        best = (text_embeds(model, tokenizer, batch.captions) @ image_embeds(model, batch.images).T).argmax(-1)
        correct += sum(batch.captions[j] == c for j, c in zip(best.tolist(), batch.captions))
    return correct / (n_groups * group)


def zero_shot_prompts(subject: str, attribute: str) -> tuple:
    """(prompt if the attribute is present, prompt if absent), e.g. ('a cat with glasses', 'a cat'),
    ('a smiling cat', 'a serious cat'): world.caption with every other attribute left out."""
    drop = [n for n in world.ATTRIBUTE_NAMES if n not in ("subject", attribute)]
    base = world.Attributes(subject=subject)
    return tuple(world.caption(replace(base, **{attribute: v}), drop=drop) for v in (True, False))


@torch.no_grad()
def clip_zero_shot(model, tokenizer, n: int = 512, seed: int = 21_000, domain: str = "toy") -> dict:
    """Binary attribute -> accuracy of choosing between zero_shot_prompts(true subject, attribute)."""
    from .toyclip import image_embeds, text_embeds
    batch = world.sample(n, seed=seed, domain=domain)
    e_i = image_embeds(model, batch.images)
    subjects = [a.subject for a in batch.attributes]
    acc = {}
    for b in world.BINARY:
        emb = {s: text_embeds(model, tokenizer, list(zero_shot_prompts(s, b))) for s in set(subjects)}
        e_t = torch.stack([emb[s] for s in subjects])                          # (n, 2, D): present, absent
        pred = (e_t @ e_i[:, :, None]).squeeze(-1).argmax(-1) == 0
        truth = torch.tensor([getattr(a, b) for a in batch.attributes])
        acc[b] = (pred == truth).float().mean().item()
    return acc


@torch.no_grad()
def clip_directional(model, tokenizer, attribute: str = "glasses", n: int = 256, seed: int = 22_000,
                     domain: str = "toy") -> torch.Tensor:
    """(n,) directional similarity of edit pairs: the same image without and with `attribute`
    (world.with_attributes) against their two full captions."""
    from .toyclip import directional_similarity
    a = world.sample(n, seed=seed, domain=domain, **{attribute: False})
    b = world.with_attributes(a, **{attribute: True})
    return directional_similarity(model, tokenizer, a.images, b.images, a.captions, b.captions)


def clip_quality(model, tokenizer, domain: str = "toy") -> ClipQuality:
    """Every toy-clip bar at once (model cards; tests/test_quality.py measures them one by one)."""
    d = {b: clip_directional(model, tokenizer, b, domain=domain) for b in world.BINARY}
    return ClipQuality(clip_retrieval(model, tokenizer, domain=domain), 64,
                       clip_zero_shot(model, tokenizer, domain=domain),
                       {b: (v > 0).float().mean().item() for b, v in d.items()},
                       {b: v.mean().item() for b, v in d.items()})


# ----------------------------------------------------------------------------------------------
# toy-t2i: does a sample show what its caption says?
# ----------------------------------------------------------------------------------------------
@dataclass
class T2IQuality:
    """toy-t2i samples of n random captions, read by toy-attr and toy-clip."""
    n: int
    guidance_scale: float
    stated_agree: float            # fraction whose every stated attribute toy-attr confirms
    subject_right: float           # fraction whose subject toy-attr confirms
    clip_beats_shuffled: float     # fraction with CLIP score(sample, caption) > score(sample, another caption)
    eta: float = 0.0               # the DDIM eta the samples were drawn with
    per_attribute: dict = field(default_factory=dict)  # attribute -> (agreement where stated, times stated)


@torch.no_grad()
def t2i_quality(bundle, attr_model, clip_bundle, n: int = 256, guidance_scale: float = 5.0,
                num_inference_steps: int = 50, seed: int = 40_000, batch_size: int = 64,
                eta: float = 0.0) -> T2IQuality:
    """Sample one image per random partial caption and check it against the caption."""
    import numpy as np

    from . import t2i
    from .toyclip import clip_score
    rng = np.random.default_rng(seed)
    captions = [world.partial_caption(a, rng) for a in world.sample_attributes(n, seed=seed)]
    gen = torch.Generator().manual_seed(seed)
    images = torch.cat([t2i.sample(bundle, captions[k:k + batch_size], guidance_scale=guidance_scale,
                                   num_inference_steps=num_inference_steps, eta=eta, generator=gen).images
                        for k in range(0, n, batch_size)])
    read = attr_model.predict(images).attributes()
    # {stated attribute: does toy-attr read it?} per sample; every caption states its subject
    matches = [{k: getattr(r, k) == v for k, v in world.parse_caption(c).items()} for r, c in zip(read, captions)]
    per = {}
    for m in matches:
        for k, ok in m.items():
            per.setdefault(k, []).append(ok)
    shuffled = captions[1:] + captions[:1]
    own = clip_score(clip_bundle.model, clip_bundle.tokenizer, images, captions)
    other = clip_score(clip_bundle.model, clip_bundle.tokenizer, images, shuffled)
    return T2IQuality(n, guidance_scale, float(np.mean([all(m.values()) for m in matches])),
                      float(np.mean(per["subject"])), float((own > other).float().mean()), eta,
                      {k: (float(np.mean(v)), len(v)) for k, v in per.items()})


# ----------------------------------------------------------------------------------------------
# toy-t2i: can its samples be edited by a word swap?
# ----------------------------------------------------------------------------------------------
@dataclass
class T2IEditability:
    """Prompt-to-Prompt word swaps (attention.Replace) on generated images, read by toy-attr. A pair succeeds when
    toy-attr reads the source's value of the swapped attribute in the unedited sample and the target's value in
    the edit (both must hold: an edit of a sample that never showed the source proves nothing)."""
    n: int
    success: float                 # fraction of all pairs that succeed
    per_kind: dict                 # kind ("colour", "attribute", "subject") -> success rate
    source_right: float            # fraction whose unedited sample shows the source value
    target_right: float            # fraction whose edit shows the target value
    settings: dict = field(default_factory=dict)


def _changed(source: str, target: str) -> dict:
    """{attribute: (source value, target value)} for what a caption swap changes."""
    a, b = world.parse_caption(source), world.parse_caption(target)
    return {k: (a[k], b[k]) for k in a if k in b and a[k] != b[k]}


@torch.no_grad()
def t2i_editability(bundle, attr_model, n_per_kind: int = 10, seed: int = 0, guidance_scale: float = 5.0,
                    num_inference_steps: int = 20, tau_c: float = 0.6, tau_s: float = 0.8) -> T2IEditability:
    """Word swaps on generated samples at DDIM eta 0 (the sampler inversion-based editing needs), with notebook 06's
    settings: 3 * n_per_kind caption pairs from editbench.edit_pairs (colour, binary-attribute and subject swaps of
    full captions of fresh world images), one x_T per pair from a CPU generator seeded with `seed`."""
    import numpy as np

    from . import attention, editbench
    pairs = editbench.edit_pairs(n_per_kind, seed=seed, domain="toy")
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    ctrl = attention.Replace(bundle.tokenizer, sources, targets, tau_c=tau_c, tau_s=tau_s)
    out = attention.edit(bundle, ctrl, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                         generator=torch.Generator().manual_seed(seed))
    read_src = attr_model.predict(out.source).attributes()
    read_tgt = attr_model.predict(out.target).attributes()
    src_ok, tgt_ok = [], []
    for p, rs, rt in zip(pairs, read_src, read_tgt):
        changed = _changed(p.source, p.target)
        src_ok.append(all(getattr(rs, k) == v for k, (v, _) in changed.items()))
        tgt_ok.append(all(getattr(rt, k) == v for k, (_, v) in changed.items()))
    ok = np.array(src_ok) & np.array(tgt_ok)
    kinds = np.array([p.kind for p in pairs])
    return T2IEditability(len(pairs), float(ok.mean()), {k: float(ok[kinds == k].mean()) for k in editbench.KINDS},
                          float(np.mean(src_ok)), float(np.mean(tgt_ok)),
                          dict(guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, tau_c=tau_c,
                               tau_s=tau_s, eta=0.0, seed=seed))


@torch.no_grad()
def reconstruction_quality(ae, attr_model, domain: str = "toy", n: int = 512, seed: int = 60_000,
                           batch_size: int = 128) -> dict:
    """PSNR (dB) of G(E(y)) against y and toy-attr's agreement between y and G(E(y)) per attribute (the argmax
    attribute of each, binary at 0.5), on n fresh `domain` images."""
    from . import metrics, toyae
    psnr, agree = [], {}
    for i in range(0, n, batch_size):
        y = world.sample(min(batch_size, n - i), seed=seed + i, domain=domain).images
        r = toyae.decode(ae, toyae.encode(ae, y))
        psnr.append(metrics.psnr(r, y))
        a, b = attr_model.predict(y).attributes(), attr_model.predict(r).attributes()
        for name in world.ATTRIBUTE_NAMES:
            agree.setdefault(name, []).extend(getattr(u, name) == getattr(v, name) for u, v in zip(a, b))
    return {"psnr": float(torch.cat(psnr).mean()), "agreement": {k: sum(v) / len(v) for k, v in agree.items()},
            "n": n, "domain": domain}
