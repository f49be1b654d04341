"""toy-clip: the word-level tokenizer, prompt checks, embedding helpers and the trainer (tiny random models)."""
from dataclasses import replace

import pytest
import torch

from diffnb import toyclip, world


@pytest.fixture(scope="module")
def tok():
    return toyclip.build_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = replace(toyclip.ClipTrainConfig(), text_hidden=32, text_layers=1, vision_hidden=32, vision_layers=1)
    return toyclip.build_model(cfg, tok).eval()


def test_one_token_per_word_with_bos_eos_and_eos_padding(tok):
    prompt = "a smiling cat with grey fur, tan face"
    ids = toyclip.tokenize(tok, prompt)["input_ids"][0]
    words = toyclip.words(tok, prompt)
    assert words == ["a", "smiling", "cat", "with", "grey", "fur", ",", "tan", "face"]
    assert ids.shape == (24,) and ids[0] == tok.bos_token_id
    assert tok.convert_ids_to_tokens(ids[1:len(words) + 1].tolist()) == words   # word i is token i + 1
    assert (ids[len(words) + 1:] == tok.eos_token_id).all() and tok.pad_token_id == tok.eos_token_id
    assert tok.eos_token_id == len(tok) - 1 and tok.unk_token_id not in ids


def test_tokenizer_round_trips_through_save_pretrained(tok, tmp_path):
    from transformers import PreTrainedTokenizerFast
    tok.save_pretrained(tmp_path)
    loaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    prompts = [c for c in world.sample(16, seed=3).captions] + ["", "A Cat With A Hat"]
    a, b = toyclip.tokenize(tok, prompts), toyclip.tokenize(loaded, prompts)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"])
    assert loaded.model_max_length == 24 and toyclip.is_word_level(loaded)


def test_unknown_words_are_listed_with_the_vocabulary(tok):
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['bone', 'dog'\]") as e:
        toyclip.tokenize(tok, ["a cat", "a Dog with a bone"])
    assert all(w in str(e.value) for w in world.vocabulary())


def test_too_long_prompt_is_refused(tok):
    with pytest.raises(ValueError, match="23 words.*at most 22"):
        toyclip.tokenize(tok, " ".join(["cat"] * 23))
    assert toyclip.tokenize(tok, " ".join(["cat"] * 22))["attention_mask"].sum() == 24


def test_empty_prompt_is_the_unconditional_prompt_and_bad_types_fail(tok):
    enc = toyclip.tokenize(tok, "")
    assert enc["input_ids"][0, :2].tolist() == [tok.bos_token_id, tok.eos_token_id]
    assert enc["attention_mask"][0].sum() == 2
    with pytest.raises(TypeError, match="string"):
        toyclip.tokenize(tok, 3)
    with pytest.raises(TypeError, match="string"):
        toyclip.tokenize(tok, [])


def test_config_pools_the_eos_token(tok, model):
    assert model.config.text_config.eos_token_id == tok.eos_token_id == model.text_model.eos_token_id
    enc = toyclip.tokenize(tok, ["a cat with a hat", "a robot"])
    out = model.text_model(**enc)
    eos_pos = torch.tensor([6, 3])              # BOS + 5 words, BOS + 2 words
    assert torch.allclose(out.pooler_output, out.last_hidden_state[torch.arange(2), eos_pos])


def test_embeddings_and_scores(tok, model):
    from PIL import Image
    batch = world.sample(4, seed=0)
    e_i = toyclip.image_embeds(model, batch.images)
    e_t = toyclip.text_embeds(model, tok, batch.captions)
    assert e_i.shape == e_t.shape == (4, 64)
    assert torch.allclose(e_i.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert toyclip.image_embeds(model, Image.new("RGB", (100, 70), (10, 200, 30))).shape == (1, 64)
    s = toyclip.clip_score(model, tok, batch.images, batch.captions)
    assert s.shape == (4,) and (s.abs() <= 1 + 1e-5).all()
    assert toyclip.clip_score(model, tok, batch.images, "a cat").shape == (4,)
    with pytest.raises(ValueError, match="4 images but 2 prompts"):
        toyclip.clip_score(model, tok, batch.images, ["a cat", "a robot"])


def test_directional_similarity_and_its_gradient(tok, model):
    a = world.sample(3, seed=1, glasses=False)
    b = world.with_attributes(a, glasses=True)
    x = a.images.clone().requires_grad_(True)
    d = toyclip.directional_similarity(model, tok, x, b.images, a.captions, b.captions)
    assert d.shape == (3,) and (d.abs() <= 1 + 1e-5).all()
    (1 - d).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="must differ"):
        toyclip.directional_similarity(model, tok, a.images, b.images, "a cat", "a cat")


def test_two_training_steps_write_a_loadable_model(tmp_path):
    from transformers import CLIPModel, PreTrainedTokenizerFast

    from diffnb.maint.clip_training import train_clip
    cfg = replace(toyclip.ClipTrainConfig(), steps=2, batch_size=8, text_hidden=32, vision_hidden=32,
                  text_layers=1, vision_layers=1)
    result = train_clip(cfg, tmp_path, progress=False)
    assert result.steps == 2
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_log.json"} <= \
        {p.name for p in tmp_path.iterdir()}
    model = CLIPModel.from_pretrained(tmp_path, use_safetensors=True, dtype=torch.float32)
    tok = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert model.dtype == torch.float32
    assert toyclip.text_embeds(model, tok, "a smiling robot").shape == (1, 64)


def test_real_clip_fails_fast_offline_naming_the_toy_stand_in():
    import time

    from diffnb import zoo
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"(?s)openai/clip-vit-base-patch16.*zoo.load\('toy-clip'\)"):
        zoo.load("clip-vit-b16")
    assert time.time() - t0 < 15
