"""StyleDiffusion (Li et al., §3.3, Alg. 1, Eqs. 5-8): invert a real image into the *value* input of
cross-attention.

Keys decide *where* a word is drawn, values decide *what* (the key/value swap of Fig. 4). So StyleDiffusion keeps
the key input as the caption's embedding c and maps the image x, through a frozen CLIP image encoder E and a
per-timestep mapping network M_t, to the value input: c̃_t = M_t(E(x)). M_t is trained so that DDIM with guidance and
the learned values retraces the DDIM-inversion trajectory (L_rec) and keeps its cross-attention maps (L_att):

    L = ||z̃_{t-1} - ẑ_{t-1}||² + λ_att ||ã_t - â_t||²              (L_rec Eq. 5, L_att Eq. 7, L Eq. 8)

Two forms of M_t (docs/official_code_notes.md), and the ablations of Figs. 14-16:
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
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import attention, attention_control, checks, sampling, t2i
from .mapping import (  # noqa: F401  (the learned inputs as data, importable from here)
    FORMS,
    LEARN,
    DirectEmbedding,
    MappingNetwork,
    StyleInversion,
    image_tokens,
    load,
    load_shipped,
    load_shipped_null_text,
    save,
    subset,
)


class ValueController(attention_control.AttentionController):
    """Gives the conditional branch's cross-attention a learned value (or key) input while the step index is
    below tau_v * T, and records that branch's 16x16 cross-attention maps, with gradients, into the step's `maps`
    list when the loop passes one (for L_att).

    values: the learned input c̃_t, one tensor for every step or a list with one per step (steps past its end get
    none); a step's own `value` (the loop's `ControlStep.value`, while M_t is trained) takes precedence.
    caption: the caption's embedding c, the value input when only the key is learned."""

    def __init__(self, learn: str = "value", tau_v: float = 1.0, values=None,
                 caption: Optional[torch.Tensor] = None):
        if learn not in LEARN:
            raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")
        attention_control.check_tau(tau_v=tau_v)
        self.learn, self.tau_v, self.values, self.caption = learn, float(tau_v), values, caption

    def _value(self) -> Optional[torch.Tensor]:
        if self.step.value is not None or self.values is None or isinstance(self.values, torch.Tensor):
            return self.step.value if self.step.value is not None else self.values
        return self.values[self.step.index] if self.step.index < len(self.values) else None

    def value_input(self, context, place_in_unet):
        """value: [uncond; c̃_t]. key: the keys come from c̃_t (passed as the UNet's context), the values stay the
        caption's: [uncond; c]. both: c̃_t for keys and values (the context as it is)."""
        value = self._value()
        if value is None or self.learn == "both" or not self.active(self.tau_v):
            return context
        uncond = context[:context.shape[0] - value.shape[0]] if self.step.uncond_branch else context[:0]
        values = value if self.learn == "value" else self.caption
        return torch.cat([uncond, values.to(context.device, context.dtype)])

    def needs_maps(self, is_cross, place_in_unet):
        return is_cross and self.step.maps is not None

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        if is_cross and self.step.maps is not None and probs.shape[1] == 256:
            b = probs.shape[0] // heads // (2 if self.step.uncond_branch else 1)
            cond = probs[probs.shape[0] - b * heads:]
            self.step.maps.append(cond.reshape(b, heads, *cond.shape[1:]).mean(1))
        return probs


def inner_iterations(i: int, scale: float = 10.0) -> int:
    """The official schedule ceil(100 e^{-0.1 i}) scaled by scale / 100 (toy default: 10 at the first step)."""
    return max(1, math.ceil(scale * math.exp(-0.1 * i)))


def check_settings(form: str, learn: str, lambda_att, iterations, lr, early_stop) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if learn not in LEARN:
        raise ValueError(f"learn must be one of {LEARN}, got {learn!r}")
    checks.number("iterations", iterations, 1.0)
    checks.number("lr", lr, 0.0, note="(> 0)")
    checks.number("lambda_att", lambda_att, 0.0)
    checks.number("early_stop", early_stop, 0.0)
    if lr == 0:
        raise ValueError("lr must be > 0, got 0")


