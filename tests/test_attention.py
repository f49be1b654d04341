"""diffnb.attention: processors installed through set_attn_processor, recording, P2P / P2Plus editing, bad input."""
import pytest
import torch

from diffnb import attention as A
from diffnb import t2i, zoo

SRC = ["a smiling person with black hair on a blue background", "a serious cat with grey fur on a pink background"]
TGT = ["a smiling cat with black hair on a blue background", "a serious robot with grey fur on a pink background"]


@pytest.fixture(scope="module")
def bundle():
    return zoo.load("toy-t2i")


@pytest.fixture(scope="module")
def x_T():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _unet_out(bundle, x_T):
    cond = t2i.encode_prompt(bundle, SRC)
    with torch.no_grad():
        return bundle.unet(x_T, 500, encoder_hidden_states=cond).sample


def test_identity_controller_matches_diffusers_and_restore_is_exact(bundle, x_T):
    before = _unet_out(bundle, x_T)
    processors = dict(bundle.unet.attn_processors)
    with A.controlled(bundle.unet, A.AttentionController()):
        inside = _unet_out(bundle, x_T)
        assert all(isinstance(p, A.ControlledAttnProcessor) for p in bundle.unet.attn_processors.values())
    after = _unet_out(bundle, x_T)
    assert torch.allclose(inside, before, atol=1e-5)          # same maths as diffusers' processor
    assert torch.equal(after, before)                          # restored bit for bit
    assert all(bundle.unet.attn_processors[k] is v for k, v in processors.items())


class _NoMaps(A.AttentionController):
    def needs_maps(self, is_cross, place_in_unet):
        return False


def test_fused_path_when_no_maps_are_needed(bundle, x_T):
    before = _unet_out(bundle, x_T)
    with A.controlled(bundle.unet, _NoMaps()):
        inside = _unet_out(bundle, x_T)
    assert torch.allclose(inside, before, atol=1e-5)


def test_restore_after_an_error(bundle, x_T):
    processors = dict(bundle.unet.attn_processors)
    with pytest.raises(RuntimeError):
        with A.controlled(bundle.unet, A.Replace(bundle.tokenizer, SRC, TGT)):
            _unet_out(bundle, x_T)   # batch of 2, not 2 x 2 pairs x 2 branches: the controller refuses
    assert all(bundle.unet.attn_processors[k] is v for k, v in processors.items())


def test_recorded_cross_attention_sums_to_one_over_tokens(bundle, x_T):
    images, store = A.record(bundle, SRC, x_T=x_T, num_inference_steps=4)
    for res in (16, 8):
        m = A.cross_maps(store, res)
        assert m.shape == (2, res, res, bundle.tokenizer.model_max_length)
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-4)
    assert len(store.cross) == 4
    words = A.word_maps(store, bundle.tokenizer, SRC)[0]
    assert "person" in words and words["person"].shape == (16, 16)


def test_zero_windows_reproduce_plain_generation(bundle, x_T):
    ctrl = A.Replace(bundle.tokenizer, SRC, TGT, tau_c=0.0, tau_s=0.0, tau_u=0.0)
    out = A.edit(bundle, ctrl, x_T=x_T, num_inference_steps=5)
    plain, _ = A.record(bundle, TGT, x_T=x_T, num_inference_steps=5)
    src, _ = A.record(bundle, SRC, x_T=x_T, num_inference_steps=5)
    assert torch.allclose(out.target, plain, atol=1e-4)
    assert torch.allclose(out.source, src, atol=1e-4)


def test_tau_u_changes_the_batched_output_and_not_the_source(bundle, x_T):
    p2p = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, tau_u=0.0), x_T=x_T, num_inference_steps=6)
    p2plus = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, tau_u=0.5), x_T=x_T, num_inference_steps=6)
    assert (p2p.target - p2plus.target).abs().max() > 0.05
    assert torch.equal(p2p.source, p2plus.source)


