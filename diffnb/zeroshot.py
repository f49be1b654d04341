"""Attributes read by CLIP zero-shot: the real-mode counterpart of toy-attr, with toy-attr's interface.

For each binary attribute a pair of prompts (present / absent) per subject, and for each categorical value
prompts averaged over subjects (prompt ensembling, as in the CLIP paper). The logit of a binary attribute is
logit_scale * (cos(image, present) - cos(image, absent)), averaged over subjects weighted by the subject that
CLIP reads (a one-subject prompt set, like REAL_PROMPTS, needs no weighting). The same class wraps toy-clip (toy
prompts from the world's grammar) and openai/clip-vit-base-patch16 (REAL_PROMPTS), so both modes share one code path.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import world
from .classifiers import AttributePrediction
from .toyclip import pixel_values, text_embeds


def toy_prompts() -> dict:
    """{attribute: {value: [prompts, one per subject]}} in the toy world's caption grammar."""
    out = {}
    for attr in world.BINARY:
        drop = [n for n in world.ATTRIBUTE_NAMES if n not in ("subject", attr)]
        out[attr] = {v: [world.caption(replace(world.Attributes(subject=s), **{attr: v}), drop=drop)
                         for s in world.SUBJECTS] for v in (True, False)}
    for attr, values in world.CATEGORICAL.items():
        drop = [n for n in world.ATTRIBUTE_NAMES if n not in ("subject", attr)]
        if attr == "subject":
            out[attr] = {v: [f"a {v}"] for v in values}
        else:
            out[attr] = {v: [world.caption(world.Attributes(subject=s, **{attr: v}), drop=drop) for s in world.SUBJECTS]
                         for v in values}
    return out


REAL_PROMPTS = {  # CelebA-style faces; the same attribute names as the toy world
    "smiling": {True: ["a photo of a smiling person"], False: ["a photo of a person with a neutral expression"]},
    "eyes_open": {True: ["a photo of a person with open eyes"], False: ["a photo of a person with closed eyes"]},
    "glasses": {True: ["a photo of a person wearing glasses"], False: ["a photo of a person without glasses"]},
    "hat": {True: ["a photo of a person wearing a hat"], False: ["a photo of a person without a hat"]},
}


class ZeroShotAttributes(nn.Module):
    """CLIP as an attribute classifier: forward(images) -> {"binary": (B, 4), name: (B, K)} logits, like
    classifiers.AttributeClassifier, for the attributes that `prompts` covers."""

    def __init__(self, clip_model, tokenizer, prompts: dict):
        super().__init__()
        self.clip, self.tokenizer = clip_model, tokenizer
        missing = [b for b in world.BINARY if b not in prompts]
        if missing:
            raise ValueError(f"prompts must cover every binary attribute; missing {missing}")
        self.categorical = [n for n in world.CATEGORICAL if n in prompts]
        with torch.no_grad():
            emb = {a: {v: text_embeds(clip_model, tokenizer, p) for v, p in d.items()} for a, d in prompts.items()}
        # binary: one direction (present - absent) per prompt variant, (S, 4, D); S = 3 subjects for the toy prompts
        self.register_buffer("binary_text", torch.stack([emb[b][True] - emb[b][False] for b in world.BINARY], 1))
        for n in self.categorical:
            self.register_buffer(f"text_{n}", torch.stack([F.normalize(emb[n][v].mean(0), dim=-1)
                                                           for v in world.CATEGORICAL[n]]))

    def forward(self, x: torch.Tensor) -> dict:
        features = self.clip.get_image_features(pixel_values=pixel_values(self.clip, x)).pooler_output
        img = F.normalize(features.float(), dim=-1)
        scale = self.clip.logit_scale.exp().float()
        out = {n: scale * img @ getattr(self, f"text_{n}").T for n in self.categorical}
        per_variant = scale * torch.einsum("bd,skd->bsk", img, self.binary_text)      # (B, S, 4)
        if per_variant.shape[1] == len(world.SUBJECTS) and "subject" in out:
            weights = out["subject"].softmax(-1)                                       # read the subject first
        else:
            weights = torch.full(per_variant.shape[:2], 1 / per_variant.shape[1], device=img.device)
        out["binary"] = (weights[..., None] * per_variant).sum(1)
        return out

    @torch.no_grad()
    def predict(self, images) -> AttributePrediction:
        logits = self(images)
        return AttributePrediction(binary=logits["binary"].sigmoid().cpu(),
                                   categorical={n: logits[n].softmax(-1).cpu() for n in self.categorical})
