"""Issue 4's bars on the shipped models, with notebook 02's settings (toy-t2i: 25 steps, guidance 5, fast
null-text), and its input checks."""
import pytest
import torch

from diffnb import inversion, metrics, world, zoo

pytestmark = pytest.mark.slow

GUIDANCE, STEPS, NULL_TEXT = 5.0, 25, dict(inner_steps=4, lr=5e-2)


def psnr(a, b):
    return float(metrics.psnr(a.clamp(-1, 1), b).clamp(max=99).mean())


@pytest.fixture(scope="module")
def ddpm():
    return zoo.load("toy-ddpm")


def test_ddim_inversion_of_toy_ddpm_reconstructs_held_out_images(ddpm):
    x0 = world.sample(32, seed=95_000).images
    inv = inversion.ddim_invert(ddpm.unet, ddpm.scheduler, x0, 50)
    assert psnr(inversion.ddim_reconstruct(ddpm.unet, ddpm.scheduler, inv.x_T, 50), x0) >= 30.0


@pytest.mark.parametrize("domain", ["toy", "photo", "painting"])
def test_edit_friendly_inversion_is_exact(ddpm, domain):
    x0 = world.sample(8, seed=95_100, domain=domain).images
    inv = inversion.edit_friendly_invert(ddpm.unet, ddpm.scheduler, x0, 50, generator=torch.Generator().manual_seed(0))
    assert (inversion.edit_friendly_sample(ddpm.unet, ddpm.scheduler, inv) - x0).abs().max() <= 1e-4


def test_null_text_beats_guided_ddim_and_negative_prompt_lies_between():
    t2i = zoo.load("toy-t2i")
    batch = world.sample(8, seed=95_200)
    x0, prompts = batch.images, batch.captions
    plain = psnr(inversion.text_reconstruct(t2i, inversion.text_ddim_invert(t2i, x0, prompts, STEPS, GUIDANCE)), x0)
    neg = psnr(inversion.text_reconstruct(t2i, inversion.negative_prompt_invert(t2i, x0, prompts, STEPS, GUIDANCE)), x0)
    null = psnr(inversion.text_reconstruct(t2i, inversion.null_text_invert(t2i, x0, prompts, STEPS, GUIDANCE,
                                                                           **NULL_TEXT)), x0)
    assert null >= plain + 5.0, (plain, neg, null)
    assert plain <= neg <= null, (plain, neg, null)


def test_bad_input_is_named(ddpm, tmp_path):
    x0 = world.sample(1, seed=1).images
    for bad in (0, -3, 1001, 2.5):
        with pytest.raises(ValueError, match=r"num_inference_steps must be an integer in \[1, 1000\]"):
            inversion.ddim_invert(ddpm.unet, ddpm.scheduler, x0, bad)
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        inversion.text_ddim_invert(zoo.load("toy-t2i"), str(not_image), "a cat", 5)
    with pytest.raises(ValueError, match="unicorn"):
        inversion.null_text_invert(zoo.load("toy-t2i"), x0, "a unicorn", 5)
    with pytest.raises(ValueError, match="guidance_scale"):
        inversion.negative_prompt_invert(zoo.load("toy-t2i"), x0, "a cat", 5, guidance_scale=-1)


def test_any_image_mode_and_size_is_converted():
    from PIL import Image
    t2i = zoo.load("toy-t2i")
    img = Image.new("RGBA", (57, 40), (200, 30, 30, 128))
    inv = inversion.text_ddim_invert(t2i, [img, img.convert("L"), img.convert("P")], "a cat", 3)
    assert inv.x_T.shape == (3, 3, 32, 32)
