"""diffnb.stylediffusion: the mapping network's two forms, the value/key controller, Alg. 1 on toy-t2i."""
import pytest
import torch

from diffnb import inversion, metrics, stylediffusion as S, world, zoo


@pytest.fixture(scope="module")
def bundles():
    return zoo.load("toy-t2i"), zoo.load("toy-clip")


def test_mapping_network_shapes_and_forms():
    tokens, c = torch.randn(2, 17, 96), torch.randn(2, 24, 96)
    v = S.MappingNetwork(17, 24, "value")
    f = S.MappingNetwork(17, 24, "film")
    assert v(tokens, c).shape == (2, 24, 96) and f(tokens, c).shape == (2, 24, 96)
    assert abs(float(v.conv0.weight.detach().std()) - 0.01) < 0.003          # N(0, 0.01) initialisation
    with pytest.raises(ValueError, match="form must be one of"):
        S.MappingNetwork(17, 24, "scale")


def test_image_tokens_are_the_vision_towers(bundles):
    _, clip = bundles
    tok = S.image_tokens(clip, world.sample(2, seed=1).images)
    assert tok.shape[0] == 2 and tok.shape[-1] == clip.model.config.vision_config.hidden_size


def test_alg1_reconstructs_better_than_plain_guided_ddim(bundles):
    t2i_bundle, clip = bundles
    batch = world.sample(3, seed=123, domain="photo")
    inv = S.invert(t2i_bundle, clip, batch.images, batch.captions, num_inference_steps=10, guidance_scale=5.0,
                   iterations=10)
    assert len(inv.networks) == 10 and len(inv.losses) == 10
    rec = S.reconstruct(t2i_bundle, inv)
    plain = inversion.text_reconstruct(t2i_bundle, inversion.text_ddim_invert(t2i_bundle, batch.images, batch.captions, 10),
                                       guidance_scale=5.0)
    assert metrics.psnr(batch.images, rec).mean() > metrics.psnr(batch.images, plain).mean() + 3


def test_bad_input(bundles):
    t2i_bundle, clip = bundles
    x = world.sample(1, seed=2).images
    with pytest.raises(ValueError, match="learn must be one of"):
        S.invert(t2i_bundle, clip, x, ["a cat"], learn="query")
    with pytest.raises(ValueError, match="tau_v must be a number in"):
        S.ValueController("value", tau_v=1.5)


def test_edit_source_branch_reconstructs_and_ablations_run(bundles):
    from diffnb import attention
    t2i_bundle, clip = bundles
    batch = world.sample(2, seed=7, domain="photo")
    inv = S.invert(t2i_bundle, clip, batch.images, batch.captions, num_inference_steps=6, iterations=3)
    targets = [c.replace(a.background, "white" if a.background != "white" else "blue")
               for c, a in zip(batch.captions, batch.attributes)]
    out = attention.edit(t2i_bundle, S.StyleEdit(t2i_bundle.tokenizer, inv, batch.captions, targets, tau_v=0.5,
                                                 tau_u=0.5), x_T=inv.x_T, num_inference_steps=6, inverted=True)
    assert torch.allclose(out.source, S.reconstruct(t2i_bundle, inv), atol=1e-3)
    assert (out.target - out.source).abs().mean() > 0.01
    with pytest.raises(ValueError, match="trained for 6 steps"):
        attention.edit(t2i_bundle, S.StyleEdit(t2i_bundle.tokenizer, inv, batch.captions, targets), x_T=inv.x_T,
                       num_inference_steps=5, inverted=True)
    for kwargs in ({"form": "film"}, {"form": "direct"}, {"learn": "key"}, {"learn": "both"}, {"lambda_att": 0.0}):
        ab = S.invert(t2i_bundle, clip, batch.images, batch.captions, num_inference_steps=3, iterations=2, **kwargs)
        assert S.reconstruct(t2i_bundle, ab).shape == batch.images.shape, kwargs