def fit_step(bundle, ctrl: ValueController, net: nn.Module, tokens, cond, uncond, x, t, i: int, num_steps: int,
             target, a_hat, guidance_scale: float, learn: str = "value", lambda_att: float = 1.0,
             iterations: float = 100.0, lr: float = 1e-2, early_stop: float = 1e-5):
    """Alg. 1's inner loop at sampling step i: train `net` (M_t, in place) so that one DDIM step with classifier-free
    guidance from x with
    its output lands on the pivot's `target` (L_rec) and keeps the pivot's maps `a_hat` (L_att). Adam (β1, β2) =
    (0, 0.999) at lr (1 - i/100) for inner_iterations(i, iterations) iterations; each image stops early once its
    L_rec < early_stop + i * 2 early_stop. Returns the final (L_rec, L_att), averaged over the images."""
    scheduler = sampling.ddim_scheduler(bundle.scheduler, inverted=True)    # for the trial steps
    scheduler.set_timesteps(num_steps)
    # the unconditional branch does not depend on M_t: one UNet call per step, outside the inner loop
    with ctrl.at(t2i.ControlStep(i, num_steps, uncond_branch=False)), torch.no_grad():
        eps_uncond = bundle.unet(x, t, encoder_hidden_states=uncond).sample
    opt = torch.optim.Adam(net.parameters(), lr=lr * (1 - i / 100), betas=(0.0, 0.999))
    rec = att = float("nan")
    for _ in range(inner_iterations(i, iterations)):
        with torch.enable_grad():
            e = net(tokens, cond)
            maps = []                           # the conditional branch alone: no unconditional half
            with ctrl.at(t2i.ControlStep(i, num_steps, uncond_branch=False, value=e, maps=maps)):
                eps_cond = bundle.unet(x, t, encoder_hidden_states=e if learn in ("key", "both") else cond).sample
            eps = sampling.classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)
            l_rec = (scheduler.step(eps, t, x).prev_sample - target).pow(2).flatten(1).mean(1)      # per image
            l_att = ((torch.stack(maps).mean(0) - a_hat).pow(2).flatten(1).mean(1) if maps
                     else torch.zeros(len(x), device=x.device))
            # each image stops on its own once its L_rec is small enough; with beta1 = 0 a zero gradient
            # is a zero Adam step, so a stopped image's network stays as it is
            going = (l_rec >= early_stop + i * 2 * early_stop).float()
            loss = ((l_rec + lambda_att * l_att) * going).sum()
        rec, att = l_rec.mean().item(), l_att.mean().item()
        if not going.any():
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rec, att


def pivot_with_maps(bundle, images, prompts, num_inference_steps: int):
    """The DDIM inversion at guidance 1 (the pivot ẑ_t) and its conditional 16x16 cross-attention maps â_t, one
    (B, 256, L) tensor per sampling step, high t first (`attention_control.invert_recording`)."""
    pivot, store = attention_control.invert_recording(bundle, images, prompts, num_inference_steps)
    return pivot, [store.maps(16, [i]).flatten(1, 2) for i in range(num_inference_steps)]


