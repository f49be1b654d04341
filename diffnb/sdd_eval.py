"""Scoring SDD's manipulators and its baselines (notebook 07's Tables 1 and 3 in miniature).

- edit success: toy-attr reads the target attribute on the edited image, among images that lacked it;
- kept: the non-target binary attributes toy-attr reads are all unchanged;
- toy-FID: torchmetrics' `FrechetInceptionDistance` with toy-attr's trunk (64 pooled features of its last block) as
  its feature extractor, between the original and the edited images, as the paper measures FID; named as such;
- directional toy-CLIP similarity: cos(E_I(edit) - E_I(orig), E_T(target) - E_T(source)) with toy-clip.

Baselines on the same images and prompts with toy-t2i: SDEdit at a noise strength (`t2i.sdedit`, the course's one
SDEdit) and DDIB (DDIM-invert with the source prompt, regenerate with the target prompt; `inversion.text_ddim_invert`
and `t2i.denoise`). DiffAE has no toy counterpart (no diffusion autoencoder in the zoo).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from . import inversion, t2i, toyclip, world

NAME = "sdd-manipulators"   # the zoo entry of the shipped full run (diffnb.maint.sdd_run): one file per edit x strategy
STRATEGIES = ("random", "small xi", "large xi", "largest HQS", "official")   # Table 3's choices of S, in its order

# The three edits of notebook 07: name -> (source prompt, target prompt gamma, attribute, value it should take)
EDITS = {
    "smiling": ("a serious person", "a smiling person", "smiling", True),
    "glasses": ("a person", "a person with glasses", "glasses", True),
    "blonde hair": ("a person", "a person with blonde hair", "hair", "blonde"),
}


def check_edit(name: str) -> tuple:
    if name not in EDITS:
        raise ValueError(f"unknown edit {name!r}; accepted: {', '.join(EDITS)}")
    return EDITS[name]


def file_name(edit: str, strategy: str) -> str:
    """The shipped manipulator of one edit and Table 3 strategy, in the zoo entry NAME."""
    return f"{edit.replace(' ', '-')}_{strategy.replace(' ', '-')}.safetensors"


def held_out(edit: str, n: int = 128, seed: int = 90_000, domain: str = "toy") -> torch.Tensor:
    """n person images that lack the edit's target (the images an edit has to change), drawn from `seed` on; never
    the training stream of `sdd.distill` (seeds from 500,000)."""
    _, _, attr, value = check_edit(edit)
    out, k = [], 0
    while sum(len(b) for b in out) < n:
        b = world.sample(n, seed=seed + k, domain=domain, subject="person")
        keep = [i for i, a in enumerate(b.attributes) if getattr(a, attr) != value]
        out.append(b.images[keep])
        k += 1
    return torch.cat(out)[:n]


class TrunkFeatures(nn.Module):
    """toy-attr's trunk as a torchmetrics feature extractor: [0, 1] images -> (B, 64) pooled last-block features."""

    def __init__(self, attr_model: nn.Module):
        super().__init__()
        self.attr = attr_model
        self.num_features = attr_model.config.channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != 32:
            x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return self.attr.features(x * 2 - 1)[-1].mean((2, 3)).double()


@torch.no_grad()
def toy_fid(attr_model, real: torch.Tensor, fake: torch.Tensor) -> float:
    """toy-FID: torchmetrics' FrechetInceptionDistance over toy-attr's trunk features (not Inception's)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    fid = FrechetInceptionDistance(feature=TrunkFeatures(attr_model), normalize=True)
    fid.update(((real.clamp(-1, 1) + 1) / 2), real=True)
    fid.update(((fake.clamp(-1, 1) + 1) / 2), real=False)
    return float(fid.compute())


@dataclass
class EditScores:
    """One row of Table 1 or 3."""
    method: str
    success: float          # share of images where toy-attr reads the target on the edit
    kept: float             # share of images whose non-target binary attributes are all unchanged
    toy_fid: float          # toy-FID (toy-attr trunk) between originals and edits
    clip_dir: float         # mean directional toy-CLIP similarity
    n: int


def success_and_kept(edit: str, before: list, after: list) -> tuple:
    """(edit success, kept) from toy-attr's readings of the originals and the edits (lists of world.Attributes):
    the share of edits that read the target value, and the share whose other binary attributes all read as before."""
    attr, value = check_edit(edit)[2:]
    others = [x for x in world.BINARY if x != attr]
    success = sum(getattr(v, attr) == value for v in after) / len(after)
    kept = sum(all(getattr(u, x) == getattr(v, x) for x in others) for u, v in zip(before, after)) / len(after)
    return success, kept


@torch.no_grad()
def score(method: str, edit: str, original: torch.Tensor, edited: torch.Tensor, attr_model, clip_bundle) -> EditScores:
    source, target = check_edit(edit)[:2]
    b = attr_model.predict(edited).attributes()
    success, kept = success_and_kept(edit, attr_model.predict(original).attributes(), b)
    if torch.equal(original, edited):
        clip_dir = 0.0     # no change: the image direction is zero, the cosine undefined
    else:
        clip_dir = float(toyclip.directional_similarity(clip_bundle.model, clip_bundle.tokenizer, original, edited,
                                                        source, target).mean())
    return EditScores(method, success, kept, toy_fid(attr_model, original, edited), clip_dir, len(b))


@torch.no_grad()
def sdedit(bundle, images: torch.Tensor, edit: str, strength: float, num_inference_steps: int = 25,
           guidance_scale: float = 7.5, seed: int = 0) -> torch.Tensor:
    """SDEdit towards the edit's target prompt (the course's t2i.sdedit)."""
    target = check_edit(edit)[1]
    return t2i.sdedit(bundle, images, [target] * len(images), strength=strength, guidance_scale=guidance_scale,
                      num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def ddib(bundle, images: torch.Tensor, edit: str, num_inference_steps: int = 25,
         guidance_scale: float = 7.5) -> torch.Tensor:
    """DDIB (Su et al. 2023) with one text-conditioned model: DDIM-invert under the source prompt (guidance 1), then
    DDIM-sample from that x_T under the target prompt with guidance."""
    source, target = check_edit(edit)[:2]
    inv = inversion.text_ddim_invert(bundle, images, [source] * len(images), num_inference_steps, guidance_scale=1.0)
    x = t2i.denoise(bundle, inv.x_T, t2i.encode_prompt(bundle, [target] * len(images)),
                    t2i.null_embedding(bundle, len(images)), guidance_scale, num_inference_steps, inverted=True)
    return t2i.decode(bundle, x).cpu()


# ------------------------------------------------------------------------------------------------
# The time model of §5.3 (Eqs. 13-15)
# ------------------------------------------------------------------------------------------------
def total_time_diffusion(tau_diff_infer: float, m: int, n: int) -> float:
    """Eq. 13: every one of m images is edited by the diffusion model for each of n prompts."""
    return n * m * tau_diff_infer


def total_time_sdd(tau_train: float, tau_infer: float, m: int, n: int) -> float:
    """Eq. 14: one manipulator trained per prompt, then one forward pass per image."""
    return n * tau_train + n * m * tau_infer


def break_even_m(tau_train: float, tau_diff_infer: float, tau_sdd_infer: float) -> float:
    """Eq. 15: SDD is faster in total once m > tau_train / (tau_diff_infer - tau_sdd_infer)."""
    if tau_diff_infer <= tau_sdd_infer:
        return float("inf")
    return tau_train / (tau_diff_infer - tau_sdd_infer)
