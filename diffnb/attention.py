"""Attention control: Prompt-to-Prompt (Hertz et al. 2022) and P2Plus (StyleDiffusion §3.4), built on
diffusers' attention-processor extension point (`unet.set_attn_processor`), never by patching `forward`.

Every attention layer of the UNet gets a `ControlledAttnProcessor`. It computes attention exactly as
diffusers' `AttnProcessor` does, but hands the attention probabilities (batch * heads, queries, keys) to a
controller first:

    controller(probs, is_cross, place_in_unet, heads) -> probs

A controller that returns its input changes nothing; `AttentionStore` records the maps; `Replace`,
`Refine` and `Reweight` edit a target generation by injecting the source generation's maps.

The batch. `edit` denoises source and target together, pair by pair, and classifier-free guidance runs the
unconditional and conditional branches in one UNet call (t2i.guided_eps), so every processor sees

    [uncond_src_1, uncond_tgt_1, ..., uncond_src_P, uncond_tgt_P, cond_src_1, cond_tgt_1, ..., cond_tgt_P]

and reshapes its probabilities to (branch 2, pair P, source/target 2, heads, queries, keys). P2P replaces
the target's maps by the source's in the conditional branch: cross-attention while the step index i < τ_c·T,
self-attention while i < τ_s·T. P2Plus also replaces the target's *unconditional* self-attention maps while
i < τ_u·T. (The official StyleDiffusion code does this only when the two branches are separate UNet calls; in
one batched call its τ_u does nothing. Here the processor sees the whole batch, so it acts.)

τ are fractions of the sampling steps counted from the start (i = 0 is the noisiest step), as in
Prompt-to-Prompt's `cross_replace_steps` and `self_replace_steps`.

    ctrl = Replace(bundle.tokenizer, ["a person with black hair"], ["a cat with black hair"],
                   tau_c=0.6, tau_s=0.4, tau_u=0.5)
    out = edit(bundle, ctrl, x_T=x_T, guidance_scale=5.0)      # out.source, out.target
"""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import t2i, toyclip

__all__ = ["ControlledAttnProcessor", "AttentionController", "AttentionStore", "Replace", "Refine", "Reweight",
           "LocalBlend", "binarise", "install", "controlled", "edit", "EditResult", "token_index", "check_tau"]


# ----------------------------------------------------------------------------------------------
# The processor and its installation
# ----------------------------------------------------------------------------------------------
class ControlledAttnProcessor:
    """diffusers' AttnProcessor with a hook: the attention probabilities pass through `controller` before
    they weight the values; the controller may also give the cross-attention *value* input (StyleDiffusion)."""

    def __init__(self, controller, place_in_unet: str, name: str = ""):
        self.controller, self.place_in_unet, self.name = controller, place_in_unet, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        is_cross = encoder_hidden_states is not None
        if not is_cross:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        value_input = encoder_hidden_states
        if is_cross:
            value_input = self.controller.value_input(encoder_hidden_states, self.place_in_unet)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(value_input))
        query = attn.head_to_batch_dim(query)
        if attention_mask is None and not self.controller.needs_maps(is_cross, self.place_in_unet):
            # nothing to record or edit in this layer at this step: the fused kernel, same maths
            hidden_states = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        else:
            probs = attn.get_attention_scores(query, key, attention_mask)
            probs = self.controller(probs, is_cross, self.place_in_unet, attn.heads)
            hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _place(name: str) -> str:
    """'down' / 'mid' / 'up' from a processor name such as 'up_blocks.1.attentions.0...attn2.processor'."""
    return name.split("_")[0]


def install(unet, controller) -> dict:
    """Give every attention layer of `unet` a ControlledAttnProcessor driven by `controller`.
    Returns the processors that were there, for `unet.set_attn_processor(previous)`."""
    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: ControlledAttnProcessor(controller, _place(name), name) for name in previous})
    controller.num_layers = len(previous)
    return previous


class controlled:
    """Context manager: `with controlled(unet, controller): ...` installs the processors and restores the
    previous ones on exit, even after an error, leaving the UNet as it was."""

    def __init__(self, unet, controller):
        self.unet, self.controller = unet, controller

    def __enter__(self):
        self.previous = install(self.unet, self.controller)
        return self.controller

    def __exit__(self, *exc):
        self.unet.set_attn_processor(self.previous)
        return False


