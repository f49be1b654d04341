"""StyleDiffusion (Li et al., §3.3, Alg. 1, Eqs. 5-8): invert a real image into the *value* input of
cross-attention.

Keys decide *where* a word is drawn, values decide *what* (the key/value swap of Fig. 4). So StyleDiffusion keeps
the key input as the caption's embedding c and maps the image x, through a frozen CLIP image encoder E and a
per-timestep mapping network M_t, to the value input: c̃_t = M_t(E(x)). M_t is trained so that guided DDIM with
the learned values retraces the DDIM-inversion trajectory (L_rec) and keeps its cross-attention maps (L_att):

    L = ||z̃_{t-1} - ẑ_{t-1}||² + λ_att ||ã_t - â_t||²                                   (Eqs. 5-7)

Two forms of M_t (OFFICIAL-CODE-NOTES.md), and the ablations of Figs. 14-16:
    form="value":  the paper's Table 1, the output (L tokens) replaces the value input;
    form="film":   the official code's, the output (2L tokens) is a scale and shift: c * scale + shift;
    form="direct": no M_t, the value input itself is optimised (one tensor per step);
    learn="key" / "both": learn the key input instead of the value input, or both;
    lambda_att=0: no L_att.

    inv = invert(bundle, clip_bundle, images, prompts, num_inference_steps=20)
    x_rec = reconstruct(bundle, inv)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attention, inversion, sampling, t2i

FORMS = ("value", "film", "direct")
LEARN = ("value", "key", "both")


class MappingNetwork(nn.Module):
    """Table 1: token-axis 1x1 convolutions from the image encoder's n_in tokens to the text length L
    (Conv0 n_in -> L, Conv1 L -> L, BatchNorm, LeakyReLU, Conv2 L -> L); channels (the embedding width) are kept.
    Weights start from N(0, 0.01), as the paper says."""

    def __init__(self, n_in: int, length: int, form: str = "value"):
        super().__init__()
        if form not in FORMS[:2]:
            raise ValueError(f"form must be one of {FORMS[:2]}, got {form!r}")
        self.form, self.length = form, length
        n_out = length * (2 if form == "film" else 1)
        self.conv0 = nn.Conv1d(n_in, n_out, 1)
        self.conv1 = nn.Conv1d(n_out, n_out, 1)
        self.bn1 = nn.BatchNorm1d(n_out)
        self.act1 = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv1d(n_out, n_out, 1)
        for conv in (self.conv0, self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """tokens (B, n_in, D) from the image encoder, context (B, L, D) the caption's embedding -> (B, L, D)."""
        h = self.conv2(self.act1(self.bn1(self.conv1(self.conv0(tokens)))))
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


class ValueController(attention.AttentionController):
    """Gives the conditional branch's cross-attention a learned value (or key) input while the step index is
    below tau_v * T, and (record=True) records that branch's 16x16 cross-attention maps, with gradients, for L_att."""

    def __init__(self, learn: str = "value", tau_v: float = 1.0, record: bool = True):
        if learn not in LEARN:
            raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")
        attention.check_tau(tau_v=tau_v)
        self.learn, self.tau_v, self.record = learn, float(tau_v), bool(record)
        self.embedding: Optional[torch.Tensor] = None   # (B, L, D) for the current step
        self.caption: Optional[torch.Tensor] = None     # c, the caption's embedding
        self.guided = True
        self.maps: list = []

    def _cond(self, context):
        b = self.embedding.shape[0]
        return (context[:context.shape[0] - b], context[context.shape[0] - b:]) if self.guided else (context[:0], context)

    def value_input(self, context, place_in_unet):
        """value: [uncond; c̃_t]. key: the keys come from c̃_t (passed as the UNet's context), the values stay the
        caption's: [uncond; c]. both: c̃_t for keys and values (the context as it is)."""
        if self.embedding is None or self.learn == "both" or not self.active(self.tau_v):
            return context
        uncond, _ = self._cond(context)
        values = self.embedding if self.learn == "value" else self.caption
        return torch.cat([uncond, values.to(context.dtype)])

    def needs_maps(self, is_cross, place_in_unet):
        return is_cross and self.record

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        if is_cross and self.record and probs.shape[1] == 256:
            b = self.embedding.shape[0] if self.embedding is not None else probs.shape[0] // heads
            cond = probs[probs.shape[0] - b * heads:]
            self.maps.append(cond.reshape(b, heads, *cond.shape[1:]).mean(1))
        return probs


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


