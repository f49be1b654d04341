"""Real mode's latent path on a tiny randomly initialised Stable-Diffusion-shaped pipeline
(AutoencoderKL + UNet2DConditionModel + CLIPTextModel), so that it is exercised without a download."""
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from diffnb import t2i, toyclip


@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(0)
    tok = toyclip.build_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=toyclip.MAX_LENGTH,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id)).eval()
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, layers_per_block=1, sample_size=32).eval()
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                layers_per_block=1, norm_num_groups=4, attention_head_dim=4).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False)
    return t2i.T2IBundle("tiny-sd", unet, text, tok, sched, vae, image_size=32, source="random")


def test_latent_sampling_decodes_to_images(tiny_sd):
    prompts = ["a smiling cat with glasses", "a robot"]
    a = t2i.sample(tiny_sd, prompts, guidance_scale=5.0, num_inference_steps=3,
                   generator=torch.Generator().manual_seed(1))
    b = t2i.sample(tiny_sd, prompts, guidance_scale=5.0, num_inference_steps=3,
                   generator=torch.Generator().manual_seed(1))
    assert a.images.shape == (2, 3, 32, 32) and a.x_T.shape == (2, 4, 16, 16)
    assert torch.isfinite(a.images).all() and torch.equal(a.images, b.images)


def test_latent_round_trip_shapes(tiny_sd):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = t2i.encode_image(tiny_sd, x)
    assert z.shape == (2, 4, 16, 16) and t2i.decode(tiny_sd, z).shape == x.shape


def test_prompt_errors_surface(tiny_sd):
    with pytest.raises(ValueError, match="knows only these words"):
        t2i.sample(tiny_sd, ["a dog"], num_inference_steps=2)
    with pytest.raises(ValueError, match="guidance_scale"):
        t2i.sample(tiny_sd, ["a cat"], guidance_scale=-1.0, num_inference_steps=2)


def test_text_inversions_run_in_latent_space(tiny_sd):
    from diffnb import inversion
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    prompts = ["a smiling cat", "a robot with glasses"]
    for inv in (inversion.text_ddim_invert(tiny_sd, x, prompts, 3, guidance_scale=5.0),
                inversion.negative_prompt_invert(tiny_sd, x, prompts, 3, guidance_scale=5.0),
                inversion.null_text_invert(tiny_sd, x, prompts, 3, guidance_scale=5.0, inner_steps=2)):
        assert inv.x_T.shape == (2, 4, 16, 16) and len(inv.null_embeddings) == 3, inv.method
        rec = inversion.text_reconstruct(tiny_sd, inv)
        assert rec.shape == x.shape and torch.isfinite(rec).all(), inv.method