def invert(bundle, clip_bundle, images, prompts, num_inference_steps: int = 20, guidance_scale: float = 5.0,
           form: str = "film", learn: str = "value", lambda_att: float = 1.0, iterations: float = 100.0,
           lr: float = 1e-2, early_stop: float = 1e-5, generator: Optional[torch.Generator] = None) -> StyleInversion:
    """Alg. 1. DDIM-invert the images under their captions (guidance 1), recording the conditional cross-attention
    maps â_t (`pivot_with_maps`); then walk back from ẑ_T with DDIM and classifier-free guidance (`t2i.denoise`),
    training M_t before
    each step (`fit_step`, starting from the previous step's weights) on L_rec + lambda_att L_att.
    Every image has its own M_t (MappingNetwork copies), so a batch is that many separate inversions run together.
    iterations=100 is the official schedule (100 iterations at the first step, 10 by the 23rd).
    generator: draws the mapping network's initial weights (default: torch's global generator)."""
    import copy
    check_settings(form, learn, lambda_att, iterations, lr, early_stop)
    t2i.check_guidance_scale(guidance_scale)
    start = time.perf_counter()
    n = num_inference_steps
    pivot, target_maps = pivot_with_maps(bundle, images, prompts, n)
    dev = t2i.device_of(bundle)
    cond = pivot.cond.to(dev)
    uncond = t2i.null_embedding(bundle, len(cond))
    tokens = image_tokens(clip_bundle, _as_images(bundle, images)).to(dev)
    targets = list(reversed(pivot.latents[:-1]))
    net = (DirectEmbedding(cond) if form == "direct" else
           MappingNetwork(tokens.shape[1], cond.shape[1], form, copies=len(tokens), generator=generator)).to(dev)
    networks, losses, learned = [], [], []
    # learned[i] is appended once M_t is trained, so during step i's training the controller has no value of its
    # own for step i (the unconditional call) and the trial values come with each call (ControlStep.value)
    ctrl = ValueController(learn, values=learned, caption=cond)

    def train_step(i, t, x):
        """Train M_t for step i; return the step's key input (c̃_t when keys are learned, else c)."""
        net = copy.deepcopy(networks[-1] if networks else networks_init).train()
        losses.append(fit_step(bundle, ctrl, net, tokens, cond, uncond, x, t, i, n, targets[i].to(dev),
                               target_maps[i].to(dev), guidance_scale, learn, lambda_att, iterations, lr, early_stop))
        net.eval()
        networks.append(net)
        with torch.no_grad():
            learned.append(net(tokens, cond))
        return learned[i] if learn in ("key", "both") else cond
    networks_init = net
    with attention_control.controlled(bundle.unet, ctrl):
        # the step itself records maps, as in training (the unfused attention path), and discards them
        t2i.denoise(bundle, pivot.x_T, train_step, uncond, guidance_scale, n, inverted=True, controller=ctrl,
                    step_inputs=lambda i: {"maps": []})
    return StyleInversion(networks, tokens, cond, pivot.x_T, pivot.timesteps, float(guidance_scale), form, learn,
                          losses, time.perf_counter() - start, [m.cpu() for m in target_maps])


def _as_images(bundle, images) -> torch.Tensor:
    from .images import to_tensor
    return to_tensor(images, size=bundle.image_size)


def attention_error(bundle, inv: StyleInversion, target_maps: Optional[list] = None) -> float:
    """Mean squared difference between the reconstruction's 16x16 cross-attention maps (conditional branch,
    averaged over layers) and the DDIM inversion's â_t, over all steps: what L_att keeps small. target_maps:
    â_t when `inv` was saved without them (the shipped ablations share the film run's, same images and captions)."""
    return reconstruct_with_error(bundle, inv, target_maps)[1]


def cross_attention_maps(bundle, inv: StyleInversion) -> list:
    """The reconstruction's 16x16 cross-attention maps (conditional branch, averaged over layers), one (B, 256, L)
    tensor per step, high t first: what `attention_error` compares with the inversion's â_t."""
    maps = []
    reconstruct(bundle, inv, _maps=maps)
    return maps


def reconstruct_with_error(bundle, inv: StyleInversion, target_maps: Optional[list] = None,
                           maps: Optional[list] = None):
    """`reconstruct` and `attention_error` in one sampling pass: (images, attention error). maps: a list to receive
    the reconstruction's maps (what `cross_attention_maps` returns), if wanted."""
    target_maps = inv.target_maps if target_maps is None else target_maps
    if len(target_maps) != inv.num_inference_steps or target_maps[0].shape[0] != inv.cond.shape[0]:
        raise ValueError(f"need the inversion's maps â_t for {inv.num_inference_steps} steps and {inv.cond.shape[0]} "
                         f"images; this inversion was saved without them: pass target_maps=")
    maps = [] if maps is None else maps
    images = reconstruct(bundle, inv, _maps=maps)
    return images, float(torch.stack([F.mse_loss(m, a) for m, a in zip(maps, target_maps)]).mean())


