"""diffnb.editbench: the pairs, the three metrics and SDEdit (the Table 2 bars are in test_p2plus_bars.py)."""
import pytest
import torch

from diffnb import attention, metrics, world, zoo
from diffnb import editbench as E


@pytest.fixture(scope="module")
def attr():
    return zoo.load("toy-attr").model


def test_pairs_are_deterministic_and_cover_the_kinds():
    a, b = E.edit_pairs(4, seed=3), E.edit_pairs(4, seed=3)
    assert [p.target for p in a] == [p.target for p in b]
    assert all(torch.equal(p.image, q.image) for p, q in zip(a, b))
    assert [p.kind for p in a] == ["colour"] * 4 + ["attribute"] * 4 + ["subject"] * 4
    tok = zoo.load("toy-clip").tokenizer
    for p in a:
        assert p.source != p.target
        assert p.word in p.source.split()
        attention.Replace(tok, [p.source], [p.target])          # same token length: a word swap
        stated = world.parse_caption(p.target)
        if p.kind == "subject":
            assert stated["subject"] != p.attributes.subject


def test_metrics_are_zero_for_identical_images_and_grow_with_change(attr):
    x = world.sample(4, seed=5).images
    y = world.sample(4, seed=6).images
    assert torch.allclose(E.structure_distance(attr, x, x), torch.zeros(4), atol=1e-6)
    assert (E.structure_distance(attr, x, y) > 1e-3).all()
    metric = metrics.toy_lpips(attr)
    none = torch.zeros(4, 1, 32, 32)
    assert torch.allclose(E.ns_lpips(metric, x, x, none), torch.zeros(4), atol=1e-6)
    # with no region NS-LPIPS is the full perceptual distance (its spatial form averaged)
    assert torch.allclose(E.ns_lpips(metric, x, y, none), metric(x, y), rtol=0.05)
    # a change confined to the region counts less (the trunk's receptive fields spread it a little outside)
    region = torch.zeros(4, 1, 32, 32)
    region[..., 8:24, 8:24] = 1
    z = x.clone()
    z[..., 8:24, 8:24] = -z[..., 8:24, 8:24]
    assert (E.ns_lpips(metric, x, z, region) < 0.9 * E.ns_lpips(metric, x, z, none)).all()


def test_binarise():
    m = torch.tensor([[[[0.03, 0.045], [0.05, 0.031]]]])
    assert attention.binarise(m, 0.5).tolist() == [[[[0.0, 1.0], [1.0, 0.0]]]]


def test_sdedit_strength_and_bad_input():
    b = zoo.load("toy-t2i")
    x = world.sample(2, seed=7).images
    light = E.sdedit(b, x, ["a cat"] * 2, strength=0.2, num_inference_steps=10,
                     generator=torch.Generator().manual_seed(0))
    heavy = E.sdedit(b, x, ["a cat"] * 2, strength=1.0, num_inference_steps=10,
                     generator=torch.Generator().manual_seed(0))
    assert (light - x).abs().mean() < (heavy - x).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        E.sdedit(b, x, ["a cat"] * 2, strength=0.0)
    with pytest.raises(ValueError, match="n_per_kind"):
        E.edit_pairs(0)
    with pytest.raises(ValueError, match="unknown method"):
        E.run_methods(b, E.edit_pairs(1), methods=("masactrl",))


def test_edit_success_reads_the_swapped_attribute(attr):
    """`reads` is edit success: the unedited world image reads as its source caption, not as the target; the world
    image drawn with the target's attributes reads as the target."""
    pairs = E.edit_pairs(3, seed=11, domain="toy")
    src = torch.stack([p.image for p in pairs])
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    redrawn = torch.stack([world.render([world.Attributes(**{**p.attributes.as_dict(), **{
        k: v for k, (_, v) in E.changed(p.source, p.target).items()}})], seed=11).images[0] for p in pairs])
    assert E.reads(attr, src, sources, targets).float().mean() >= 0.8          # the source shows the source
    assert E.reads(attr, src, targets, sources).float().mean() <= 0.2          # ... and not the target
    assert E.reads(attr, redrawn, targets, sources).float().mean() >= 0.8
    assert E.changed("a cat on a blue background", "a cat with glasses on a blue background") == {
        "glasses": (None, True)}
    ok = torch.tensor([True, False, True, True, False, False, True, True, True])
    assert E.success_by_kind(pairs, ok) == pytest.approx({"all": 6 / 9, "colour": 2 / 3, "attribute": 1 / 3,
                                                          "subject": 1.0})
    with pytest.raises(ValueError, match="one caption"):
        E.reads(attr, src[:2], sources, targets)


def test_attribute_regions_and_overlap():
    seg = zoo.load("toy-seg").model
    pairs = E.edit_pairs(2, seed=4, domain="toy")
    part = E.attribute_regions(seg, pairs)
    assert part.shape == (6, 1, 32, 32) and set(part.unique().tolist()) <= {0.0, 1.0}
    assert part[4:].mean() > 0.2                                 # a subject's part is the whole figure
    ov = E.region_overlap(part, part)
    assert torch.allclose(ov["iou"], torch.ones(6)) and torch.allclose(ov["coverage"], torch.ones(6))
    half = part.clone()
    half[..., :16] = 0
    cov = E.region_overlap(half, part)["coverage"]
    assert ((cov <= 1) & (cov >= 0)).all() and (E.region_overlap(half, part)["precision"] == 1).all()


def test_table_shows_success_beside_fidelity():
    table = {"source": {"all": (0.0, 0.0, 0.6), "colour": (0.0, 0.0, 0.6)},
             "p2p": {"all": (0.01, 0.1, 0.7), "colour": (0.01, 0.1, 0.7)}}
    text = E.markdown_table(table, "toy", {"source": {"all": 0.0, "colour": 0.0}, "p2p": {"all": 0.5, "colour": 0.5}})
    assert "edit success" in text and "| unedited source | 0% |" in text and "| Null-text + P2P | 50% |" in text
    assert "edit success" not in E.markdown_table(table, "toy")
