"""The toy world: deterministic, attributes visible in masks, captions parse back, domains differ."""
import numpy as np
import pytest
import torch

from diffnb import world


def test_same_seed_same_pixels():
    a, b = world.sample(32, seed=5), world.sample(32, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.captions == b.captions
    assert not torch.equal(a.images, world.sample(32, seed=6).images)
    for domain in ("photo", "painting"):
        assert torch.equal(world.sample(8, seed=1, domain=domain).images, world.sample(8, seed=1, domain=domain).images)


def test_shapes_and_ranges():
    b = world.sample(16, seed=0)
    assert b.images.shape == (16, 3, 32, 32) and b.images.dtype == torch.float32
    assert b.images.min() >= -1 and b.images.max() <= 1
    assert b.masks.shape == (16, 32, 32) and int(b.masks.max()) < len(world.MASK_CLASSES)


@pytest.fixture(scope="module")
def big():
    return world.sample(600, seed=123)


def _count(mask, name):
    return int((mask == world.MASK_CLASSES.index(name)).sum())


def test_attributes_visible_in_masks(big):
    for a, m in zip(big.attributes, big.masks):
        assert (_count(m, "glasses") > 0) == a.glasses
        assert (_count(m, "hat") > 0) == a.hat
        eye = min(_count(m, "left_eye"), _count(m, "right_eye"))
        assert (eye >= 7) == a.eyes_open, (a, eye)
        assert _count(m, "head") > 50 and _count(m, "hair") > 0
        assert _count(m, "mouth") > 0 and _count(m, "ears") > 0


def test_smiling_mouth_is_bigger(big):
    areas = {True: [], False: []}
    for a, m in zip(big.attributes, big.masks):
        areas[a.smiling].append(_count(m, "mouth"))
    assert min(areas[True]) > max(areas[False])


def test_colours_follow_attributes():
    b = world.sample(200, seed=9, glasses=False, hat=False)
    for a, img, m in zip(b.attributes, b.images, b.masks):
        bg = img[:, m == 0].mean(1)
        want = torch.tensor(world.PALETTES["background"][a.background]) / 127.5 - 1
        assert (bg - want).abs().max() < 0.15


def test_caption_parses_back(big):
    rng = np.random.default_rng(0)
    for a in big.attributes[:200]:
        full = world.parse_caption(world.caption(a))
        for name in ("subject", "smiling", "eyes_open", "hair", "skin", "background"):
            assert full[name] == getattr(a, name)
        assert full.get("glasses", False) == a.glasses and full.get("hat", False) == a.hat
        part = world.parse_caption(world.partial_caption(a, rng))
        assert part["subject"] == a.subject
        assert all(getattr(a, k) == v for k, v in part.items())


def test_partial_captions_leave_things_out():
    a = world.Attributes(subject="cat", smiling=True, glasses=True, hair="grey")
    assert world.caption(a, drop=["glasses", "hair"]) .count("glasses") == 0
    assert world.parse_caption(world.caption(a, drop=["smiling", "hair", "skin", "eyes_open", "background"])) == {
        "subject": "cat", "glasses": True}


def test_domains_differ_on_same_attributes():
    attrs = world.sample_attributes(64, seed=3)
    toy = world.render(attrs, seed=3)
    for domain in ("photo", "painting"):
        other = world.render(attrs, seed=3, domain=domain)
        assert (other.images - toy.images).abs().mean() > 0.05
        assert torch.equal(other.masks, world.render(attrs, seed=3, domain=domain).masks)
    # photo adds high-frequency noise: neighbouring pixels differ more
    photo = world.render(attrs, seed=3, domain="photo").images
    def hf(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean()
    assert hf(photo) > 1.2 * hf(toy.images)


def test_with_attributes_keeps_geometry():
    b = world.sample(8, seed=2, eyes_open=True, glasses=False)
    c = world.with_attributes(b, eyes_open=False)
    head = world.MASK_CLASSES.index("head")
    assert all(not a.eyes_open for a in c.attributes)
    same = ((b.masks == head) == (c.masks == head)).float().mean()
    assert same > 0.95


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="accepted: person, cat, robot"):
        world.sample(4, subject="dog")
    with pytest.raises(ValueError, match="unknown attribute"):
        world.sample(4, beard=True)
    with pytest.raises(ValueError, match="black"):
        world.sample(4, hair="purple")
    with pytest.raises(ValueError, match="domain"):
        world.sample(4, domain="sketch")
    with pytest.raises(ValueError, match="vocabulary"):
        world.parse_caption("a dog with a hat")
    with pytest.raises(ValueError, match="positive integer"):
        world.sample(0)
    with pytest.raises(ValueError, match="True or False"):
        world.Attributes(smiling="yes")
