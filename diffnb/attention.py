"""Prompt-to-Prompt (Hertz et al. 2022) and P2Plus (StyleDiffusion §3.4): editing by injecting a source
generation's attention maps into a target generation, through the controllers of diffnb.attention_control.

`Replace`, `Refine` and `Reweight` edit a target generation by injecting the source generation's maps.

The batch. `edit` denoises source and target together, pair by pair, and classifier-free guidance runs the
unconditional and conditional branches in one UNet call (t2i.cfg_eps), so every processor sees

    [uncond_src_1, uncond_tgt_1, ..., uncond_src_n, uncond_tgt_n, cond_src_1, cond_tgt_1, ..., cond_tgt_n]

for n pairs, and reshapes its probabilities to (branch 2, pair n, source/target 2, heads, queries, keys). P2P
replaces the target's maps by the source's in the conditional branch: cross-attention while the step index
i < τ_c·T, self-attention while i < τ_s·T. P2Plus also replaces the target's *unconditional* self-attention maps
while i < τ_u·T. (The official StyleDiffusion code does this only when the two branches are separate UNet calls;
in one batched call its τ_u does nothing. Here the processor sees the whole batch, so it acts.)

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
from typing import Optional

import torch
import torch.nn.functional as F

from . import checks, t2i, toyclip
from .attention_control import (  # noqa: F401  (the mechanism, importable from here as before)
    AttentionController,
    AttentionStore,
    ControlledAttnProcessor,
    check_tau,
    check_x_T,
    controlled,
    cross_maps,
    draw_x_T,
    install,
    invert_recording,
    prompt_tokens,
    record,
    token_index,
    word_maps,
)
from .reuse import same


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
        per_pair = ([list(w) for w in words] if words and not isinstance(words[0], str)
                    else [list(words)] * len(source_prompts))
        if len(per_pair) != len(source_prompts):
            raise ValueError(f"give one list of words per pair ({len(source_prompts)}), got {len(per_pair)}")
        self.res, self.threshold, self.start_step = res, float(threshold), int(start_step)
        checks.number("threshold", threshold, 0.0, 1.0, "(of the min-max normalised attention map)")
        find = lambda p, ws: sum((token_index(tokenizer, p, w) for w in ws if w in prompt_tokens(tokenizer, p)), [])  # noqa: E731
        self.src_tokens = [find(p, ws) for p, ws in zip(source_prompts, per_pair)]
        self.tgt_tokens = [find(p, ws) for p, ws in zip(target_prompts, per_pair)]
        for p, ws, s, t in zip(source_prompts, per_pair, self.src_tokens, self.tgt_tokens):
            if not s and not t:
                raise ValueError(f"none of the local-blend words {ws} is in the prompts ({p!r} ...)")
        self.sum, self.count = None, 0

    def settings(self) -> tuple:
        """What shapes the blend besides the maps (for `EditCache`)."""
        return (self.res, self.threshold, self.start_step, self.src_tokens, self.tgt_tokens)

    def state(self) -> tuple:
        """The maps gathered so far (for `EditCache`: a resumed edit restores them)."""
        return (None if self.sum is None else self.sum.clone(), self.count)

    def restore(self, state: tuple) -> None:
        total, self.count = state
        self.sum = None if total is None else total.clone()

    def collect(self, cond_maps: torch.Tensor) -> None:
        """cond_maps: (n_pairs, 2, queries, keys) head-averaged conditional cross-attention at this layer."""
        if cond_maps.shape[2] != self.res * self.res:
            return
        n_pairs = cond_maps.shape[0]
        m = torch.zeros(n_pairs, cond_maps.shape[2], device=cond_maps.device)
        for p in range(n_pairs):
            for k, toks in ((0, self.src_tokens[p]), (1, self.tgt_tokens[p])):
                if toks:
                    m[p] = torch.maximum(m[p], cond_maps[p, k][:, toks].sum(-1))
        self.sum = m if self.sum is None else self.sum + m
        self.count += 1

    def mask(self, size: int) -> torch.Tensor:
        m = (self.sum / self.count).reshape(-1, 1, self.res, self.res)
        m = F.max_pool2d(m, 3, stride=1, padding=1)
        return binarise(F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False), self.threshold)

    def __call__(self, x_t: torch.Tensor, step_index: int) -> torch.Tensor:
        if self.sum is None or step_index < self.start_step:
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

    @property
    def num_pairs(self) -> int:
        return len(self.source_prompts)

    def windows(self, i: int, n: int) -> tuple:
        """What the windows decide at step i of n (the test of `active`): two controllers that differ only in their
        τ's act alike at the steps where these agree (`EditCache` resumes from the first step where they do not)."""
        return (i < self.tau_c * n, i < self.tau_s * n, i < self.tau_u * n)

    def settings(self) -> tuple:
        """Everything besides the windows that shapes the edit (tensors are compared by value; `EditCache`)."""
        return (type(self).__name__, self.self_max_queries,
                None if self.local_blend is None else self.local_blend.settings())

    def cross_edit(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """(n_pairs, heads, queries, keys) source and target cross-attention -> the target's new maps."""
        raise NotImplementedError

    def needs_maps(self, is_cross, place_in_unet):
        if is_cross:
            return self.local_blend is not None or self.active(self.tau_c)
        return self.active(self.tau_s) or (self.step.uncond_branch and self.active(self.tau_u))

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        n_pairs = self.num_pairs
        branches = 2 if self.step.uncond_branch else 1
        if heads * branches * n_pairs * 2 != probs.shape[0]:
            raise RuntimeError(f"attention batch {probs.shape[0]} does not match {n_pairs} source/target pairs; "
                               "run the controller through attention.edit")
        a = probs.reshape(branches, n_pairs, 2, heads, *probs.shape[1:])
        cond = a[branches - 1]
        if is_cross:
            if self.local_blend is not None:
                self.local_blend.collect(cond.mean(2))
            if self.active(self.tau_c):
                a = a.clone() if a.requires_grad else a       # in place when nothing is differentiated
                a[branches - 1, :, 1] = self.cross_edit(cond[:, 0], cond[:, 1])
        elif probs.shape[1] <= self.self_max_queries:
            replace_cond, replace_uncond = self.active(self.tau_s), self.step.uncond_branch and self.active(self.tau_u)
            if replace_cond or replace_uncond:
                a = a.clone() if a.requires_grad else a
                if replace_cond:
                    a[branches - 1, :, 1] = a[branches - 1, :, 0]
                if replace_uncond:
                    a[0, :, 1] = a[0, :, 0]
        return a.reshape(probs.shape)

    def step_callback(self, x_t):
        if self.local_blend is not None:
            return self.local_blend(x_t, self.step.index)
        return x_t


class Replace(EditController):
    """Word swap: the prompts have the same tokens but some; the target takes the source's cross-attention maps
    (all tokens) while i < τ_c·T. Prompts of different token lengths need `Refine`."""

    def __init__(self, tokenizer, source_prompts, target_prompts, **kwargs):
        super().__init__(tokenizer, source_prompts, target_prompts, **kwargs)
        for s, t in zip(self.source_prompts, self.target_prompts):
            ls, lt = len(prompt_tokens(tokenizer, s)), len(prompt_tokens(tokenizer, t))
            if ls != lt:
                raise ValueError(f"a replace edit needs prompts of the same token length; {s!r} has {ls} tokens and "
                                 f"{t!r} has {lt}. To add or remove words use Refine")

    def cross_edit(self, src, tgt):
        return src


def _alignment(tokenizer, source: str, target: str, length: int):
    """Prompt-to-Prompt's refinement mapper: for each target token, the source token it aligns with (difflib's
    longest matching blocks over the word sequences) and alpha = 1 where there is one, 0 for new words."""
    s, t = prompt_tokens(tokenizer, source), prompt_tokens(tokenizer, target)
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
        self.mapper = torch.stack([m for m, _ in pairs])          # (n_pairs, length)
        self.alpha = torch.stack([a for _, a in pairs])           # (n_pairs, length)

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
        checks.number("scale", scale, -10, 10, "(1 leaves the word as it is)")
        length = tokenizer.model_max_length
        self.equalizer = torch.ones(self.num_pairs, length)
        for p, prompt in enumerate(self.target_prompts):
            self.equalizer[p, token_index(tokenizer, prompt, word)] = float(scale)
        same = all(len(prompt_tokens(tokenizer, s)) == len(prompt_tokens(tokenizer, t))
                   for s, t in zip(self.source_prompts, self.target_prompts))
        self.base = (Replace if same else Refine)(tokenizer, self.source_prompts, self.target_prompts,
                                                  tau_c=self.tau_c, tau_s=self.tau_s, tau_u=self.tau_u)
        self.word, self.scale = word, float(scale)

    def settings(self) -> tuple:
        return super().settings() + (self.word, self.scale, type(self.base).__name__)

    def cross_edit(self, src, tgt):
        return self.base.cross_edit(src, tgt) * self.equalizer.to(src.device, src.dtype).view(src.shape[0], 1, 1, -1)


# ----------------------------------------------------------------------------------------------
# Editing: source and target denoised together, the controller installed
# ----------------------------------------------------------------------------------------------
@dataclass
class EditResult:
    """What `edit` produced: the source (reconstruction or generation) and the edited images, in [-1, 1]."""
    source: torch.Tensor           # (n_pairs, 3, H, W)
    target: torch.Tensor           # (n_pairs, 3, H, W)
    controller: object
    seconds: float = 0.0
    source_prompts: list = field(default_factory=list)
    target_prompts: list = field(default_factory=list)
    start_step: int = 0            # the step denoising started from: 0, or where an EditCache let it resume


class EditCache:
    """Reuse between calls of `edit` for a slider: a call that differs from the last one only in its windows (τ_c,
    τ_s, τ_u; τ_v for StyleDiffusion) computes the same steps as the last call up to the first step at which the
    windows decide differently, so it resumes there from the stored latents (and local blending's maps gathered so
    far) instead of starting from x_T. The result is the same as a full run, bit for bit: the same batch goes through
    the same steps. Any other change (x_T, prompts, guidance, steps, null embeddings, the controller's type, a
    re-weighting factor, the blend's words) runs in full and starts a new record. `start_step` says where the last
    call resumed (0: a full run); each call stores n + 1 latents of the whole batch.

        cache = attention.EditCache()
        def redraw(tau_c):                              # a slider: only the steps from i = min(old, new) * T rerun
            return attention.edit(bundle, Replace(tok, src, tgt, tau_c=tau_c), x_T=x_T, cache=cache).target
    """

    def __init__(self):
        self.key, self.windows, self.latents, self.blend_states, self.start_step = None, [], [], [], 0

    def __repr__(self) -> str:
        return (f"EditCache({len(self.latents)} latents stored, last call resumed at step {self.start_step})"
                if self.key is not None else "EditCache(empty)")

    def resume_point(self, key: tuple, windows: list) -> int:
        """The step to resume from for a call with this key and these per-step windows (0: nothing to reuse). A call
        that stopped early (an error, an interrupt) stored fewer latents: never past the last one stored."""
        if self.key is None or not same(self.key, key) or len(windows) != len(self.windows):
            return 0
        first = next((i for i, (a, b) in enumerate(zip(windows, self.windows)) if a != b), len(windows))
        return min(first, len(self.latents) - 1)


@torch.no_grad()
def edit(bundle, controller: EditController, x_T: Optional[torch.Tensor] = None, guidance_scale: float = 5.0,
         num_inference_steps: int = 25, generator: Optional[torch.Generator] = None,
         null_embeddings: Optional[list] = None, inverted: Optional[bool] = None,
         cache: Optional[EditCache] = None) -> EditResult:
    """Denoise every (source, target) pair of `controller` together from the same x_T with DDIM (eta 0,
    `t2i.denoise`), the controller installed on the UNet for the duration. For a real image pass its inversion:
    `x_T = inv.x_T` and `null_embeddings = inv.null_embeddings` (null-text inversion's per-step unconditional
    embeddings, shared by source and target). Without x_T the noise is drawn from `generator` (CPU).
    inverted: whether x_T comes from an inversion (then DDIM runs without clipping P_t, to retrace it); by default
    True when null_embeddings are given.
    cache: an `EditCache`, for sliders that move the windows: the steps before the first one they change are reused
    from the last call (same result)."""
    t2i.check_run(bundle, guidance_scale, num_inference_steps)
    if cache is not None and not isinstance(cache, EditCache):
        raise TypeError(f"cache must be an attention.EditCache or None, got {type(cache).__name__}")
    x_T = draw_x_T(bundle, controller.num_pairs, x_T, generator)
    if null_embeddings is not None and len(null_embeddings) != num_inference_steps:
        raise ValueError(f"null_embeddings has {len(null_embeddings)} steps but num_inference_steps is "
                         f"{num_inference_steps}; invert with the same number of steps")
    prompts = [p for pair in zip(controller.source_prompts, controller.target_prompts) for p in pair]
    cond = t2i.encode_prompt(bundle, prompts)
    uncond = (t2i.null_embedding(bundle, len(prompts)) if null_embeddings is None
              else [n.repeat_interleave(2, dim=0) for n in null_embeddings])
    inverted = null_embeddings is not None if inverted is None else inverted
    start = time.perf_counter()
    n, x, first, callback = int(num_inference_steps), x_T.repeat_interleave(2, dim=0), 0, None
    blend = controller.local_blend
    if cache is not None:
        key = (x_T.clone(), prompts, float(guidance_scale), n, inverted, null_embeddings, controller.settings())
        windows = [controller.windows(i, n) for i in range(n)]
        first = cache.resume_point(key, windows)
        if first > 0:
            x = cache.latents[first].clone()
            if blend is not None:
                blend.restore(cache.blend_states[first])
        else:
            cache.key, cache.latents = key, [x]
            cache.blend_states = [blend.state() if blend is not None else None]
        cache.windows, cache.start_step = windows, first
        del cache.latents[first + 1:], cache.blend_states[first + 1:]

        def callback(i, t, x_prev):
            cache.latents.append(x_prev.clone())
            cache.blend_states.append(blend.state() if blend is not None else None)
    with controlled(bundle.unet, controller):
        x = t2i.denoise(bundle, x, cond, uncond, guidance_scale, n, start_index=first, inverted=inverted,
                        controller=controller, callback=callback)
    images = t2i.decode(bundle, x).cpu()
    return EditResult(images[0::2], images[1::2], controller, time.perf_counter() - start,
                      list(controller.source_prompts), list(controller.target_prompts), first)
