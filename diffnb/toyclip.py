"""toy-clip: a transformers CLIPModel and a word-level tokenizer for the toy world.

The toy stand-in for openai/clip-vit-base-patch16. Every helper here takes the real CLIP as well (the
tokenizer check and the image size follow the objects passed in), so toy and real mode share one code path.

    tok = build_tokenizer()                              # one token per word: word i is token i + 1
    enc = tokenize(tok, ["a smiling cat", ""])           # input_ids (2, 24), attention_mask (2, 24)
    s = clip_score(model, tok, images, "a cat with a hat")          # (B,) cosine in [-1, 1]
    d = directional_similarity(model, tok, img_a, img_b, "a cat", "a cat with glasses")  # (B,)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import images as images_mod
from . import world

BOS, EOS, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"
MAX_LENGTH = 24                    # tokens, BOS and EOS included
MAX_WORDS = MAX_LENGTH - 2         # words a prompt may have (a comma counts as a word)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # the pixel normalisation of openai/clip-vit-*
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
def build_tokenizer():
    """A transformers PreTrainedTokenizerFast over the toy world's vocabulary: lower-cased, split on white
    space with commas split off, one token per word, BOS/EOS added, padded with EOS (as CLIP pads)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {UNK: 0}
    for w in sorted(set(world.vocabulary()) | {","}):
        vocab[w] = len(vocab)
    vocab[BOS], vocab[EOS] = len(vocab), len(vocab) + 1      # EOS has the highest id, as in CLIP
    tk = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()           # \w+ | [^\w\s]+ : "fur," -> "fur", ","
    tk.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=UNK, model_max_length=MAX_LENGTH)


def is_word_level(tokenizer) -> bool:
    """True for toy-clip's tokenizer (one token per word), False for a BPE tokenizer like real CLIP's."""
    from tokenizers.models import WordLevel
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, WordLevel)


def words(tokenizer, prompt: str) -> list:
    """The words of `prompt` as the word-level tokenizer sees them (lower case, commas split off).
    Word i of the prompt is token i + 1 (token 0 is BOS) - the index Prompt-to-Prompt edits."""
    backend = tokenizer.backend_tokenizer
    text = backend.normalizer.normalize_str(prompt) if backend.normalizer is not None else prompt
    return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def _as_prompts(prompts) -> list:
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (list, tuple)) and prompts and all(isinstance(p, str) for p in prompts):
        return list(prompts)
    raise TypeError(f"prompts must be a string or a non-empty list of strings, got {prompts!r:.80}")


def tokenize(tokenizer, prompts) -> dict:
    """str or list of str -> {"input_ids", "attention_mask"}: (B, model_max_length) long tensors, padded.
    With the toy tokenizer every word is checked first: unknown words raise a ValueError that lists them
    and the whole vocabulary (never a silent <unk>). "" is the unconditional prompt."""
    prompts = _as_prompts(prompts)
    max_length = tokenizer.model_max_length
    if is_word_level(tokenizer):
        vocab = sorted(set(tokenizer.get_vocab()) - set(tokenizer.all_special_tokens))
        known = set(vocab)
        unknown = sorted({w for p in prompts for w in words(tokenizer, p) if w not in known})
        if unknown:
            raise ValueError(f"unknown word(s) {unknown}; the toy tokenizer knows only these words: "
                             f"{' '.join(w for w in vocab if w != ',')} (and the comma ',')")
        for p in prompts:
            if len(words(tokenizer, p)) > max_length - 2:
                raise ValueError(f"prompt {p!r} has {len(words(tokenizer, p))} words (a comma counts as one); "
                                 f"the toy tokenizer takes at most {max_length - 2}")
    else:
        for p in prompts:
            n = len(tokenizer(p)["input_ids"])
            if n > max_length:
                raise ValueError(f"prompt {p[:60]!r}... is {n} tokens long; the tokenizer takes at most {max_length}")
    enc = tokenizer(prompts, padding="max_length", max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
def clip_config(tokenizer, text_hidden: int = 96, text_layers: int = 3, vision_hidden: int = 96,
                vision_layers: int = 3, heads: int = 4, projection_dim: int = 64, patch_size: int = 8):
    """A small transformers CLIPConfig for 32x32 images (patch 8: 16 patches + CLS) and toy prompts.
    eos_token_id is the tokenizer's EOS, so CLIPTextTransformer pools the first EOS token's state."""
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=4 * text_hidden,
                          num_hidden_layers=text_layers, num_attention_heads=heads,
                          max_position_embeddings=tokenizer.model_max_length,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, projection_dim=projection_dim)
    vision = CLIPVisionConfig(image_size=world.SIZE, patch_size=patch_size, hidden_size=vision_hidden,
                              intermediate_size=4 * vision_hidden, num_hidden_layers=vision_layers,
                              num_attention_heads=heads, projection_dim=projection_dim)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)


