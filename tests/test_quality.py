"""Quality bars of the committed toy models: they load the shipped weights and measure."""
import pytest

from diffnb import evaluate, world, zoo


@pytest.fixture(scope="module")
def attr():
    return zoo.load("toy-attr").model


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
def clip():
    return zoo.load("toy-clip")


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


# toy-t2i ships an intermediate checkpoint (2,000 steps) while it trains on. Measured with eta = 1, as toy-ddpm's bars
# are (data/models/toy-t2i/card.md: subject 0.980, CLIP beats shuffled 0.980, both met; every stated attribute
# 0.688, not met: smiling and skin colour are the weak ones). With eta = 0 the colours suffer most (stated 0.406,
# subject 0.910). Strict xfail: the test turns red the moment a retrained model meets the bar.
T2I_NOT_YET = pytest.mark.xfail(strict=True, reason="toy-t2i is an intermediate checkpoint; see its model card")


@pytest.fixture(scope="module")
def t2i_quality(attr, clip):
    return evaluate.t2i_quality(zoo.load("toy-t2i"), attr, clip, n=256, guidance_scale=5.0, num_inference_steps=50,
                                eta=1.0)


@T2I_NOT_YET
def test_toy_t2i_draws_the_stated_attributes(t2i_quality):
    assert t2i_quality.stated_agree >= 0.85, t2i_quality


def test_toy_t2i_draws_the_stated_subject(t2i_quality):
    assert t2i_quality.subject_right >= 0.95, t2i_quality


def test_toy_t2i_samples_match_their_own_caption_better_than_another(t2i_quality):
    assert t2i_quality.clip_beats_shuffled >= 0.90, t2i_quality