def test_self_attention_injection_keeps_the_source_layout(bundle, x_T):
    """Injecting the conditional self-attention maps at every step keeps the edit closer to the source. The margin
    is the model's: 0.189 against 0.198 without injection on the 4,459-step toy-t2i, whose plain word swap at eta 0
    already keeps most of the layout (notebook 06); the 2,000-step model kept under 0.85 of it."""
    kept = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, tau_c=0.0, tau_s=1.0, tau_u=0.0), x_T=x_T,
                  num_inference_steps=10)
    free = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, tau_c=0.0, tau_s=0.0, tau_u=0.0), x_T=x_T,
                  num_inference_steps=10)
    d_kept, d_free = (kept.target - kept.source).abs().mean(), (free.target - free.source).abs().mean()
    assert d_kept < d_free, f"with injection the edit moved {d_kept:.3f} from the source, without {d_free:.3f}"


def test_refine_alignment(bundle):
    ctrl = A.Refine(bundle.tokenizer, ["a cat on a blue background"], ["a cat with glasses on a blue background"])
    mapper, alpha = ctrl.mapper[0], ctrl.alpha[0]
    # target words: a cat with glasses on a blue background -> 'with' (3) and 'glasses' (4) are new
    assert alpha[3] == 0 and alpha[4] == 0 and alpha[1] == 1 and alpha[5] == 1
    assert mapper[5] == 3 and mapper[8] == 6   # 'on' and 'background' align with the source's


def test_reweight_scales_the_word(bundle, x_T):
    lo = A.edit(bundle, A.Reweight(bundle.tokenizer, SRC[:1], SRC[:1], word="black", scale=0.0), x_T=x_T[:1],
                num_inference_steps=5)
    hi = A.edit(bundle, A.Reweight(bundle.tokenizer, SRC[:1], SRC[:1], word="black", scale=4.0), x_T=x_T[:1],
                num_inference_steps=5)
    assert (lo.target - hi.target).abs().mean() > 0.01


class _MassProbe(A.Reweight):
    """Reweight that records the mean conditional cross-attention mass of the re-weighted word in the target."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.index = A.token_index(self.tokenizer, self.target_prompts[0], self.word)
        self.mass = []

    def cross_edit(self, src, tgt):
        out = super().cross_edit(src, tgt)
        self.mass.append(float(out[..., self.index].sum(-1).mean()))
        return out


def test_reweight_is_monotone_in_the_factor_where_the_word_is_drawn(bundle):
    """Re-weighting 'smiling' on a sample that smiles: the word's attention mass in the target's conditional
    cross-attention and toy-attr's P(smiling) of the output both rise with the factor; x1 changes nothing and
    x-2 removes the smile (issue 15: the notebook's figure once showed four identical images)."""
    attr = zoo.load("toy-attr").model
    prompt = ["a smiling cat on a pink background"]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mass, p_smile = [], []
    for scale in (-2.0, 0.0, 1.0, 3.0):
        ctrl = _MassProbe(bundle.tokenizer, prompt, prompt, word="smiling", scale=scale, tau_c=1.0, tau_s=0.8)
        out = A.edit(bundle, ctrl, x_T=x, guidance_scale=5.0, num_inference_steps=20)
        mass.append(sum(ctrl.mass) / len(ctrl.mass))
        p_smile.append(float(attr.predict(out.target).binary[0, 0]))
        if scale == 1.0:
            assert torch.allclose(out.target, out.source, atol=1e-5)      # x1 is the unedited sample
            assert p_smile[-1] > 0.5, f"the word must be drawn in the unedited sample: P(smiling) {p_smile[-1]:.3f}"
    assert all(a < b for a, b in zip(mass, mass[1:])), f"attention mass not monotone in the factor: {mass}"
    assert all(a <= b + 0.02 for a, b in zip(p_smile, p_smile[1:])), f"P(smiling) not monotone: {p_smile}"
    assert p_smile[0] < 0.5, f"x-2 should remove the smile: P(smiling) {p_smile}"


def test_local_blend_keeps_the_outside(bundle, x_T):
    lb = A.LocalBlend(bundle.tokenizer, SRC, TGT, words=["person", "cat", "robot"], threshold=0.3)
    out = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, local_blend=lb), x_T=x_T, num_inference_steps=6)
    free = A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT), x_T=x_T, num_inference_steps=6)
    outside = 1 - lb.mask(32)
    d_blend = ((out.target - out.source).abs() * outside).sum() / outside.sum()
    d_free = ((free.target - free.source).abs() * outside).sum() / outside.sum()
    assert d_blend < 0.5 * d_free