@torch.no_grad()
def reconstruct(bundle, inv: StyleInversion, tau_v: float = 1.0, _maps: Optional[list] = None) -> torch.Tensor:
    """Guided DDIM from inv.x_T with the learned inputs for the first tau_v of the steps (the caption's after)."""
    attention_control.check_tau(tau_v=tau_v)
    n = inv.num_inference_steps
    learned = inv.embeddings()
    ctrl = ValueController(inv.learn, tau_v, values=learned, caption=inv.cond.to(t2i.device_of(bundle)))
    keys = inv.learn in ("key", "both")
    cond = [learned[i] if keys and i < tau_v * n else inv.cond for i in range(n)]
    buffers = [[] for _ in range(n)]
    with attention_control.controlled(bundle.unet, ctrl):
        x = t2i.denoise(bundle, inv.x_T, cond, t2i.null_embedding(bundle, inv.cond.shape[0]), inv.guidance_scale, n,
                        inverted=True, controller=ctrl,
                        step_inputs=None if _maps is None else (lambda i: {"maps": buffers[i]}))
    if _maps is not None:
        _maps.extend(torch.stack(b).mean(0).cpu() for b in buffers)
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
            raise ValueError(f"the inversion holds {inv.cond.shape[0]} images but {len(self.source_prompts)} pairs "
                             "were given")
        self.tau_v = float(tau_v)
        self.learned = inv.embeddings()

    def windows(self, i, n):
        return super().windows(i, n) + (i < self.tau_v * n,)

    def settings(self):
        return super().settings() + (self.learned,)

    def at(self, step):
        if step.num_steps != len(self.learned):
            raise ValueError(f"the mapping networks were trained for {len(self.learned)} steps; edit with "
                             f"num_inference_steps={len(self.learned)}, got {step.num_steps}")
        return super().at(step)

    def value_input(self, context, place_in_unet):
        branches = 2 if self.step.uncond_branch else 1
        c = context.reshape(branches, self.num_pairs, 2, *context.shape[1:]).clone()
        e = self.learned[self.step.index].to(context.device, context.dtype)
        c[branches - 1, :, 0] = e
        if self.active(self.tau_v):
            c[branches - 1, :, 1] = e
        return c.reshape(context.shape)


def p2plus_edit(bundle, inv: StyleInversion, pairs, tau_v: float = 0.6, tau_c: float = 0.6, tau_s: float = 0.8,
                tau_u: float = 0.5, local_blend: bool = True, threshold: float = 0.5,
                cache: Optional[attention.EditCache] = None):
    """StyleDiffusion + P2Plus on editbench pairs whose images `inv` inverted (same order, source captions):
    `StyleEdit` with Prompt-to-Prompt's local blending on the edited word and its replacement. Returns the
    attention.EditResult (source = reconstruction, target = edit). cache: an `attention.EditCache`, for a slider
    that moves the τ's (the steps before the first one a move changes are reused; same result)."""
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    blend = attention.LocalBlend(bundle.tokenizer, sources, targets, [[p.word, p.target_word] for p in pairs],
                                 threshold=threshold) if local_blend else None
    ctrl = StyleEdit(bundle.tokenizer, inv, sources, targets, tau_v=tau_v, tau_c=tau_c, tau_s=tau_s, tau_u=tau_u,
                     local_blend=blend)
    return attention.edit(bundle, ctrl, x_T=inv.x_T, guidance_scale=inv.guidance_scale,
                          num_inference_steps=inv.num_inference_steps, inverted=True, cache=cache)


