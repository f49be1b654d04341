"""StyleDiffusion's learned inputs as data: the mapping network M_t (Table 1) and its "without M_t" ablation, the
image encoder's tokens E(x), the inversion result, and its safetensors files (the shipped full run is checked
against the manifest). diffnb.stylediffusion trains and uses them (and re-exports every name here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checks, inversion
from .tensorfile import read_safetensors, write_safetensors

FORMS = ("value", "film", "direct")
LEARN = ("value", "key", "both")


class MappingNetwork(nn.Module):
    """Table 1: token-axis 1x1 convolutions from the image encoder's n_in tokens to the text length L
    (Conv0 n_in -> L, Conv1 L -> L, BatchNorm, LeakyReLU, Conv2 L -> L); channels (the embedding width) are kept.
    Weights start from N(0, 0.01), as the paper says.

    The paper trains one M_t per image. `copies` holds that many independent networks, one per image of a batch,
    so a batch of B images is B separate inversions run together (a 1x1 convolution over tokens is a matrix
    product, batched here with einsum). The paper's BatchNorm sees one image, so it normalises each token channel
    over that image's embedding width, with that image's statistics, in training and in use alike; here it is
    computed so (per image, `F.instance_norm`) with per-copy scale and shift."""

    def __init__(self, n_in: int, length: int, form: str = "value", copies: int = 1,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        if form not in FORMS[:2]:
            raise ValueError(f"form must be one of {FORMS[:2]}, got {form!r}")
        copies = checks.count("copies", copies)
        self.form, self.length, self.copies = form, length, copies
        n_out = length * (2 if form == "film" else 1)
        self.w0 = nn.Parameter(torch.randn(copies, n_out, n_in, generator=generator) * 0.01)       # Conv0
        self.w1 = nn.Parameter(torch.randn(copies, n_out, n_out, generator=generator) * 0.01)      # Conv1
        self.w2 = nn.Parameter(torch.randn(copies, n_out, n_out, generator=generator) * 0.01)      # Conv2
        self.b0, self.b1, self.b2 = (nn.Parameter(torch.zeros(copies, n_out, 1)) for _ in range(3))
        self.bn_weight = nn.Parameter(torch.ones(copies, n_out, 1))           # BatchNorm's affine part
        self.bn_bias = nn.Parameter(torch.zeros(copies, n_out, 1))

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """tokens (B, n_in, D) from the image encoder, context (B, L, D) the caption's embedding -> (B, L, D);
        B must equal `copies`."""
        if tokens.shape[0] != self.copies:
            raise ValueError(f"this mapping network holds {self.copies} per-image copies but got {tokens.shape[0]} "
                             "images")
        h = torch.einsum("boi,bid->bod", self.w0, tokens) + self.b0
        h = torch.einsum("boi,bid->bod", self.w1, h) + self.b1
        h = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-5)
        h = F.leaky_relu(h * self.bn_weight + self.bn_bias, 0.2)
        h = torch.einsum("boi,bid->bod", self.w2, h) + self.b2
        if self.form == "film":
            scale, shift = h[:, :self.length], h[:, self.length:]
            return context * scale + shift
        return h


@torch.no_grad()
def image_tokens(clip_bundle, images: torch.Tensor) -> torch.Tensor:
    """E(x): every token of the CLIP vision tower after its final layer norm, before the projection
    (the official code's choice), (B, n_tokens, D)."""
    from .toyclip import pixel_values
    model = clip_bundle.model
    out = model.vision_model(pixel_values=pixel_values(model, images))
    return model.vision_model.post_layernorm(out.last_hidden_state)


@dataclass
class StyleInversion:
    """What `invert` learned: one mapping network per sampling step (high t first) and everything to sample back."""
    networks: list                 # MappingNetwork per step
    tokens: torch.Tensor           # E(x), (B, n_tokens, D)
    cond: torch.Tensor             # the caption's embedding c (the key input), (B, L, D)
    x_T: torch.Tensor
    timesteps: list
    guidance_scale: float
    form: str = "value"
    learn: str = "value"
    losses: list = field(default_factory=list)     # final (L_rec, L_att) of each step
    seconds: float = 0.0
    target_maps: list = field(default_factory=list)  # â_t: DDIM inversion's 16x16 cross-attention, per step

    @property
    def num_inference_steps(self) -> int:
        return len(self.timesteps)

    @torch.no_grad()
    def embeddings(self) -> list:
        """The learned input c̃_t of every step, (B, L, D) each."""
        out = []
        for net in self.networks:
            net.eval()
            out.append(net(self.tokens, self.cond))
        return out


class DirectEmbedding(nn.Module):
    """The ablation "without M_t": optimise the value input itself, one (B, L, D) tensor per step, starting from
    the caption's embedding."""

    def __init__(self, context: torch.Tensor):
        super().__init__()
        self.embedding = nn.Parameter(context.detach().clone())

    def forward(self, tokens, context):
        return self.embedding


# ----------------------------------------------------------------------------------------------
# Saving and loading an inversion (safetensors only; the shipped full run is checked against the manifest)
# ----------------------------------------------------------------------------------------------
def save(inv: StyleInversion, path, dtype: torch.dtype = torch.float16, maps: Optional[int] = None) -> None:
    """Write an inversion (every step's network, E(x), c, x_T and the inversion's maps â_t) to one safetensors
    file. maps: keep â_t for only the first `maps` images (0: none; they are only needed by `attention_error`)."""
    tensors = {"tokens": inv.tokens, "cond": inv.cond, "x_T": inv.x_T}
    for i, net in enumerate(inv.networks):
        tensors.update({f"net.{i}.{k}": v for k, v in net.state_dict().items()})
    if maps is None or maps > 0:
        tensors.update({f"att.{i}": m[:maps] for i, m in enumerate(inv.target_maps)})
    meta = {"timesteps": [int(t) for t in inv.timesteps], "guidance_scale": inv.guidance_scale, "form": inv.form,
            "learn": inv.learn, "losses": inv.losses, "seconds": inv.seconds}
    write_safetensors(tensors, path, "stylediffusion", meta, dtype)


def load(path) -> StyleInversion:
    """Read what `save` wrote (safetensors: nothing is unpickled)."""
    meta, t = read_safetensors(path, "stylediffusion")
    tokens, cond = t["tokens"], t["cond"]
    n = len(meta["timesteps"])
    networks = []
    for i in range(n):
        state = {k.split(".", 2)[2]: v for k, v in t.items() if k.startswith(f"net.{i}.")}
        net = (DirectEmbedding(cond) if meta["form"] == "direct" else
               MappingNetwork(tokens.shape[1], cond.shape[1], meta["form"], copies=len(tokens)))
        net.load_state_dict(state)
        networks.append(net.eval())
    return StyleInversion(networks, tokens, cond, t["x_T"], meta["timesteps"], meta["guidance_scale"], meta["form"],
                          meta["learn"], [tuple(x) for x in meta["losses"]], meta["seconds"],
                          [t[f"att.{i}"] for i in range(n) if f"att.{i}" in t])


def _shipped_file(variant: str, null_text: bool, root=None):
    """data/models/stylediffusion-photo/<variant>.safetensors after checking the folder against the manifest."""
    from . import zoo
    folder = zoo.verify("stylediffusion-photo", root)
    names = sorted(p.stem for p in folder.glob("*.safetensors") if ("null-text" in p.stem) == null_text)
    if variant not in names:
        kind = "null-text inversion" if null_text else "inversion"
        raise ValueError(f"no shipped {kind} {variant!r}; shipped: {', '.join(names)}")
    return folder / f"{variant}.safetensors"


def load_shipped(variant: str, root=None) -> StyleInversion:
    """The full run shipped in data/models/stylediffusion-photo/<variant>.safetensors, checked against the manifest
    (`python -m diffnb.stylediffusion` recomputes it)."""
    return load(_shipped_file(variant, False, root))


def load_shipped_null_text(variant: str = "null-text", root=None):
    """A null-text inversion of the same full run (inversion.InversionResult), checked against the manifest."""
    return inversion.load(_shipped_file(variant, True, root))


def subset(inv: StyleInversion, index) -> StyleInversion:
    """The inversion of some of its images (every image has its own networks, so this is exact)."""
    idx = list(index)
    nets = []
    for net in inv.networks:
        if isinstance(net, DirectEmbedding):
            new = DirectEmbedding(net.embedding.detach()[idx])
        else:
            new = MappingNetwork(inv.tokens.shape[1], inv.cond.shape[1], inv.form, copies=len(idx))
            new.load_state_dict({k: v[idx] for k, v in net.state_dict().items()})
        nets.append(new.eval())
    return StyleInversion(nets, inv.tokens[idx], inv.cond[idx], inv.x_T[idx], inv.timesteps, inv.guidance_scale,
                          inv.form, inv.learn, inv.losses, inv.seconds,
                          [m[idx] for m in inv.target_maps]
                          if inv.target_maps and max(idx) < len(inv.target_maps[0]) else [])