def test_edit_cache_resumes_a_moved_window_with_the_full_runs_result(bundle, x_T):
    """EditCache (a slider's reuse): moving a window resumes from the first step whose windows change, and gives a
    full run's images bit for bit, local blending's gathered maps included; any other change runs in full."""
    def run(cache, **kwargs):
        lb = A.LocalBlend(bundle.tokenizer, SRC, TGT, words=["person", "cat", "robot"], threshold=0.3)
        return A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT, local_blend=lb, **kwargs), x_T=x_T,
                      num_inference_steps=10, cache=cache)

    cache = A.EditCache()
    first = run(cache, tau_c=0.6)
    assert first.start_step == 0
    moved, full = run(cache, tau_c=0.8), run(None, tau_c=0.8)
    assert moved.start_step == 6 and full.start_step == 0
    assert torch.equal(moved.target, full.target) and torch.equal(moved.source, full.source)
    assert not torch.equal(moved.target, first.target)
    back = run(cache, tau_c=0.6)                       # back again: the last run's latents up to step 6 still hold
    assert back.start_step == 6 and torch.equal(back.target, first.target)
    again = run(cache, tau_c=0.6)                      # nothing moved: nothing to recompute
    assert again.start_step == 10 and torch.equal(again.target, first.target)
    u = run(cache, tau_c=0.6, tau_u=0.3)               # τ_u: from step 0 (it was 0), the same as a full run
    assert u.start_step == 0 and torch.equal(u.target, run(None, tau_c=0.6, tau_u=0.3).target)
    assert run(cache, tau_c=0.6, tau_u=0.5).start_step == 3
    assert "resumed at step 3" in repr(cache)
    del cache.latents[5:], cache.blend_states[5:]      # as a call interrupted at step 4 leaves it
    assert run(cache, tau_c=0.8, tau_u=0.5).start_step == 4

    def reweight(scale, x=x_T, w=5.0):
        return A.edit(bundle, A.Reweight(bundle.tokenizer, SRC, TGT, word="background", scale=scale), x_T=x,
                      guidance_scale=w, num_inference_steps=10, cache=cache)
    assert reweight(2.0).start_step == 0                # another controller type
    assert reweight(2.0).start_step == 10
    assert reweight(3.0).start_step == 0                # another factor
    assert reweight(3.0, w=6.0).start_step == 0         # another guidance scale
    assert reweight(3.0, x=x_T + 0.1).start_step == 0   # another x_T
    with pytest.raises(TypeError, match="cache must be an attention.EditCache"):
        A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT), x_T=x_T, num_inference_steps=2, cache={})


def test_bad_input(bundle, x_T):
    with pytest.raises(ValueError, match="Refine"):
        A.Replace(bundle.tokenizer, ["a cat on a blue background"], ["a cat with glasses on a blue background"])
    with pytest.raises(ValueError, match=r"'tiger'.*words are"):
        A.Reweight(bundle.tokenizer, SRC[:1], SRC[:1], word="tiger", scale=2.0)
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="tau_u must be a number in \\[0, 1\\]"):
            A.Replace(bundle.tokenizer, SRC, TGT, tau_u=bad)
    with pytest.raises(ValueError, match="tau_c"):
        A.Replace(bundle.tokenizer, SRC, TGT, tau_c=2)
    with pytest.raises(ValueError, match="one target prompt per source"):
        A.Replace(bundle.tokenizer, SRC, TGT[:1])
    with pytest.raises(ValueError, match="unknown word"):
        A.Replace(bundle.tokenizer, ["a tent in a forest"], ["a tiger in a forest"])
    with pytest.raises(ValueError, match=r"x_T must be a \(2, 3, 32, 32\)"):
        A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT), x_T=x_T[:1])
    with pytest.raises(ValueError, match="null_embeddings has 3 steps"):
        A.edit(bundle, A.Replace(bundle.tokenizer, SRC, TGT), x_T=x_T, num_inference_steps=5,
               null_embeddings=[torch.zeros(2, 24, 96)] * 3)