@torch.no_grad()
def sdedit(bundle, inv: StyleInversion, target_prompts, strength: float = 0.6) -> torch.Tensor:
    """StyleDiffusion + SDEdit (Fig. 18): retrace the inversion with the learned inputs from T down to the step
    where SDEdit at `strength` starts (`sampling.sdedit_start_index`, t = strength T), so the edit starts from the
    image's own noisy latent rather than a random draw of q(x_t | x_0); then finish with the target caption (plain
    DDIM with classifier-free guidance, keys and values from the target caption)."""
    from .toyclip import _as_prompts
    n = inv.num_inference_steps
    switch = sampling.sdedit_start_index(n, strength)
    target_prompts = _as_prompts(target_prompts)
    if len(target_prompts) != inv.cond.shape[0]:
        raise ValueError(f"the inversion holds {inv.cond.shape[0]} images but {len(target_prompts)} target prompts "
                         "were given")
    dev = t2i.device_of(bundle)
    target = t2i.encode_prompt(bundle, target_prompts)
    learned = inv.embeddings()
    caption = inv.cond.to(dev)
    ctrl = ValueController(inv.learn, values=learned[:switch], caption=caption)
    keys = inv.learn in ("key", "both")
    cond = [(learned[i] if keys else caption) if i < switch else target for i in range(n)]
    with attention_control.controlled(bundle.unet, ctrl):
        x = t2i.denoise(bundle, inv.x_T, cond, t2i.null_embedding(bundle, len(target_prompts)), inv.guidance_scale,
                        n, inverted=True, controller=ctrl)
    return t2i.decode(bundle, x).cpu()


@torch.no_grad()
def swap_key_value(bundle, key_prompts, value_prompts, x_T: Optional[torch.Tensor] = None,
                   guidance_scale: float = 5.0, num_inference_steps: int = 20,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fig. 4: sample with every cross-attention layer's *key* input from `key_prompts` and its *value* input
    from `value_prompts` (the unconditional branch untouched). Equal prompts give plain sampling with
    classifier-free guidance."""
    from .toyclip import _as_prompts
    t2i.check_run(bundle, guidance_scale, num_inference_steps)
    key_prompts, value_prompts = _as_prompts(key_prompts), _as_prompts(value_prompts)
    if len(key_prompts) != len(value_prompts):
        raise ValueError(f"give one value prompt per key prompt; got {len(key_prompts)} key prompts and "
                         f"{len(value_prompts)} value prompts")
    x_T = attention_control.draw_x_T(bundle, len(key_prompts), x_T, generator)
    keys, values = t2i.encode_prompt(bundle, key_prompts), t2i.encode_prompt(bundle, value_prompts)
    ctrl = ValueController("value", values=values, caption=keys)
    with attention_control.controlled(bundle.unet, ctrl):
        x = t2i.denoise(bundle, x_T, keys, t2i.null_embedding(bundle, len(key_prompts)), guidance_scale,
                        num_inference_steps, controller=ctrl)
    return t2i.decode(bundle, x).cpu()


# ----------------------------------------------------------------------------------------------
# The shipped full run (data/models/stylediffusion-photo): its settings; `python -m diffnb.stylediffusion`
# (diffnb.maint.stylediffusion_run) recomputes it
# ----------------------------------------------------------------------------------------------
FULL_RUN = dict(num_inference_steps=20, guidance_scale=5.0, iterations=100.0, lr=1e-2,   # the official schedule
                null_inner_steps=10, null_lr=1e-2,                                       # null-text's official
                table3_seed=50000, table3_n=16, ablation_n=4,
                partial_seed=7, partial_per_kind=4, table2_seed=0, table2_per_kind=3)
ABLATIONS = {"value": dict(form="value"), "direct": dict(form="direct"), "key": dict(learn="key"),
             "both": dict(learn="both"), "no-latt": dict(lambda_att=0.0),
             # toy-t2i's maps are nearly uniform, so at the official lambda_att = 1 the L_att term is about 1e-3 of
             # L_rec and changes nothing measurable; 1000 brings it to L_rec's scale
             "latt-1000": dict(lambda_att=1000.0)}


def table3_images():
    """The held-out photo images of Table 3 (the full run's, from its seed)."""
    from . import world
    return world.sample(FULL_RUN["table3_n"], seed=FULL_RUN["table3_seed"], domain="photo")


if __name__ == "__main__":   # python -m diffnb.stylediffusion: the recipe lives with the maintainers
    import sys

    from diffnb.maint.stylediffusion_run import main
    sys.exit(main())
