"""diffnb.checks: one rule per kind of argument, used by every module."""
import numpy as np
import pytest
import torch

from diffnb import checks, sampling


def test_counts_reject_bool_and_accept_integer_scalars():
    for ok in (3, np.int64(3), torch.tensor(3)):
        assert checks.count("batch_size", ok) == 3 and type(checks.count("batch_size", ok)) is int
    for bad in (True, np.bool_(True), 0, -1, 2.5, "3", None, torch.zeros(2)):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            checks.count("batch_size", bad)
    assert checks.count("inner_steps", 0, minimum=0) == 0


def test_numbers_accept_numpy_and_0d_tensors_and_refuse_nan_and_bool():
    for ok in (0.5, 1, np.float32(0.5), torch.tensor(0.5)):
        assert 0 <= checks.number("eta", ok, 0, 1) <= 1
    for bad in (True, float("nan"), float("inf"), 1.5, "0.5", torch.zeros(2)):
        with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\]"):
            checks.number("eta", bad, 0, 1)
    with pytest.raises(ValueError, match=r"strength must be a number in \(0, 1\]"):
        checks.number("strength", 0.0, 0, 1, low_open=True)


def test_num_inference_steps_and_step_indices():
    assert checks.num_inference_steps(np.int64(50)) == 50
    for bad in (0, 1001, True, 2.0):
        with pytest.raises(ValueError, match=r"num_inference_steps must be an integer in \[1, 1000\]"):
            checks.num_inference_steps(bad)
    with pytest.raises(ValueError, match=r"start_index must be a step index, an integer in \[0, 5\)"):
        checks.step_index("start_index", 5, 5)


def test_sampling_refuses_true_as_a_batch_size():
    from diffusers import DDIMScheduler
    eps = lambda x, t: torch.zeros_like(x)   # noqa: E731
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sampling.sample(eps, DDIMScheduler(num_train_timesteps=50), batch_size=True, num_inference_steps=2,
                        image_shape=(3, 4, 4))
    out = sampling.sample(eps, DDIMScheduler(num_train_timesteps=50), batch_size=np.int64(2), num_inference_steps=2,
                          image_shape=(3, 4, 4), generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 4, 4)


def test_sdedit_starts_at_the_strength_step_for_both_model_kinds():
    """SDEdit is written once: noise to step k = n - round(strength n), then denoise from k; the unconditional
    version (sampling.sdedit) visits exactly the steps from k on."""
    from diffusers import DDIMScheduler
    assert [sampling.sdedit_start_index(10, s) for s in (1.0, 0.5, 0.01)] == [0, 5, 9]
    seen = []

    def eps(x, t):
        seen.append(int(t))
        return torch.zeros_like(x)
    sched = DDIMScheduler(num_train_timesteps=50)
    out = sampling.sdedit(eps, sched, torch.zeros(1, 3, 4, 4), strength=0.4, num_inference_steps=10,
                          generator=torch.Generator().manual_seed(0))
    assert seen == [int(t) for t in sched.timesteps[6:]] and out.timesteps == seen
    with pytest.raises(ValueError, match=r"strength must be a number in \(0, 1\]"):
        sampling.sdedit(eps, sched, torch.zeros(1, 3, 4, 4), strength=0.0)