def inner_iterations(i: int, scale: float = 10.0) -> int:
    """The official schedule ceil(100 e^{-0.1 i}) scaled by scale / 100 (toy default: 10 at the first step)."""
    return max(1, math.ceil(scale * math.exp(-0.1 * i)))


def _guided(bundle, x, t, cond, uncond, w, ctrl, embedding):
    """One guided noise prediction with the controller giving the conditional branch `embedding`."""
    ctrl.embedding = embedding
    key_cond = embedding if ctrl.learn in ("key", "both") and ctrl.active(ctrl.tau_v) else cond
    return t2i.guided_eps(bundle.unet, x, t, key_cond, uncond, w)


def invert(bundle, clip_bundle, images, prompts, num_inference_steps: int = 20, guidance_scale: float = 5.0,
           form: str = "value", learn: str = "value", lambda_att: float = 1.0, iterations: float = 10.0,
           lr: float = 1e-2, early_stop: float = 1e-5) -> StyleInversion:
    """Alg. 1. DDIM-invert the images under their captions (guidance 1), recording the conditional cross-attention
    maps â_t; then walk back from ẑ_T, training M_t at each step (starting from the previous step's weights) with
    Adam (β1, β2) = (0, 0.999) and learning rate lr (1 - i/100) for inner_iterations(i) iterations on
    L_rec + lambda_att L_att, stopping early once L_rec < early_stop + i * 2 early_stop."""
    import copy
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if learn not in LEARN:
        raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")
    t2i.check_guidance_scale(guidance_scale)
    start = time.perf_counter()
    store = attention.AttentionStore()
    store.begin(num_inference_steps)
    z0, cond, uncond = inversion._text_setup(bundle, images, prompts, num_inference_steps)
    dev = next(bundle.unet.parameters()).device
    with attention.controlled(bundle.unet, store), torch.no_grad():
        def eps(x, t):
            out = bundle.unet(x, t, encoder_hidden_states=cond).sample
            store.end_step()
            return out
        pivot = inversion.ddim_invert(eps, bundle.scheduler, z0, num_inference_steps)
    # store.cross[k] is inversion step k (low t first); the sampling step i (high t first) pairs with k = T-1-i
    target_maps = [torch.stack([m for m in store.cross[k]["down"] + store.cross[k]["mid"] + store.cross[k]["up"]
                                if m.shape[1] == 256]).mean(0) for k in range(num_inference_steps)][::-1]
    tokens = image_tokens(clip_bundle, _as_images(bundle, images)).to(dev)
    fwd, _ = inversion.inversion_schedulers(bundle.scheduler)
    fwd.set_timesteps(num_inference_steps)
    targets = list(reversed(pivot.latents[:-1]))
    net = (DirectEmbedding(cond) if form == "direct" else MappingNetwork(tokens.shape[1], cond.shape[1], form)).to(dev)
    ctrl = ValueController(learn)
    ctrl.guided, ctrl.caption = guidance_scale != 1.0, cond
    networks, losses = [], []
    x = pivot.x_T.to(dev)
    with attention.controlled(bundle.unet, ctrl):
        ctrl.begin(num_inference_steps)
        for i, (t, target) in enumerate(zip(fwd.timesteps, targets)):
            target, a_hat = target.to(dev), target_maps[i].to(dev)
            net = copy.deepcopy(net).train()
            opt = torch.optim.Adam(net.parameters(), lr=lr * (1 - i / 100), betas=(0.0, 0.999))
            rec = att = float("nan")
            for _ in range(inner_iterations(i, iterations)):
                ctrl.maps = []
                with torch.enable_grad():
                    e = net(tokens, cond)
                    eps_ = _guided(bundle, x, t, cond, uncond, guidance_scale, ctrl, e)
                    l_rec = F.mse_loss(fwd.step(eps_, t, x).prev_sample, target)
                    l_att = F.mse_loss(torch.stack(ctrl.maps).mean(0), a_hat) if ctrl.maps else torch.zeros((), device=dev)
                    loss = l_rec + lambda_att * l_att
                rec, att = l_rec.item(), l_att.item()
                if rec < early_stop + i * 2 * early_stop:
                    break
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                ctrl.maps = []
                x = fwd.step(_guided(bundle, x, t, cond, uncond, guidance_scale, ctrl, net(tokens, cond)), t, x).prev_sample
            networks.append(net)
            losses.append((rec, att))
            ctrl.end_step()
    return StyleInversion(networks, tokens, cond, pivot.x_T, pivot.timesteps, float(guidance_scale), form, learn,
                          losses, time.perf_counter() - start, [m.cpu() for m in target_maps])