# ----------------------------------------------------------------------------------------------
# Controllers
# ----------------------------------------------------------------------------------------------
def check_tau(**taus) -> None:
    """Every τ is a fraction of the sampling steps, in [0, 1]."""
    for name, v in taus.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1] (a fraction of the sampling steps), got {v!r}")


class AttentionController:
    """The interface: `__call__(probs, is_cross, place_in_unet, heads) -> probs` for each attention layer, and
    `step_callback(x_t) -> x_t` after each sampling step. `cur_step` and `num_steps` are set by `edit`.
    The base class changes nothing."""

    cur_step: int = 0
    num_steps: int = 1
    num_layers: int = 0

    def begin(self, num_steps: int) -> None:
        """Called by `edit` before the first step."""
        self.cur_step, self.num_steps = 0, int(num_steps)

    def __call__(self, probs: torch.Tensor, is_cross: bool, place_in_unet: str, heads: int = 1) -> torch.Tensor:
        return probs

    def needs_maps(self, is_cross: bool, place_in_unet: str) -> bool:
        """Whether this layer's attention probabilities must be computed and passed to `__call__` at the current
        step; when not, the processor uses the fused scaled_dot_product_attention (same result, faster)."""
        return True

    def value_input(self, context: torch.Tensor, place_in_unet: str) -> torch.Tensor:
        """The input of the cross-attention value projection; by default the text embedding itself."""
        return context

    def step_callback(self, x_t: torch.Tensor) -> torch.Tensor:
        return x_t

    def end_step(self) -> None:
        self.cur_step += 1

    def active(self, tau: float) -> bool:
        """True while the current step index is below tau * num_steps."""
        return self.cur_step < tau * self.num_steps


class AttentionStore(AttentionController):
    """Records the attention maps (averaged over heads) of every layer at every step.
    cross[step][place] is a list of (B, queries, tokens) maps, one per layer; self-attention too if
    `self_attention=True` (queries x queries, large). B is the whole UNet batch (uncond half first)."""

    def __init__(self, self_attention: bool = False, max_queries: int = 256):
        self.self_attention, self.max_queries = self_attention, max_queries
        self.cross, self.self_ = [], []

    def begin(self, num_steps: int) -> None:
        super().begin(num_steps)
        self.cross, self.self_ = [], []

    def _slot(self, store: list) -> dict:
        while len(store) <= self.cur_step:
            store.append({"down": [], "mid": [], "up": []})
        return store[self.cur_step]

    def needs_maps(self, is_cross, place_in_unet):
        return is_cross or self.self_attention

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        if probs.shape[1] <= self.max_queries and (is_cross or self.self_attention):
            maps = probs.reshape(-1, heads, *probs.shape[1:]).mean(1).detach().cpu()
            self._slot(self.cross if is_cross else self.self_)[place_in_unet].append(maps)
        return probs

    def maps(self, res: int, steps: Optional[Sequence[int]] = None, places=("down", "mid", "up"),
             kind: str = "cross") -> torch.Tensor:
        """The recorded maps at resolution res x res, averaged over layers and the given steps (default all):
        (B, res, res, keys)."""
        store = self.cross if kind == "cross" else self.self_
        steps = range(len(store)) if steps is None else steps
        picked = [m for s in steps for p in places for m in store[s][p] if m.shape[1] == res * res]
        if not picked:
            raise ValueError(f"no {kind}-attention maps were recorded at {res}x{res}; "
                             f"resolutions recorded: {sorted({int(m.shape[1] ** 0.5) for s in store for p in s.values() for m in p})}")
        out = torch.stack(picked).mean(0)
        return out.reshape(out.shape[0], res, res, out.shape[-1])


def token_index(tokenizer, prompt: str, word: str) -> list:
    """The token positions of `word` in `prompt` (word-level tokenizer: word i is token i + 1; BPE: every
    sub-token of the word). Raises a ValueError naming the prompt's words when the word is not there."""
    if toyclip.is_word_level(tokenizer):
        ws = toyclip.words(tokenizer, prompt)
        idx = [i + 1 for i, w in enumerate(ws) if w == word.lower()]
        if not idx:
            raise ValueError(f"the word {word!r} is not in the prompt {prompt!r}; its words are {ws}")
        return idx
    ids = tokenizer(prompt)["input_ids"]
    sub = tokenizer(word, add_special_tokens=False)["input_ids"]
    for i in range(len(ids) - len(sub) + 1):
        if ids[i:i + len(sub)] == sub:
            return list(range(i, i + len(sub)))
    raise ValueError(f"the word {word!r} is not in the prompt {prompt!r}; its tokens are "
                     f"{tokenizer.convert_ids_to_tokens(ids)}")


