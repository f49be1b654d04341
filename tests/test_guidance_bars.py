"""Issue 5's bars, measured on the shipped toy-ddpm, toy-attr and toy-seg (25 DDIM steps, eta = 1, as notebook 08)."""
import pytest
import torch

from diffnb import guidance, world, zoo

STEPS = 25


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(2)
    return zoo.load("toy-ddpm"), zoo.load("toy-attr").model, zoo.load("toy-seg").model


@pytest.fixture(scope="module")
def base(models):
    ddpm, _, _ = models
    return guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.Colour(0, 0.0), 0.0, 0, 0, batch_size=32,
                                  num_inference_steps=STEPS, generator=0)


def test_attribute_guidance_turns_smiling_on_and_keeps_the_rest(models):
    ddpm, attr, seg = models
    edit = guidance.attribute_edits(ddpm.unet, ddpm.scheduler, attr, "smiling", True, n=100,
                                    num_inference_steps=STEPS, seg_net=seg)
    assert len(edit.seeds) == 100 and not (edit.logits_before["binary"][:, 0] > 0).any()
    assert edit.changed.float().mean() >= 0.80
    kept = edit.kept()
    for name in world.BINARY:
        if name != "smiling":
            assert kept[name] >= 0.85, (name, kept)


def test_masked_colour_edit_stays_inside_the_mask(models, base):
    ddpm, _, seg = models
    mask = guidance.region_mask(seg, base.images, ("hair",), dilate=0)
    red = guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.Colour(0, 1.0), 10.0, 0, STEPS,
                                 batch_size=32, num_inference_steps=STEPS, generator=0, mask=mask)
    change = red.images - base.images                                     # (B, 3, H, W)
    inside = ((change * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)).norm(dim=1).mean()
    outside = ((change * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3))).norm(dim=1).mean()
    assert inside > 0.1 and outside < inside / 4, (float(inside), float(outside))


@pytest.mark.parametrize("more", [True, False])
def test_segmentation_guidance_moves_eye_area_as_asked(models, base, more):
    ddpm, _, seg = models
    eyes = ("left_eye", "right_eye")
    mask = guidance.region_mask(seg, base.images, eyes)
    out = guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.SegmentationMass(seg, eyes, more), 1000.0,
                                 10, STEPS, batch_size=32, num_inference_steps=STEPS, generator=0, mask=mask)

    def area(images):
        labels = seg.predict(images)
        return sum((labels == world.MASK_CLASSES.index(c)).sum((1, 2)) for c in eyes)

    moved = area(out.images) > area(base.images) if more else area(out.images) < area(base.images)
    assert moved.float().mean() >= 0.80


def test_blow_up_names_its_step_on_the_shipped_model(models):
    ddpm, attr, _ = models
    with pytest.raises(FloatingPointError, match=r"non-finite at t = \d+"):
        guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.AttributeLogit(attr, "glasses"), 1e30, 0, STEPS,
                               batch_size=1, num_inference_steps=STEPS, generator=0)