# ----------------------------------------------------------------------------------------------
# Issue 21 item 3: the raw-tensor paths check what the text paths check
# ----------------------------------------------------------------------------------------------
def test_tensor_check_names_the_argument_and_the_fault():
    x = torch.zeros(2, 3, 4, 4)
    assert checks.tensor("x_T", x, shape=(2, 3, None, 4), low=-1, high=1, dtype=torch.float32) is x
    cases = [(x.numpy(), TypeError, "x_T must be a torch tensor"),
             (x.long(), TypeError, "x_T must be a floating-point tensor"),
             (x[0], ValueError, r"x_T must have shape \(2, 3, any, 4\), got \(3, 4, 4\)"),
             (x.double(), ValueError, r"x_T has dtype torch.float64 but the model runs in torch.float32"),
             (x + float("nan"), ValueError, "x_T holds NaN or infinite values"),
             (x + 2, ValueError, r"x_T must lie in \[-1, 1\], got values in \[2, 2\]")]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            checks.tensor("x_T", bad, shape=(2, 3, None, 4), low=-1, high=1, dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny():
    from diffusers import DDIMScheduler
    from test_sampling import tiny_unet
    return tiny_unet(), DDIMScheduler(num_train_timesteps=1000, clip_sample=False)


def test_sample_checks_x_T_against_the_model(tiny):
    unet, sched = tiny                                  # sample_size 8, 3 channels, float32
    good = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert sampling.sample(unet, sched, batch_size=2, num_inference_steps=2, x_T=good).images.shape == (2, 3, 8, 8)
    cases = [(good[:, :, :4, :4], r"x_T must have shape \(2, 3, 8, 8\), got \(2, 3, 4, 4\)"),   # not the model's
             (good[:1], r"x_T must have shape \(2, 3, 8, 8\), got \(1, 3, 8, 8\)"),              # not the batch
             (good.double(), "x_T has dtype torch.float64"),
             (good * float("inf"), "x_T holds NaN or infinite values")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            sampling.sample(unet, sched, batch_size=2, num_inference_steps=2, x_T=bad)
    with pytest.raises(TypeError, match="x_T must be a floating-point tensor"):
        sampling.sample(unet, sched, batch_size=2, num_inference_steps=2, x_T=good.long())
    with pytest.raises(ValueError, match=r"image_shape \(3, 16, 16\) is not the model's sample shape \(3, 8, 8\)"):
        sampling.sample(unet, sched, batch_size=2, num_inference_steps=2, image_shape=(3, 16, 16))


def test_inversion_checks_x0_and_x_T(tiny):
    from diffnb import inversion
    unet, sched = tiny
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cases = [(x0 * 255, r"x0 must lie in \[-1, 1\], got values in"),
             (x0 + float("nan"), "x0 holds NaN or infinite values"),
             (torch.zeros(2, 3, 16, 16), r"x0 must have shape \(any, 3, 8, 8\), got \(2, 3, 16, 16\)"),
             (x0.double(), "x0 has dtype torch.float64"),
             (x0[:0], r"x0 is empty \(shape \(0, 3, 8, 8\)\)")]      # found by test_properties
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            inversion.ddim_invert(unet, sched, bad, num_inference_steps=2)
        with pytest.raises(ValueError, match=message):
            inversion.edit_friendly_invert(unet, sched, bad, num_inference_steps=2)
    x_T = inversion.ddim_invert(unet, sched, x0, num_inference_steps=2).x_T
    assert inversion.ddim_reconstruct(unet, sched, x_T, num_inference_steps=2).shape == x0.shape
    for bad, message in [(x_T + float("nan"), "x_T holds NaN"), (x_T[..., :4], r"x_T must have shape \(any, 3, 8, 8\)"),
                         (x_T.double(), "x_T has dtype torch.float64")]:
        with pytest.raises(ValueError, match=message):
            inversion.ddim_reconstruct(unet, sched, bad, num_inference_steps=2)
    with pytest.raises(TypeError, match="x_T must be a torch tensor"):
        inversion.ddim_reconstruct(unet, sched, x_T.numpy(), num_inference_steps=2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        inversion.ddim_reconstruct(unet, sched, x_T, num_inference_steps=0)


@pytest.fixture(scope="module")
def t2i_bundle():
    from diffnb import zoo
    return zoo.load("toy-t2i")


def test_t2i_sample_refuses_an_x_T_of_another_size(t2i_bundle):
    from diffnb import t2i
    message = r"x_T must be a \(1, 3, 32, 32\) tensor, one per prompt, got \(1, 3, 16, 16\)"
    with pytest.raises(ValueError, match=message):
        t2i.sample(t2i_bundle, ["a cat"], num_inference_steps=1, x_T=torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="x_T holds NaN"):
        t2i.sample(t2i_bundle, ["a cat"], num_inference_steps=1, x_T=torch.full((1, 3, 32, 32), float("nan")))


BAD_RUNS = [({"num_inference_steps": -1}, "num_inference_steps must be an integer"),
            ({"num_inference_steps": 0}, "num_inference_steps must be an integer"),
            ({"num_inference_steps": True}, "num_inference_steps must be an integer"),
            ({"guidance_scale": float("nan")}, "guidance_scale must be a number"),
            ({"guidance_scale": -1.0}, "guidance_scale must be a number")]


@pytest.mark.parametrize("kwargs, message", BAD_RUNS)
def test_text_runs_share_the_step_and_guidance_checks(t2i_bundle, kwargs, message):
    """attention.record, stylediffusion.swap_key_value, editbench.sdedit and attention.edit refuse the same bad
    steps and guidance scales with the same messages."""
    from diffnb import attention, editbench, stylediffusion, world
    b, x_T = t2i_bundle, torch.randn(1, 3, 32, 32)
    runs = [lambda: attention.record(b, ["a cat"], x_T=x_T, **kwargs),
            lambda: stylediffusion.swap_key_value(b, ["a cat"], ["a robot"], x_T=x_T, **kwargs),
            lambda: editbench.sdedit(b, world.sample(1, seed=0).images, ["a cat"], **kwargs),
            lambda: attention.edit(b, attention.Replace(b.tokenizer, ["a cat"], ["a robot"]), x_T=x_T, **kwargs)]
    for run in runs:
        with pytest.raises(ValueError, match=message):
            run()


def test_prompt_counts_are_checked(t2i_bundle):
    from diffnb import attention, editbench, inversion, world
    b = t2i_bundle
    images = world.sample(2, seed=0).images
    with pytest.raises(ValueError, match=r"x_T must be a \(1, 3, 32, 32\) tensor"):
        attention.record(b, ["a cat"], x_T=torch.randn(2, 3, 32, 32), num_inference_steps=1)
    with pytest.raises(ValueError, match=r"give one prompt per image \(2\), got 3 prompts"):
        editbench.sdedit(b, images, ["a cat"] * 3, num_inference_steps=2)
    inv = inversion.text_ddim_invert(b, images, ["a cat", "a robot"], num_inference_steps=2)
    with pytest.raises(ValueError, match=r"give one prompt per inverted image \(2\), got 1 prompts"):
        editbench.ddim_word_swap(b, inv, ["a cat"])
    with pytest.raises(ValueError, match="guidance_scale must be a number"):
        editbench.ddim_word_swap(b, inv, ["a cat", "a robot"], guidance_scale=float("inf"))
    with pytest.raises(TypeError, match="inv must be an inversion.InversionResult"):
        editbench.ddim_word_swap(b, inv.x_T, ["a cat", "a robot"])
    assert editbench.ddim_word_swap(b, inv, ["a cat", "a robot"]).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("kwargs, name", [({"tau_c": 5}, "tau_c"), ({"tau_u": -0.1}, "tau_u"),
                                          ({"num_inference_steps": 0}, "num_inference_steps"),
                                          ({"guidance_scale": 100}, "guidance_scale"),
                                          ({"sdedit_strength": 0}, "sdedit_strength"),
                                          ({"null_inner_steps": -1}, "null_inner_steps"),
                                          ({"null_lr": 0}, "null_lr"), ({"threshold": 2}, "threshold"),
                                          ({"seed": 1.7}, "seed")])
def test_run_methods_checks_every_argument_before_the_inversions(t2i_bundle, monkeypatch, kwargs, name):
    from diffnb import editbench
    monkeypatch.setattr(editbench, "word_regions", lambda *a, **k: pytest.fail("the inversions started"))
    with pytest.raises(ValueError, match=name):
        editbench.run_methods(t2i_bundle, editbench.edit_pairs(1), **kwargs)


# ----------------------------------------------------------------------------------------------
# Issue 21 item 5, the rest: every generator argument takes an int seed or a torch.Generator; messages name the cause
# ----------------------------------------------------------------------------------------------
def test_every_generator_argument_takes_an_int_seed(tiny, t2i_bundle):
    from diffnb import attention, inversion
    unet, sched = tiny
    seeded = lambda: torch.Generator().manual_seed(3)   # noqa: E731
    a = sampling.sample(unet, sched, batch_size=1, num_inference_steps=2, eta=1.0, generator=3)
    b = sampling.sample(unet, sched, batch_size=1, num_inference_steps=2, eta=1.0, generator=seeded())
    assert torch.equal(a.images, b.images) and torch.equal(a.x_T, b.x_T)
    x0 = torch.zeros(1, 3, 8, 8)
    assert torch.equal(sampling.sdedit(unet, sched, x0, num_inference_steps=2, generator=np.int64(3)).images,
                       sampling.sdedit(unet, sched, x0, num_inference_steps=2, generator=seeded()).images)
    assert torch.equal(inversion.edit_friendly_invert(unet, sched, x0, 2, generator=3).x_T,
                       inversion.edit_friendly_invert(unet, sched, x0, 2, generator=seeded()).x_T)
    assert torch.equal(attention.draw_x_T(t2i_bundle, 1, None, 3), attention.draw_x_T(t2i_bundle, 1, None, seeded()))
    for bad in (True, 1.7, -1, "3"):
        with pytest.raises(TypeError, match="generator must be an int seed >= 0 or a torch.Generator"):
            sampling.sample(unet, sched, batch_size=1, num_inference_steps=2, generator=bad)


def test_local_blend_threshold_is_not_a_fraction_of_steps(t2i_bundle):
    from diffnb import attention
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\] \(of the min-max normalised"):
        attention.LocalBlend(t2i_bundle.tokenizer, ["a cat"], ["a robot"], [["cat", "robot"]], threshold=2)