def _tokens(tokenizer, prompt: str) -> list:
    if toyclip.is_word_level(tokenizer):
        return toyclip.words(tokenizer, prompt)
    return tokenizer.convert_ids_to_tokens(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def binarise(maps: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, 1, H, W) attention maps -> {0, 1} regions: min-max normalised per image, then > threshold.
    (Prompt-to-Prompt normalises by the maximum alone; toy-t2i's maps are flat, 0.03-0.05 of the attention
    everywhere, so the minimum has to go first.)"""
    lo = maps.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = maps.flatten(1).amax(1).view(-1, 1, 1, 1)
    return ((maps - lo) / (hi - lo).clamp_min(1e-8) > threshold).to(maps.dtype)


class LocalBlend:
    """Prompt-to-Prompt's local blending: after each step, keep the source's latent outside the region where the
    given words attend (their cross-attention maps at 16x16, averaged over layers and the steps so far, max-pooled,
    `binarise`d), so the edit cannot leak outside it: x_tgt <- x_src + m * (x_tgt - x_src)."""

    def __init__(self, tokenizer, source_prompts, target_prompts, words, threshold: float = 0.5,
                 res: int = 16, start_step: int = 0):
        """words: one word, a list of words for every pair, or one list of words per pair."""
        source_prompts, target_prompts = toyclip._as_prompts(source_prompts), toyclip._as_prompts(target_prompts)
        if isinstance(words, str):
            words = [words]
        per_pair = [list(w) for w in words] if words and not isinstance(words[0], str) else [list(words)] * len(source_prompts)
        if len(per_pair) != len(source_prompts):
            raise ValueError(f"give one list of words per pair ({len(source_prompts)}), got {len(per_pair)}")
        self.res, self.threshold, self.start_step = res, float(threshold), int(start_step)
        check_tau(threshold=threshold)
        find = lambda p, ws: sum((token_index(tokenizer, p, w) for w in ws if w in _tokens(tokenizer, p)), [])  # noqa: E731
        self.src_tokens = [find(p, ws) for p, ws in zip(source_prompts, per_pair)]
        self.tgt_tokens = [find(p, ws) for p, ws in zip(target_prompts, per_pair)]
        for p, ws, s, t in zip(source_prompts, per_pair, self.src_tokens, self.tgt_tokens):
            if not s and not t:
                raise ValueError(f"none of the local-blend words {ws} is in the prompts ({p!r} ...)")
        self.sum, self.count = None, 0

    def collect(self, cond_maps: torch.Tensor) -> None:
        """cond_maps: (P, 2, queries, keys) head-averaged conditional cross-attention at this layer."""
        if cond_maps.shape[2] != self.res * self.res:
            return
        P = cond_maps.shape[0]
        m = torch.zeros(P, cond_maps.shape[2], device=cond_maps.device)
        for p in range(P):
            for k, toks in ((0, self.src_tokens[p]), (1, self.tgt_tokens[p])):
                if toks:
                    m[p] = torch.maximum(m[p], cond_maps[p, k][:, toks].sum(-1))
        self.sum = m if self.sum is None else self.sum + m
        self.count += 1

    def mask(self, size: int) -> torch.Tensor:
        m = (self.sum / self.count).reshape(-1, 1, self.res, self.res)
        m = F.max_pool2d(m, 3, stride=1, padding=1)
        return binarise(F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False), self.threshold)

    def __call__(self, x_t: torch.Tensor, step: int) -> torch.Tensor:
        if self.sum is None or step < self.start_step:
            return x_t
        pairs = x_t.reshape(-1, 2, *x_t.shape[1:])
        m = self.mask(x_t.shape[-1]).to(x_t.dtype)
        src, tgt = pairs[:, 0], pairs[:, 1]
        return torch.stack([src, src + m * (tgt - src)], 1).reshape(x_t.shape)


class EditController(AttentionController):
    """The Prompt-to-Prompt family. Subclasses say how the source's cross-attention maps become the target's
    (`cross_edit`). Windows: τ_c (conditional cross-attention), τ_s (conditional self-attention) and τ_u
    (unconditional self-attention: P2Plus; 0 gives plain P2P), each a fraction of the steps from the start."""

    def __init__(self, tokenizer, source_prompts, target_prompts, tau_c: float = 0.6, tau_s: float = 0.8,
                 tau_u: float = 0.0, local_blend: Optional[LocalBlend] = None, self_max_queries: int = 256):
        check_tau(tau_c=tau_c, tau_s=tau_s, tau_u=tau_u)
        source_prompts = toyclip._as_prompts(source_prompts)
        target_prompts = toyclip._as_prompts(target_prompts)
        if len(source_prompts) != len(target_prompts):
            raise ValueError(f"give one target prompt per source prompt: got {len(source_prompts)} sources and "
                             f"{len(target_prompts)} targets")
        toyclip.tokenize(tokenizer, source_prompts + target_prompts)       # unknown words fail here
        self.tokenizer = tokenizer
        self.source_prompts, self.target_prompts = source_prompts, target_prompts
        self.tau_c, self.tau_s, self.tau_u = float(tau_c), float(tau_s), float(tau_u)
        self.local_blend = local_blend
        self.self_max_queries = self_max_queries   # P2P skips self-attention replacement at the largest maps
        self.guided = True

    @property
    def num_pairs(self) -> int:
        return len(self.source_prompts)

    def cross_edit(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """(P, heads, queries, keys) source and target cross-attention -> the target's new maps."""
        raise NotImplementedError

    def needs_maps(self, is_cross, place_in_unet):
        if is_cross:
            return self.local_blend is not None or self.active(self.tau_c)
        return self.active(self.tau_s) or (self.guided and self.active(self.tau_u))

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        P = self.num_pairs
        branches = 2 if self.guided else 1
        if heads * branches * P * 2 != probs.shape[0]:
            raise RuntimeError(f"attention batch {probs.shape[0]} does not match {P} source/target pairs; "
                               "run the controller through attention.edit")
        a = probs.reshape(branches, P, 2, heads, *probs.shape[1:])
        cond = a[branches - 1]
        if is_cross:
            if self.local_blend is not None:
                self.local_blend.collect(cond.mean(2))
            if self.active(self.tau_c):
                a = a.clone() if a.requires_grad else a       # in place when nothing is differentiated
                a[branches - 1, :, 1] = self.cross_edit(cond[:, 0], cond[:, 1])
        elif probs.shape[1] <= self.self_max_queries:
            replace_cond, replace_uncond = self.active(self.tau_s), self.guided and self.active(self.tau_u)
            if replace_cond or replace_uncond:
                a = a.clone() if a.requires_grad else a
                if replace_cond:
                    a[branches - 1, :, 1] = a[branches - 1, :, 0]
                if replace_uncond:
                    a[0, :, 1] = a[0, :, 0]
        return a.reshape(probs.shape)

    def step_callback(self, x_t):
        if self.local_blend is not None:
            return self.local_blend(x_t, self.cur_step)
        return x_t


class Replace(EditController):
    """Word swap: the prompts have the same tokens but some; the target takes the source's cross-attention maps
    (all tokens) while i < τ_c·T. Prompts of different token lengths need `Refine`."""

    def __init__(self, tokenizer, source_prompts, target_prompts, **kwargs):
        super().__init__(tokenizer, source_prompts, target_prompts, **kwargs)
        for s, t in zip(self.source_prompts, self.target_prompts):
            ls, lt = len(_tokens(tokenizer, s)), len(_tokens(tokenizer, t))
            if ls != lt:
                raise ValueError(f"a replace edit needs prompts of the same token length; {s!r} has {ls} tokens and "
                                 f"{t!r} has {lt}. To add or remove words use Refine")

    def cross_edit(self, src, tgt):
        return src


def _alignment(tokenizer, source: str, target: str, length: int):
    """Prompt-to-Prompt's refinement mapper: for each target token, the source token it aligns with (difflib's
    longest matching blocks over the word sequences) and alpha = 1 where there is one, 0 for new words."""
    s, t = _tokens(tokenizer, source), _tokens(tokenizer, target)
    mapper, alpha = torch.arange(length), torch.ones(length)
    matched = {}
    for block in difflib.SequenceMatcher(a=s, b=t, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            matched[block.b + k] = block.a + k
    for j in range(len(t)):
        if j in matched:
            mapper[j + 1] = matched[j] + 1
        else:
            alpha[j + 1] = 0.0
    # the end-of-text token and the padding after it: the source's end token
    for j in range(len(t) + 1, length):
        mapper[j] = min(len(s) + 1 + (j - len(t) - 1), length - 1)
    return mapper, alpha


class Refine(EditController):
    """Adding (or removing) words: target tokens that also occur in the source take the aligned source token's map,
    new words keep their own (Prompt-to-Prompt's AttentionRefine)."""

    def __init__(self, tokenizer, source_prompts, target_prompts, **kwargs):
        super().__init__(tokenizer, source_prompts, target_prompts, **kwargs)
        length = tokenizer.model_max_length
        pairs = [_alignment(tokenizer, s, t, length) for s, t in zip(self.source_prompts, self.target_prompts)]
        self.mapper = torch.stack([m for m, _ in pairs])          # (P, length)
        self.alpha = torch.stack([a for _, a in pairs])           # (P, length)

    def cross_edit(self, src, tgt):
        idx = self.mapper.to(src.device).view(src.shape[0], 1, 1, -1).expand_as(src)
        aligned = src.gather(-1, idx)
        alpha = self.alpha.to(src.device, src.dtype).view(src.shape[0], 1, 1, -1)
        return aligned * alpha + tgt * (1 - alpha)


class Reweight(EditController):
    """Re-weighting a word: scale the target's cross-attention to `word` by `scale` (after replacing or refining
    from the source with `base`, when the prompts differ; Prompt-to-Prompt's AttentionReweight)."""

    def __init__(self, tokenizer, source_prompts, target_prompts, word: str, scale: float, **kwargs):
        super().__init__(tokenizer, source_prompts, target_prompts, **kwargs)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not -10 <= scale <= 10:
            raise ValueError(f"scale must be a number in [-10, 10] (1 leaves the word as it is), got {scale!r}")
        length = tokenizer.model_max_length
        self.equalizer = torch.ones(self.num_pairs, length)
        for p, prompt in enumerate(self.target_prompts):
            self.equalizer[p, token_index(tokenizer, prompt, word)] = float(scale)
        same = all(len(_tokens(tokenizer, s)) == len(_tokens(tokenizer, t))
                   for s, t in zip(self.source_prompts, self.target_prompts))
        self.base = (Replace if same else Refine)(tokenizer, self.source_prompts, self.target_prompts,
                                                  tau_c=self.tau_c, tau_s=self.tau_s, tau_u=self.tau_u)
        self.word, self.scale = word, float(scale)

    def cross_edit(self, src, tgt):
        return self.base.cross_edit(src, tgt) * self.equalizer.to(src.device, src.dtype).view(src.shape[0], 1, 1, -1)


# ----------------------------------------------------------------------------------------------
# Sampling with a controller
# ----------------------------------------------------------------------------------------------
@dataclass
class EditResult:
    """What `edit` produced: the source (reconstruction or generation) and the edited images, in [-1, 1]."""
    source: torch.Tensor           # (P, 3, H, W)
    target: torch.Tensor           # (P, 3, H, W)
    controller: object
    seconds: float = 0.0
    source_prompts: list = field(default_factory=list)
    target_prompts: list = field(default_factory=list)


def _check_x_T(bundle, x_T, P):
    shape = t2i.latent_shape(bundle)
    if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != (P, *shape):
        got = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise ValueError(f"x_T must be a ({P}, {', '.join(map(str, shape))}) tensor, one per pair, got {got}")


def _scheduler(bundle, inverted: bool):
    """DDIM for sampling: the bundle's own (which clips P_t to [-1, 1] on pixel models, needed from pure noise),
    or, from an inverted x_T, the unclipped one that retraces the inversion (inversion.inversion_schedulers)."""
    from diffusers import DDIMScheduler

    from .inversion import inversion_schedulers
    if inverted:
        return inversion_schedulers(bundle.scheduler)[0]
    return DDIMScheduler.from_config(bundle.scheduler.config)


@torch.no_grad()
def edit(bundle, controller: EditController, x_T: Optional[torch.Tensor] = None, guidance_scale: float = 5.0,
         num_inference_steps: int = 25, generator: Optional[torch.Generator] = None,
         null_embeddings: Optional[list] = None, inverted: Optional[bool] = None) -> EditResult:
    """Denoise every (source, target) pair of `controller` together from the same x_T with DDIM (eta 0),
    the controller installed on the UNet for the duration. For a real image pass its inversion: `x_T = inv.x_T`
    and `null_embeddings = inv.null_embeddings` (null-text inversion's per-step unconditional embeddings, shared
    by source and target). Without x_T the noise is drawn from `generator` (CPU).
    inverted: whether x_T comes from an inversion (then DDIM runs without clipping P_t, to retrace it); by default
    True when null_embeddings are given."""
    from diffusers.utils.torch_utils import randn_tensor
    t2i.check_guidance_scale(guidance_scale)
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 1000:
        raise ValueError(f"num_inference_steps must be an integer in [1, 1000], got {num_inference_steps!r}")
    P = controller.num_pairs
    if x_T is None:
        x_T = randn_tensor((P, *t2i.latent_shape(bundle)), generator=generator, device=torch.device("cpu"))
    _check_x_T(bundle, x_T, P)
    if null_embeddings is not None and len(null_embeddings) != num_inference_steps:
        raise ValueError(f"null_embeddings has {len(null_embeddings)} steps but num_inference_steps is "
                         f"{num_inference_steps}; invert with the same number of steps")
    dev = next(bundle.unet.parameters()).device
    prompts = [p for pair in zip(controller.source_prompts, controller.target_prompts) for p in pair]
    cond = t2i.encode_prompt(bundle, prompts)
    uncond = t2i.encode_prompt(bundle, [""] * len(prompts))
    fwd = _scheduler(bundle, null_embeddings is not None if inverted is None else inverted)
    fwd.set_timesteps(num_inference_steps)
    x = x_T.to(dev).repeat_interleave(2, dim=0)
    controller.guided = guidance_scale != 1.0
    controller.begin(num_inference_steps)
    start = time.perf_counter()
    with controlled(bundle.unet, controller):
        for i, t in enumerate(fwd.timesteps):
            if null_embeddings is not None:
                uncond = null_embeddings[i].to(dev).repeat_interleave(2, dim=0)
            eps = t2i.guided_eps(bundle.unet, x, t, cond, uncond, guidance_scale)
            x = fwd.step(eps, t, x).prev_sample
            x = controller.step_callback(x)
            controller.end_step()
    images = t2i.decode(bundle, x).cpu()
    return EditResult(images[0::2], images[1::2], controller, time.perf_counter() - start,
                      list(controller.source_prompts), list(controller.target_prompts))


@torch.no_grad()
def record(bundle, prompts, x_T: Optional[torch.Tensor] = None, guidance_scale: float = 5.0,
           num_inference_steps: int = 25, generator: Optional[torch.Generator] = None,
           self_attention: bool = False):
    """Generate images for `prompts` with an AttentionStore installed. Returns (images, store); the store's maps
    have the UNet batch [uncond; cond] along their first axis (use `cross_maps` for the conditional ones)."""
    from diffusers.utils.torch_utils import randn_tensor
    t2i.check_guidance_scale(guidance_scale)
    prompts = toyclip._as_prompts(prompts)
    if x_T is None:
        x_T = randn_tensor((len(prompts), *t2i.latent_shape(bundle)), generator=generator, device=torch.device("cpu"))
    _check_x_T(bundle, x_T, len(prompts))
    dev = next(bundle.unet.parameters()).device
    cond, uncond = t2i.encode_prompt(bundle, prompts), t2i.encode_prompt(bundle, [""] * len(prompts))
    store = AttentionStore(self_attention=self_attention)
    fwd = _scheduler(bundle, inverted=False)
    fwd.set_timesteps(num_inference_steps)
    store.begin(num_inference_steps)
    x = x_T.to(dev)
    with controlled(bundle.unet, store):
        for t in fwd.timesteps:
            x = fwd.step(t2i.guided_eps(bundle.unet, x, t, cond, uncond, guidance_scale), t, x).prev_sample
            store.end_step()
    store.guided = guidance_scale != 1.0
    return t2i.decode(bundle, x).cpu(), store


def cross_maps(store: AttentionStore, res: int = 16, steps=None) -> torch.Tensor:
    """The conditional branch's cross-attention maps from `record`: (B, res, res, tokens), averaged over layers
    at that resolution and the given steps."""
    m = store.maps(res, steps)
    return m[m.shape[0] // 2:] if getattr(store, "guided", True) else m


def word_maps(store: AttentionStore, tokenizer, prompts, res: int = 16, steps=None) -> list:
    """For each prompt, {word: (res, res) map} from the conditional cross-attention (the figure of P2P)."""
    m = cross_maps(store, res, steps)
    out = []
    for b, p in enumerate(toyclip._as_prompts(prompts)):
        out.append({w: m[b, :, :, i + 1] for i, w in enumerate(_tokens(tokenizer, p))})
    return out
