"""Issue 5's bars, measured on the shipped toy-ddpm, toy-attr and toy-seg (25 DDIM steps, eta = 1, as notebook 08)."""
import pytest
import torch

from diffnb import guidance, world, zoo

pytestmark = pytest.mark.slow

STEPS = 25


@pytest.fixture(scope="module")
def models():
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


# Every binary attribute notebook 08 edits with toy-attr's logit, with the notebook's settings (masked to
# guidance.ATTRIBUTE_REGIONS, [12, 25) of 25 steps), on 40 fresh samples that lack the target (seeds from 20,000,
# which the notebook does not use). The standard is the smiling bar's: >= 80% edited, every other binary attribute
# kept in >= 85%.
EDITS = {"glasses": (True, 1.0), "hat": (True, 1.0), "eyes_open": (False, 3.0)}   # target, lambda (notebook 08)
N_FRESH, FRESH_SEED = 40, 20_000
# Measured misses (strict: a fix makes the test pass and the xfail fail, so the reason must be updated).
MISSES = {
    ("glasses", "kept"): "measured 2026-11-29: eyes_open kept in 0.750 of 40, smiling 0.925, hat 1.000 (bar 0.85 "
                         "each); glasses drawn over closed eyes read as open eyes (the mask must cover the eyes); "
                         "holding eyes_open with Eq. 17 (attribute_edits(hold='eyes_open')) is the candidate fix",
    ("hat", "changed"): "measured 2026-11-29: hat guidance edited 0.125 of 40 (bar 0.80) at lambda 1, [12, 25), masked "
                        "to hat + hair: a hat needs background repainted above the head, outside most masks, and "
                        "earlier than step 12 (notebook 08 §4 says so; its Exercise 2)",
    ("eyes_open", "kept"): "measured 2026-11-29: closing the eyes (lambda 3) kept glasses in 0.725 of 40 and smiling "
                           "in "
                           "0.825, hat 0.975 (bar 0.85 each): the eye mask, grown by 2 pixels, covers the glasses' "
                           "rims and reaches the mouth of small faces",
}


@pytest.fixture(scope="module")
def fresh_edits(models):
    ddpm, attr, seg = models
    # The unguided candidates are the same for every edit: seeds from FRESH_SEED, drawn in batches of N_FRESH as
    # attribute_edits(seed=FRESH_SEED, batch_size=N_FRESH) draws them, until each edit has N_FRESH samples lacking its
    # target (at most 8 * N_FRESH candidates). Drawn once here and handed to each edit as `samples`: the same seeds,
    # images and edits (each edit still runs as one batch of N_FRESH) as three separate draws of the candidates.
    batches, lacking = [], {name: 0 for name in EDITS}
    while len(batches) < 8 and min(lacking.values()) < N_FRESH:
        start = FRESH_SEED + N_FRESH * len(batches)
        batches.append(guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.Colour(0, 0.0), 0.0, 0, 0,
                                              batch_size=N_FRESH, num_inference_steps=STEPS, generator=start).images)
        with torch.no_grad():
            on = attr(batches[-1])["binary"] > 0
        for name, (target, _) in EDITS.items():
            lacking[name] += int((on[:, world.BINARY.index(name)] != target).sum())
    candidates = torch.cat(batches)
    return {name: guidance.attribute_edits(ddpm.unet, ddpm.scheduler, attr, name, target, lam, 12, STEPS, n=N_FRESH,
                                           num_inference_steps=STEPS, seg_net=seg, seed=FRESH_SEED,
                                           samples=candidates)
            for name, (target, lam) in EDITS.items()}


def _bar(name, what):
    reason = MISSES.get((name, what))
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name


@pytest.mark.parametrize("name", [_bar(n, "changed") for n in EDITS])
def test_attribute_guidance_edits_its_attribute(fresh_edits, name):
    edit = fresh_edits[name]
    rate = float(edit.changed.float().mean())
    print(f"{name}: edited {rate:.3f} of {N_FRESH}")
    assert rate >= 0.80, f"{name} guidance edited {rate:.1%} of {N_FRESH} fresh samples; bar 80%"


@pytest.mark.parametrize("name", [_bar(n, "kept") for n in EDITS])
def test_attribute_guidance_keeps_the_other_binary_attributes(fresh_edits, name):
    kept = fresh_edits[name].kept()
    others = {k: round(kept[k], 3) for k in world.BINARY if k != name}
    print(f"{name}: kept {others}")
    assert min(others.values()) >= 0.85, f"{name} guidance kept {others} of {N_FRESH}; bar 85% each"


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
    # lambda = 1e30 is caught either as a blow-up past the schedule's scale (issue 21 item 4) or, failing that, as
    # non-finite; both messages name the step and its timestep
    with pytest.raises(FloatingPointError, match=r"blew x up at step \d+ \(t = \d+\)|non-finite at t = \d+ \(step \d+"):
        guidance.guided_sample(ddpm.unet, ddpm.scheduler, guidance.AttributeLogit(attr, "glasses"), 1e30, 0, STEPS,
                               batch_size=1, num_inference_steps=STEPS, generator=0)