def _as_images(bundle, images) -> torch.Tensor:
    from .images import to_tensor
    return to_tensor(images, size=bundle.image_size)


def attention_error(bundle, inv: StyleInversion) -> float:
    """Mean squared difference between the reconstruction's 16x16 cross-attention maps (conditional branch,
    averaged over layers) and the DDIM inversion's â_t, over all steps: what L_att keeps small."""
    maps = []
    reconstruct(bundle, inv, _maps=maps)
    return float(torch.stack([F.mse_loss(m, a) for m, a in zip(maps, inv.target_maps)]).mean())


@torch.no_grad()
def reconstruct(bundle, inv: StyleInversion, tau_v: float = 1.0, _maps: Optional[list] = None) -> torch.Tensor:
    """Guided DDIM from inv.x_T with the learned inputs for the first tau_v of the steps (the caption's after)."""
    attention.check_tau(tau_v=tau_v)
    ctrl = ValueController(inv.learn, tau_v, record=_maps is not None)
    ctrl.guided, ctrl.caption = inv.guidance_scale != 1.0, inv.cond.to(next(bundle.unet.parameters()).device)
    fwd, _ = inversion.inversion_schedulers(bundle.scheduler)
    fwd.set_timesteps(inv.num_inference_steps)
    dev = next(bundle.unet.parameters()).device
    uncond = t2i.encode_prompt(bundle, [""] * inv.cond.shape[0])
    x = inv.x_T.to(dev)
    ctrl.begin(inv.num_inference_steps)
    with attention.controlled(bundle.unet, ctrl):
        for t, e in zip(fwd.timesteps, inv.embeddings()):
            ctrl.maps = []
            if not ctrl.active(tau_v):
                e = inv.cond
            x = fwd.step(_guided(bundle, x, t, inv.cond, uncond, inv.guidance_scale, ctrl, e), t, x).prev_sample
            if _maps is not None:
                _maps.append(torch.stack(ctrl.maps).mean(0).cpu())
            ctrl.end_step()
    return t2i.decode(bundle, x).cpu()


class StyleEdit(attention.Replace):
    """StyleDiffusion editing (§3.3, Fig. 6 III) with P2Plus: the source branch takes the learned value input c̃_t
    at every step (it reconstructs the image); the target branch takes c̃_t from T down to τ_v and the target
    caption's embedding after; the attention maps are injected as `attention.Replace` does (τ_c, τ_s, τ_u).
    Run it with `attention.edit(bundle, StyleEdit(...), x_T=inv.x_T, inverted=True)`."""

    def __init__(self, tokenizer, inv: StyleInversion, source_prompts, target_prompts, tau_v: float = 0.6, **kwargs):
        super().__init__(tokenizer, source_prompts, target_prompts, **kwargs)
        attention.check_tau(tau_v=tau_v)
        if inv.learn != "value":
            raise ValueError(f"editing uses a value inversion; this one learned {inv.learn!r}")
        if len(self.source_prompts) != inv.cond.shape[0]:
            raise ValueError(f"the inversion holds {inv.cond.shape[0]} images but {len(self.source_prompts)} pairs were given")
        self.tau_v = float(tau_v)
        self.learned = inv.embeddings()

    def begin(self, num_steps: int) -> None:
        if num_steps != len(self.learned):
            raise ValueError(f"the mapping networks were trained for {len(self.learned)} steps; edit with "
                             f"num_inference_steps={len(self.learned)}, got {num_steps}")
        super().begin(num_steps)

    def value_input(self, context, place_in_unet):
        P = self.num_pairs
        branches = 2 if self.guided else 1
        c = context.reshape(branches, P, 2, *context.shape[1:]).clone()
        e = self.learned[self.cur_step].to(context.device, context.dtype)
        c[branches - 1, :, 0] = e
        if self.active(self.tau_v):
            c[branches - 1, :, 1] = e
        return c.reshape(context.shape)


class DirectEmbedding(nn.Module):
    """The ablation "without M_t": optimise the value input itself, one (B, L, D) tensor per step, starting from
    the caption's embedding."""

    def __init__(self, context: torch.Tensor):
        super().__init__()
        self.embedding = nn.Parameter(context.detach().clone())

    def forward(self, tokens, context):
        return self.embedding
