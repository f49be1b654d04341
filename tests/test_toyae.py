"""toy-ae (issue 19): the shipped autoencoder keeps every attribute toy-attr reads, and loads as a diffusers
AutoencoderKL with the latent shape SDD's mapper expects."""
import pytest
import torch

from diffnb import evaluate, toyae, world, zoo


@pytest.fixture(scope="module")
def ae():
    return zoo.load("toy-ae")


def test_toy_ae_is_a_small_autoencoderkl(ae, repo_root):
    from diffusers import AutoencoderKL
    assert isinstance(ae.vae, AutoencoderKL)
    assert ae.latent_shape == (8, 8, 8)
    size = sum(p.stat().st_size for p in (repo_root / "data/models/toy-ae").iterdir())
    assert size <= 3 * 2**20, f"toy-ae is {size / 2**20:.2f} MB, over the 3 MB budget"
    y = world.sample(4, seed=3).images
    w = toyae.encode(ae, y)
    x = toyae.decode(ae, w)
    assert w.shape == (4, 8, 8, 8) and x.shape == y.shape and x.min() >= -1 and x.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["toy", "photo"])
def test_toy_ae_keeps_every_attribute(ae, domain):
    attr = zoo.load("toy-attr").model
    with torch.no_grad():
        q = evaluate.reconstruction_quality(ae, attr, domain, n=256, seed=61_000)
    worst = min(q["agreement"], key=q["agreement"].get)
    assert q["agreement"][worst] >= 0.95, (f"toy-attr agrees between input and reconstruction on {worst} for only "
                                           f"{q['agreement'][worst]:.3f} of {domain} images (bar 0.95)")
