"""The hand-written steps of diffnb.sampling equal diffusers' schedulers (diffusers' scheduler tests are the
pattern)."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from diffnb import sampling


def dummy_eps(x_t, t):
    """A deterministic stand-in for a noise-prediction network."""
    return torch.sin(3 * x_t + 0.001 * float(t))


@pytest.fixture
def x_t():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("clipped_eps", [False, True])
def test_ddim_step_equals_diffusers(x_t, eta, clip, steps, clipped_eps):
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip)
    sched.set_timesteps(steps)
    x = 3 * x_t   # so that P_t leaves [-1, 1] and clipping (and re-deriving eps from it) matters
    for t in sched.timesteps[:: max(1, steps // 5)]:
        eps = dummy_eps(x, t)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t)))
        ref = sched.step(eps, t, x, eta=eta, variance_noise=noise, use_clipped_model_output=clipped_eps)
        ours = sampling.ddim_step(eps, t, x, sched, eta=eta, noise=noise, use_clipped_model_output=clipped_eps)
        torch.testing.assert_close(ours.prev_sample, ref.prev_sample, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.pred_x0, ref.pred_original_sample, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_map_is_diffusers_ddim_step_and_its_inverse(x_t, steps):
    """sampling.ddim_map between two levels is DDIMScheduler's eta-0 step one way and DDIMInverseScheduler's the
    other (with eps held fixed, the map is exactly invertible)."""
    from diffusers import DDIMInverseScheduler
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    inv = DDIMInverseScheduler.from_config(sched.config)
    sched.set_timesteps(steps)
    inv.set_timesteps(steps)
    a = sched.alphas_cumprod
    for t in sched.timesteps[:-1][:: max(1, steps // 5)]:   # t - Δ >= 0
        t_prev = int(t) - 1000 // steps
        eps = dummy_eps(x_t, t)
        down = sampling.ddim_map(x_t, eps, a[int(t)], a[t_prev])
        torch.testing.assert_close(down, sched.step(eps, t, x_t, eta=0.0).prev_sample, atol=1e-5, rtol=0)
        up = sampling.ddim_map(down, eps, a[t_prev], a[int(t)])
        torch.testing.assert_close(up, x_t, atol=1e-4, rtol=0)
        torch.testing.assert_close(up, inv.step(eps, t, down).prev_sample, atol=1e-4, rtol=0)   # from t - Δ to t


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("steps", [1000, 50])
def test_ddpm_step_equals_diffusers(x_t, clip, steps):
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip)
    sched.set_timesteps(steps)
    for t in list(sched.timesteps[::97]) + [sched.timesteps[-1]]:
        eps = dummy_eps(x_t, t)
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(int(t)))
        # diffusers draws its own noise: recover it by giving the same generator state
        ref = sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(int(t)))
        ours = sampling.ddpm_step(eps, t, x_t, sched, noise=noise)
        torch.testing.assert_close(ours.prev_sample, ref.prev_sample, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.pred_x0, ref.pred_original_sample, atol=1e-5, rtol=0)


def test_ddpm_is_ddim_with_eta_one(x_t):
    """Without clipping the DDPM posterior step is Eq. 3 with eta = 1."""
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    sched.set_timesteps(50)
    for t in sched.timesteps[:-1:7]:
        eps, noise = dummy_eps(x_t, t), torch.randn_like(x_t)
        a = sampling.ddim_step(eps, t, x_t, sched, eta=1.0, noise=noise)
        b = sampling.ddpm_step(eps, t, x_t, sched, noise=noise, clip_sample=False)
        torch.testing.assert_close(a.prev_sample, b.prev_sample, atol=1e-5, rtol=0)


def test_eq3_is_sum_of_parts(x_t):
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    sched.set_timesteps(20)
    t = sched.timesteps[5]
    a_t, a_prev, _ = sampling.alpha_bar_pair(sched, t)
    out = sampling.ddim_step(dummy_eps(x_t, t), t, x_t, sched)
    torch.testing.assert_close(out.prev_sample, a_prev ** 0.5 * out.pred_x0 + out.dir_xt)
    assert out.sigma == 0.0


def test_cfg_formula():
    u, c = torch.zeros(3), torch.ones(3)
    assert torch.equal(sampling.classifier_free_guidance(u, c, 1.0), c)
    assert torch.equal(sampling.classifier_free_guidance(u, c, 7.5), 7.5 * c)


def tiny_unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, layers_per_block=1)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_is_deterministic_and_matches_hand_loop(eta):
    unet, sched = tiny_unet(), DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    a = sampling.sample(unet, sched, batch_size=2, num_inference_steps=10, eta=eta,
                        generator=torch.Generator().manual_seed(3), return_trajectory=True)
    b = sampling.sample(unet, sched, batch_size=2, num_inference_steps=10, eta=eta,
                        generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.images, b.images)
    assert len(a.trajectory) == 10 and a.trajectory[0]["t"] == a.timesteps[0]
    if eta == 0:  # the hand loop from the same x_T lands on the same pixels
        x = a.x_T
        with torch.no_grad():
            for t in sched.timesteps:
                x = sampling.ddim_step(unet(x, t).sample, t, x, sched).prev_sample
        torch.testing.assert_close(x.clamp(-1, 1), a.images, atol=1e-5, rtol=0)


def test_sample_rejects_bad_input():
    unet, sched = tiny_unet(), DDIMScheduler(num_train_timesteps=1000)
    with pytest.raises(ValueError, match="num_inference_steps"):
        sampling.sample(unet, sched, num_inference_steps=0)
    with pytest.raises(ValueError, match="eta"):
        sampling.sample(unet, sched, eta=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        sampling.sample(unet, sched, batch_size=-1)
    with pytest.raises(TypeError, match="DDIMScheduler"):
        sampling.sample(unet, object())
    with pytest.raises(ValueError, match="noise"):
        sched.set_timesteps(10)
        sampling.ddim_step(torch.zeros(1, 3, 8, 8), sched.timesteps[0], torch.zeros(1, 3, 8, 8), sched, eta=0.5)


def test_quality_samples_are_deterministic_and_eta_changes_them():
    from diffnb import evaluate, zoo
    bundle = zoo.load("toy-ddpm")
    a, b = (evaluate.ddpm_samples(bundle, n=2, num_inference_steps=3, seed=5, eta=1.0) for _ in range(2))
    c = evaluate.ddpm_samples(bundle, n=2, num_inference_steps=3, seed=5, eta=0.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_t2i_quality_counts_every_stated_attribute():
    from diffnb import evaluate, world, zoo
    q = evaluate.t2i_quality(zoo.load("toy-t2i"), zoo.load("toy-attr").model, zoo.load("toy-clip"), n=6,
                             num_inference_steps=2, eta=1.0, batch_size=3)
    assert q.eta == 1.0 and q.per_attribute["subject"][1] == 6
    assert set(q.per_attribute) <= set(world.ATTRIBUTE_NAMES)
    assert all(0.0 <= frac <= 1.0 for frac, _ in q.per_attribute.values())
