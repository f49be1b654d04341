"""Alg. 1 on a tiny random UNet: colour guidance moves the colour, masks confine it, bad input is named."""
import pytest
import torch
from diffusers import DDIMScheduler

from diffnb import guidance
from diffnb.classifiers import AttributeClassifier
from test_sampling import tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def sched():
    return DDIMScheduler(num_train_timesteps=1000, clip_sample=True)


def run(unet, fn, lam, mask=None, t1=0, t2=10):
    return guidance.guided_sample(unet, sched(), fn, lam, t1, t2, batch_size=2, num_inference_steps=10, eta=1.0,
                                  mask=mask, generator=torch.Generator().manual_seed(0))


def test_colour_guidance_moves_colour_and_mask_confines_it(unet):
    base = run(unet, guidance.Colour(0, 1.0), 0.0).images
    red = run(unet, guidance.Colour(0, 1.0), 20.0).images
    assert red[:, 0].mean() > base[:, 0].mean() + 0.05
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    masked = run(unet, guidance.Colour(0, 1.0), 20.0, mask=mask).images
    inside = (masked - base)[:, 0, :, :4].mean().abs()
    outside = (masked - base)[:, 0, :, 4:].mean().abs()
    assert inside > 4 * outside


def test_guided_run_is_deterministic_and_records_scores(unet):
    a, b = run(unet, guidance.Colour(2, -1.0), 5.0, t1=2, t2=6), run(unet, guidance.Colour(2, -1.0), 5.0, t1=2, t2=6)
    assert torch.equal(a.images, b.images) and [s[0] for s in a.scores] == [2, 3, 4, 5]
    assert a.mean_pred_x0.shape == a.images.shape


def test_attribute_and_regularised_functions_give_scores():
    net = AttributeClassifier().eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    on, off = guidance.AttributeLogit(net, "glasses", True), guidance.AttributeLogit(net, "glasses", False)
    torch.testing.assert_close(on(x), -off(x))
    reg = guidance.Regularised(on, guidance.AttributeLogit(net, "hat"), g_x0=torch.zeros(3))
    assert reg(x).shape == (3,) and (reg(x) >= on(x)).all()


def test_blow_up_is_caught_at_its_step(unet):
    with pytest.raises(FloatingPointError, match="non-finite at t ="):
        run(unet, guidance.Colour(0, 1.0), 1e38)


def test_bad_input_is_named(unet):
    with pytest.raises(ValueError, match="t1 <= t2"):
        run(unet, guidance.Colour(0, 1.0), 1.0, t1=6, t2=2)
    with pytest.raises(ValueError, match="t1 <= t2"):
        run(unet, guidance.Colour(0, 1.0), 1.0, t1=0, t2=11)
    with pytest.raises(ValueError, match="accepted: smiling"):
        guidance.AttributeLogit(AttributeClassifier(), "beard")
    with pytest.raises(ValueError, match="accepted: background"):
        guidance.SegmentationMass(AttributeClassifier(), ("nostril",))
    with pytest.raises(ValueError, match="mask must be"):
        run(unet, guidance.Colour(0, 1.0), 1.0, mask=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="channel"):
        guidance.Colour(3, 0.0)
