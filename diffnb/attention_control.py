"""Attention control, the mechanism: diffusers' attention-processor extension point (`unet.set_attn_processor`),
never a patched `forward`. Prompt-to-Prompt's edits (diffnb.attention) and StyleDiffusion's value inputs
(diffnb.stylediffusion) are controllers plugged in here.

Every attention layer of the UNet gets a `ControlledAttnProcessor`. It computes attention exactly as
diffusers' `AttnProcessor` does, but hands the attention probabilities (batch * heads, queries, keys) to a
controller first:

    controller(probs, is_cross, place_in_unet, heads) -> probs

A controller that returns its input changes nothing; `AttentionStore` records the maps.

Which sampling step a UNet call belongs to is an argument, not state set from outside: the loop that drives the
UNet (`t2i.denoise`, `inversion.text_ddim_invert`) wraps each call in `controller.at(t2i.ControlStep(...))`, and
the controller reads `self.step` (the step index i, the number of steps, whether the batch holds the
unconditional branch, and per-call inputs).

    with controlled(bundle.unet, store):                 # processors installed, restored on exit
        x = t2i.denoise(bundle, x_T, cond, uncond, 5.0, 25, controller=store)
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import checks, t2i, toyclip
from .t2i import ControlStep


# ----------------------------------------------------------------------------------------------
# The processor and its installation
# ----------------------------------------------------------------------------------------------
class ControlledAttnProcessor:
    """diffusers' AttnProcessor with a hook: the attention probabilities pass through `controller` before
    they weight the values; the controller may also give the cross-attention *value* input (StyleDiffusion)."""

    def __init__(self, controller, place_in_unet: str):
        self.controller, self.place_in_unet = controller, place_in_unet

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
    unet.set_attn_processor({name: ControlledAttnProcessor(controller, _place(name)) for name in previous})
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
        checks.fraction(name, v)


class AttentionController:
    """The interface: `__call__(probs, is_cross, place_in_unet, heads) -> probs` for each attention layer,
    `needs_maps`, `value_input`, and `step_callback(x_t) -> x_t` after each sampling step. The step a call belongs
    to is `self.step`, given by the loop through `at`. The base class changes nothing."""

    step: ControlStep = ControlStep(0, 1)      # outside any loop: step 0 of 1, the batch [uncond; cond]

    @contextlib.contextmanager
    def at(self, step: ControlStep):
        """`with controller.at(step): unet(...)`: the UNet calls inside belong to `step`."""
        previous, self.step = self.step, step
        try:
            yield self
        finally:
            self.step = previous

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

    def active(self, tau: float) -> bool:
        """True while the current step index is below tau * num_steps."""
        return self.step.index < tau * self.step.num_steps


class AttentionStore(AttentionController):
    """Records the attention maps (averaged over heads) of every layer at every step.
    cross[i][place] is a list of (B, queries, tokens) maps at step i, one per layer; self-attention too if
    `self_attention=True` (queries x queries, large). B is the whole UNet batch (uncond half first when
    `uncond_branch`, as the loop said)."""

    def __init__(self, self_attention: bool = False, max_queries: int = 256):
        self.self_attention, self.max_queries = self_attention, max_queries
        self.cross, self.self_ = [], []
        self.uncond_branch = True

    def _slot(self, store: list) -> dict:
        while len(store) <= self.step.index:
            store.append({"down": [], "mid": [], "up": []})
        return store[self.step.index]

    def needs_maps(self, is_cross, place_in_unet):
        return is_cross or self.self_attention

    def __call__(self, probs, is_cross, place_in_unet, heads=1):
        if probs.shape[1] <= self.max_queries and (is_cross or self.self_attention):
            self.uncond_branch = self.step.uncond_branch
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
            recorded = sorted({int(m.shape[1] ** 0.5) for s in store for p in s.values() for m in p})
            raise ValueError(f"no {kind}-attention maps were recorded at {res}x{res}; resolutions recorded: {recorded}")
        out = torch.stack(picked).mean(0)
        return out.reshape(out.shape[0], res, res, out.shape[-1])


# ----------------------------------------------------------------------------------------------
# Words and tokens
# ----------------------------------------------------------------------------------------------
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


def prompt_tokens(tokenizer, prompt: str) -> list:
    """The prompt's tokens without BOS/EOS: its words for the word-level tokenizer, BPE pieces otherwise."""
    if toyclip.is_word_level(tokenizer):
        return toyclip.words(tokenizer, prompt)
    return tokenizer.convert_ids_to_tokens(tokenizer(prompt, add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------------------------
# Recording: while generating, and while inverting
# ----------------------------------------------------------------------------------------------
def check_x_T(bundle, x_T, batch_size: int) -> None:
    """x_T of a controlled run: (batch_size, C, H, W), one per pair (or prompt), finite, the UNet's dtype."""
    t2i.check_x_T(bundle, x_T, batch_size, "one per pair")


def draw_x_T(bundle, batch_size: int, x_T: Optional[torch.Tensor], generator: Optional[torch.Generator]):
    """x_T as given (checked), or drawn on the CPU from `generator` (a torch.Generator or an int seed)."""
    from diffusers.utils.torch_utils import randn_tensor
    generator = checks.generator(generator)
    if x_T is None:
        x_T = randn_tensor((batch_size, *t2i.latent_shape(bundle)), generator=generator, device=torch.device("cpu"))
    check_x_T(bundle, x_T, batch_size)
    return x_T


@torch.no_grad()
def record(bundle, prompts, x_T: Optional[torch.Tensor] = None, guidance_scale: float = 5.0,
           num_inference_steps: int = 25, generator: Optional[torch.Generator] = None,
           self_attention: bool = False):
    """Generate images for `prompts` with an AttentionStore installed. Returns (images, store); the store's maps
    have the UNet batch [uncond; cond] along their first axis (use `cross_maps` for the conditional ones)."""
    t2i.check_run(bundle, guidance_scale, num_inference_steps)
    prompts = toyclip._as_prompts(prompts)
    x_T = draw_x_T(bundle, len(prompts), x_T, generator)
    store = AttentionStore(self_attention=self_attention)
    with controlled(bundle.unet, store):
        x = t2i.denoise(bundle, x_T, t2i.encode_prompt(bundle, prompts), t2i.null_embedding(bundle, len(prompts)),
                        guidance_scale, num_inference_steps, controller=store)
    return t2i.decode(bundle, x).cpu(), store


def invert_recording(bundle, images, prompts, num_inference_steps: int, self_attention: bool = False):
    """DDIM-invert the images under their prompts (guidance 1, `inversion.text_ddim_invert`) with an
    AttentionStore installed. Returns (inversion, store). Step convention: store.cross[i] holds the maps of the
    inversion's UNet call over the interval that sampling step i (high t first, as `t2i.denoise` counts) walks
    back over; so store.cross[0] is the last, noisiest inversion call."""
    from . import inversion
    store = AttentionStore(self_attention=self_attention)
    with controlled(bundle.unet, store):
        inv = inversion.text_ddim_invert(bundle, images, prompts, num_inference_steps, guidance_scale=1.0,
                                         controller=store)
    return inv, store


def cross_maps(store: AttentionStore, res: int = 16, steps=None) -> torch.Tensor:
    """The conditional branch's cross-attention maps from `record`: (B, res, res, tokens), averaged over layers
    at that resolution and the given steps."""
    m = store.maps(res, steps)
    return m[m.shape[0] // 2:] if store.uncond_branch else m


def word_maps(store: AttentionStore, tokenizer, prompts, res: int = 16, steps=None) -> list:
    """For each prompt, {word: (res, res) map} from the conditional cross-attention (the figure of P2P)."""
    m = cross_maps(store, res, steps)
    out = []
    for b, p in enumerate(toyclip._as_prompts(prompts)):
        out.append({w: m[b, :, :, i + 1] for i, w in enumerate(prompt_tokens(tokenizer, p))})
    return out