def pixel_values(model, images) -> torch.Tensor:
    """Any accepted image input (diffnb.images.to_tensor) -> CLIP pixel values at the model's image size,
    normalised with CLIP's mean and std, on the model's device and dtype. Keeps gradients."""
    size = model.config.vision_config.image_size
    x = (images_mod.to_tensor(images, size=size) + 1) / 2
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    p = next(model.parameters())
    return ((x - mean.to(x.device)) / std.to(x.device)).to(p.device, p.dtype)


def image_embeds(model, images) -> torch.Tensor:
    """(B, projection_dim) unit-norm image embeddings E_I (CLIPModel.get_image_features().pooler_output)."""
    out = model.get_image_features(pixel_values=pixel_values(model, images))
    return F.normalize(out.pooler_output.float(), dim=-1)


def text_embeds(model, tokenizer, prompts) -> torch.Tensor:
    """(B, projection_dim) unit-norm text embeddings E_T of the EOS token (get_text_features().pooler_output)."""
    enc = tokenize(tokenizer, prompts)
    dev = next(model.parameters()).device
    out = model.get_text_features(input_ids=enc["input_ids"].to(dev), attention_mask=enc["attention_mask"].to(dev))
    return F.normalize(out.pooler_output.float(), dim=-1)


def _pair(prompts, n: int) -> list:
    prompts = _as_prompts(prompts)
    if len(prompts) == 1:
        return prompts * n
    if len(prompts) != n:
        raise ValueError(f"got {n} images but {len(prompts)} prompts; pass one prompt or one per image")
    return prompts


def clip_score(model, tokenizer, images, prompts) -> torch.Tensor:
    """(B,) cosine between each image and its prompt (one prompt is used for every image), in [-1, 1].
    (The CLIP score of Hessel et al. is 100 * max(cos, 0); we report the cosine.)"""
    e_i = image_embeds(model, images)
    return (e_i * text_embeds(model, tokenizer, _pair(prompts, len(e_i)))).sum(-1)


def directional_similarity(model, tokenizer, img_a, img_b, text_a, text_b) -> torch.Tensor:
    """(B,) cos(E_I(b) - E_I(a), E_T(b) - E_T(a)): does the image change point the way the text change
    does? (the directional CLIP loss of StyleGAN-NADA / DiffusionCLIP is 1 - this)."""
    d_i = image_embeds(model, img_b) - image_embeds(model, img_a)
    t_a, t_b = _pair(text_a, len(d_i)), _pair(text_b, len(d_i))
    if any(a == b for a, b in zip(t_a, t_b)):
        raise ValueError("text_a and text_b must differ: their difference is the edit direction")
    d_t = text_embeds(model, tokenizer, t_b) - text_embeds(model, tokenizer, t_a)
    return F.cosine_similarity(d_i, d_t, dim=-1)


# ----------------------------------------------------------------------------------------------
# The model's configuration (trained by diffnb.maint.clip_training: python -m diffnb.zoo train toy-clip)
# ----------------------------------------------------------------------------------------------
@dataclass
class ClipTrainConfig:
    """toy-clip: contrastive (image, caption) training on toy world images."""
    steps: int = 3000
    batch_size: int = 128             # image-caption pairs per step, twins included
    lr: float = 2e-3                  # AdamW, linear warm-up then cosine decay to 0
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0
    text_hidden: int = 96             # text tower width
    text_layers: int = 3
    vision_hidden: int = 96           # vision tower width
    patch_size: int = 8               # 4x4 patches of 8x8 pixels: patch 4 (64 patches) learned mouths and eyes
                                      # far more slowly (attention spread over many patches) at 3x the cost
    vision_layers: int = 3
    heads: int = 4
    projection_dim: int = 64
    p_full_caption: float = 0.3       # fraction of full captions; the rest drop each attribute w.p. U(0, 1)
    p_augment: float = 0.3            # fraction of images given the photometric augmentation (fit.augment)
    twins: float = 0.5                # fraction of each batch that are hard negatives: an image with one
                                      # binary attribute flipped (see maint.clip_training.training_pairs)
    save_every: int = 500
    log_every: int = 50
    num_threads: int = 0              # 0: leave torch's default
    max_minutes: float = 0.0          # stop (and save) after this wall time; 0: run all `steps`


def build_model(cfg: ClipTrainConfig, tokenizer):
    from transformers import CLIPModel
    return CLIPModel(clip_config(tokenizer, cfg.text_hidden, cfg.text_layers, cfg.vision_hidden,
                                 cfg.vision_layers, cfg.heads, cfg.projection_dim, cfg.patch_size))
