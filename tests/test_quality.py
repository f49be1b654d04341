"""Quality bars of the committed toy models: they load the shipped weights and measure."""
import pytest

from diffnb import evaluate, world, zoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def attr(attr_model):
    return attr_model


@pytest.mark.parametrize("domain,bar", [("toy", 0.98), ("photo", 0.90)])
def test_toy_attr_accuracy(attr, domain, bar):
    acc = evaluate.attr_accuracy(attr, domain=domain, n=2000)
    for b in world.BINARY:
        assert acc.accuracy[b] >= bar, (domain, b, acc.accuracy)


# toy-ddpm (16,063 steps of batch 128 on a lent GPU), measured on 256 samples of 50 DDIM steps with eta = 1 (the
# DDPM posterior's variance, Eq. 6). Deterministic DDIM (eta = 0) reads as confidently but under-draws white and
# yellow backgrounds (largest frequency gap 0.157 at 50 steps, 0.280 at 200 steps). Measured on the same seed:
# turning off the clipping of pred_x0 to [-1, 1] narrows the eta = 0 gap to 0.094 but drops the confidence to 0.883,
# so the clipped deterministic trajectories are what lose the bright backgrounds; the fresh noise of eta = 1 keeps
# both bars. The card (data/models/toy-ddpm/card.md) has the eta 1 and eta 0 columns.
@pytest.fixture(scope="module")
def ddpm_quality(attr):
    samples = evaluate.ddpm_samples(zoo.load("toy-ddpm"), n=256, num_inference_steps=50, seed=0, eta=1.0)
    return evaluate.sample_quality(samples, attr)


def test_toy_ddpm_samples_are_confidently_readable(ddpm_quality):
    assert ddpm_quality.confident_all_binary >= 0.90, ddpm_quality.confident_binary


def test_toy_ddpm_colours_are_on_palette(ddpm_quality):
    for name, frac in ddpm_quality.confident_colours.items():
        assert frac >= 0.90, (name, ddpm_quality.confident_colours)


def test_toy_ddpm_attribute_frequencies_match_world(ddpm_quality):
    assert ddpm_quality.max_frequency_gap <= 0.10, ddpm_quality.frequency


@pytest.fixture(scope="module")
def clip(clip_bundle):
    return clip_bundle


def test_toy_clip_caption_to_image_retrieval(clip):
    top1 = evaluate.clip_retrieval(clip.model, clip.tokenizer, n_groups=8, group=64)
    assert top1 >= 0.80, top1


@pytest.fixture(scope="module")
def clip_zero_shot(clip):
    return evaluate.clip_zero_shot(clip.model, clip.tokenizer, n=512)


@pytest.mark.parametrize("attribute", world.BINARY)
def test_toy_clip_zero_shot_attributes(clip_zero_shot, attribute):
    assert clip_zero_shot[attribute] >= 0.90, clip_zero_shot


def test_toy_clip_directional_similarity_of_glasses_edits(clip):
    d = evaluate.clip_directional(clip.model, clip.tokenizer, "glasses", n=256)
    assert (d > 0).float().mean() >= 0.95, d


@pytest.mark.parametrize("domain,bar", [("toy", 0.85), ("photo", 0.75)])
def test_toy_seg_mean_iou(domain, bar):
    res = evaluate.seg_miou(zoo.load("toy-seg").model, domain=domain, n=1000)
    assert res["mean_iou"] >= bar, res


# toy-t2i: issue 14's bars, on 256 random partial captions, 50 DDIM steps, guidance 5 (data/models/toy-t2i/card.md
# has the numbers and what was tried for eta 0). T2I_MISSES lists the bars the shipped checkpoint does not meet yet,
# with the measured value; each is a strict xfail, so the test turns red the moment a retrained model meets it.
T2I_MISSES = {}   # none since the 4,459-step checkpoint (2026-11-29); editability measured 0.767 of 30 (colour 0.6,
                  # attribute 0.9, subject 0.8)


def _t2i_bar(name):
    reason = T2I_MISSES.get(name)
    return pytest.mark.xfail(strict=True, reason=reason) if reason else []


@pytest.mark.parametrize("name", [pytest.param("stated", marks=_t2i_bar("stated"))])
def test_toy_t2i_draws_the_stated_attributes(t2i_quality_at, name):
    q = t2i_quality_at(1.0)
    assert q.stated_agree >= 0.85, f"eta 1: every stated attribute agrees on {q.stated_agree:.3f} < 0.85 ({q})"


@pytest.mark.parametrize("attribute", [pytest.param(a, marks=_t2i_bar(a)) for a in world.ATTRIBUTE_NAMES])
def test_toy_t2i_draws_each_stated_attribute(t2i_quality_at, attribute):
    agree, times = t2i_quality_at(1.0).per_attribute[attribute]
    assert agree >= 0.80, f"eta 1: toy-attr agrees with the stated {attribute} on {agree:.3f} of {times} < 0.80"


def test_toy_t2i_draws_the_stated_subject(t2i_quality_at):
    q = t2i_quality_at(1.0)
    assert q.subject_right >= 0.95, f"eta 1: subject right on {q.subject_right:.3f} < 0.95"


def test_toy_t2i_samples_match_their_own_caption_better_than_another(t2i_quality_at):
    q = t2i_quality_at(1.0)
    assert q.clip_beats_shuffled >= 0.90, f"eta 1: CLIP beats a shuffled caption on {q.clip_beats_shuffled:.3f} < 0.90"


# The eta 0 bar (deterministic DDIM, 256 more samples) is in tests/test_quality_eta0.py, a file of its own so
# that pytest-xdist's --dist loadfile runs it beside this file's eta 1 samples, not after them.


@pytest.fixture(scope="module")
def t2i_editability(attr):
    return evaluate.t2i_editability(zoo.load("toy-t2i"), attr, n_per_kind=10, seed=0)


@pytest.mark.parametrize("name", [pytest.param("editability", marks=_t2i_bar("editability"))])
def test_toy_t2i_word_swaps_succeed(t2i_editability, name):
    e = t2i_editability
    assert e.success >= 0.70, (f"P2P word swaps on generated images succeed on {e.success:.3f} of {e.n} < 0.70 "
                               f"(per kind {e.per_kind})")
