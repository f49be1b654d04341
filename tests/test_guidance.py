"""Alg. 1 on a tiny random UNet: colour guidance moves the colour, masks confine it, bad input is named."""
import pytest
import torch
from diffusers import DDIMScheduler
from test_sampling import tiny_unet

from diffnb import guidance
from diffnb.classifiers import AttributeClassifier


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def sched():
    return DDIMScheduler(num_train_timesteps=1000, clip_sample=True)


def run(unet, fn, lam, mask=None, t1=0, t2=10):
    return guidance.guided_sample(unet, sched(), fn, lam, t1, t2, batch_size=2, num_inference_steps=10, eta=1.0,
                                  mask=mask, generator=torch.Generator().manual_seed(0))


def test_colour_guidance_moves_colour_and_mask_confines_it(unet):
    base = run(unet, guidance.Colour(0, 1.0), 0.0).images
    red = run(unet, guidance.Colour(0, 1.0), 20.0).images
    assert red[:, 0].mean() > base[:, 0].mean() + 0.05
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    masked = run(unet, guidance.Colour(0, 1.0), 20.0, mask=mask).images
    inside = (masked - base)[:, 0, :, :4].mean().abs()
    outside = (masked - base)[:, 0, :, 4:].mean().abs()
    assert inside > 4 * outside


def test_guided_run_is_deterministic_and_records_scores(unet):
    a, b = run(unet, guidance.Colour(2, -1.0), 5.0, t1=2, t2=6), run(unet, guidance.Colour(2, -1.0), 5.0, t1=2, t2=6)
    assert torch.equal(a.images, b.images) and [s[0] for s in a.scores] == [2, 3, 4, 5]
    assert a.mean_pred_x0.shape == a.images.shape


def test_attribute_and_regularised_functions_give_scores():
    net = AttributeClassifier().eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    on, off = guidance.AttributeLogit(net, "glasses", True), guidance.AttributeLogit(net, "glasses", False)
    torch.testing.assert_close(on(x), -off(x))
    reg = guidance.Regularised(on, guidance.AttributeLogit(net, "hat"), g_x0=torch.zeros(3))
    assert reg(x).shape == (3,) and (reg(x) >= on(x)).all()


def test_blow_up_is_caught_at_its_step(unet):
    with pytest.raises(FloatingPointError, match="non-finite at t ="):
        run(unet, guidance.Colour(0, 1.0), 1e38)


def test_bad_input_is_named(unet):
    with pytest.raises(ValueError, match="t1 <= t2"):
        run(unet, guidance.Colour(0, 1.0), 1.0, t1=6, t2=2)
    with pytest.raises(ValueError, match="t1 <= t2"):
        run(unet, guidance.Colour(0, 1.0), 1.0, t1=0, t2=11)
    with pytest.raises(ValueError, match="accepted: smiling"):
        guidance.AttributeLogit(AttributeClassifier(), "beard")
    with pytest.raises(ValueError, match="accepted: background"):
        guidance.SegmentationMass(AttributeClassifier(), ("nostril",))
    with pytest.raises(ValueError, match="mask must be"):
        run(unet, guidance.Colour(0, 1.0), 1.0, mask=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="channel"):
        guidance.Colour(3, 0.0)


def test_region_mask_and_strengths_are_checked(unet):
    from diffnb.segmentation import SegmentationNet
    seg = SegmentationNet().eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = guidance.region_mask(seg, x, ("hair", "hat"), dilate=1)
    assert m.shape == (2, 1, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="accepted: background"):
        guidance.region_mask(seg, x, ("beard",))
    with pytest.raises(ValueError, match="dilate"):
        guidance.region_mask(seg, x, ("hair",), dilate=-1)
    with pytest.raises(ValueError, match="one per image"):
        run(unet, guidance.Colour(0, 1.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=">= 0"):
        run(unet, guidance.Colour(0, 1.0), -1.0)
    with pytest.raises(ValueError, match="mode must be"):
        guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 1.0, 0, 2, batch_size=1,
                               num_inference_steps=2, mode="z")


def test_per_image_seeds_do_not_depend_on_the_batch(unet):
    both = guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 5.0, 2, 8, batch_size=2,
                                  num_inference_steps=10, generator=7)
    second = guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 5.0, 2, 8, batch_size=1,
                                    num_inference_steps=10, generator=8)
    torch.testing.assert_close(both.images[1:], second.images, atol=1e-5, rtol=0)


def test_eq13_variant_and_eq19_edit(unet):
    from diffnb import inversion
    eps_mode = run(unet, guidance.Colour(0, 1.0), 50.0).images
    eq13 = guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 50.0, 0, 10, batch_size=2,
                                  num_inference_steps=10, generator=torch.Generator().manual_seed(0), mode="eps").images
    assert not torch.equal(eps_mode, eq13) and torch.isfinite(eq13).all()
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    inv = inversion.edit_friendly_invert(unet, sched(), x0, 10, generator=torch.Generator().manual_seed(0))
    same = guidance.edit_ddpm_inverted(unet, sched(), inv, guidance.Colour(0, 1.0), 0.0, 0, 10)
    redder = guidance.edit_ddpm_inverted(unet, sched(), inv, guidance.Colour(0, 1.0), 50.0, 0, 10)
    assert (same - x0.clamp(-1, 1)).abs().max() < 1e-4
    assert redder[:, 0].mean() > same[:, 0].mean()


def test_eq13_makes_one_unet_call_per_step_and_alg1_one_more_per_guided_step(unet):
    calls = []
    hook = unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        for mode in ("eps", "x"):
            calls.clear()
            guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 5.0, 4, 10, batch_size=1,
                                   num_inference_steps=10, generator=0, mode=mode)
            if mode == "eps":
                assert len(calls) == 10, f"Eq. 13 made {len(calls)} UNet calls for 10 steps, expected 10"
            else:   # guided indices 4..9 nudge x_{t-1} with one more call each, except after the last step
                assert len(calls) == 10 + 5, f"Alg. 1 made {len(calls)} UNet calls, expected 15"
    finally:
        hook.remove()


def test_eq13_reuses_the_eps_of_its_gradient_call(unet):
    """With lam = 0 the Eq. 13 path (eps from the call with gradients) gives the unguided sample exactly."""
    plain = run(unet, guidance.Colour(0, 1.0), 0.0).images
    eq13 = guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 0.0, 0, 10, batch_size=2,
                                  num_inference_steps=10, eta=1.0, generator=torch.Generator().manual_seed(0),
                                  mode="eps").images
    torch.testing.assert_close(eq13, plain, atol=1e-6, rtol=0)


def test_regulariser_gradient_holds_the_second_attribute():
    """Eq. 17's term pulls g back towards its value on x_0 (its gradient opposes a drift), Eq. 18's away from -g_x0."""
    net = AttributeClassifier().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    g = guidance.AttributeLogit(net, "eyes_open")
    g_x0 = g.logit(x).detach() - 1.0          # the image has drifted: g is now 1 above its value on x_0
    zero = guidance.Colour(0, 0.0)
    x_req = x.clone().requires_grad_(True)
    reg = guidance.Regularised(lambda p, m=None: 0 * zero(p, m), g, g_x0, keep=True, weight=1.0)
    grad, = torch.autograd.grad(reg(x_req).sum(), x_req)
    x_req2 = x.clone().requires_grad_(True)
    g_grad, = torch.autograd.grad(g.logit(x_req2).sum(), x_req2)
    # descending the regulariser lowers g: its gradient points along +grad g (coefficient 2 * (g - g_x0) = 2 > 0)
    assert (grad * g_grad).sum() > 0


def test_blow_up_past_the_schedule_scale_is_caught_naming_step_and_lambda(unet):
    """Issue 21 item 4: lambda = 1e12 with the colour function drives |x| far past the scale the schedule expects
    (sqrt(alpha_bar) + sqrt(1 - alpha_bar)) long before it overflows; it is refused at its step, naming lambda."""
    from diffnb import inversion
    for mode in ("x", "eps"):
        with pytest.raises(FloatingPointError, match=r"blew x up at step \d+ \(t = \d+\).*lambda up to 1e\+12"):
            guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 1e12, 0, 10, batch_size=2,
                                   num_inference_steps=10, generator=0, mode=mode)
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    inv = inversion.edit_friendly_invert(unet, sched(), x0, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError, match=r"blew x up at step \d+ .*lambda up to 1e\+12"):
        guidance.edit_ddpm_inverted(unet, sched(), inv, guidance.Colour(0, 1.0), 1e12, 0, 10)


def test_notebook_lambdas_stay_under_the_blow_up_bound():
    """Notebook 08's strongest settings on the shipped models run without tripping the bound: Eq. 13 at lambda 20
    (unmasked, about 27x the expected scale), segmentation guidance at the slider's top (lambda 8000), colour at the
    slider's top (lambda 80), toy-attr's eyes-open logit at the slider's top (lambda 24), Eq. 19 at lambda 8."""
    from diffnb import inversion, world, zoo
    ddpm, attr, seg = zoo.load("toy-ddpm"), zoo.load("toy-attr").model, zoo.load("toy-seg").model
    runs = [(guidance.AttributeLogit(attr, "smiling", True), 20.0, 12, "eps"),
            (guidance.SegmentationMass(seg, ("hair",), more=False), 8000.0, 10, "x"),
            (guidance.Colour(0, 1.0), 80.0, 0, "x"),
            (guidance.AttributeLogit(attr, "eyes_open", False), 24.0, 12, "x")]
    for fn, lam, t1, mode in runs:
        out = guidance.guided_sample(ddpm.unet, ddpm.scheduler, fn, lam, t1, 25, batch_size=2, num_inference_steps=25,
                                     eta=1.0, generator=0, mode=mode)
        assert torch.isfinite(out.images).all()
    x0 = world.sample(2, seed=3, domain="photo").images
    inv = inversion.edit_friendly_invert(ddpm.unet, ddpm.scheduler, x0, 25, generator=torch.Generator().manual_seed(0))
    assert guidance.edit_ddpm_inverted(ddpm.unet, ddpm.scheduler, inv, guidance.AttributeLogit(attr, "smiling"), 8.0,
                                       12, 25).shape == x0.shape


def test_a_bad_mask_is_blamed_on_the_mask_not_on_lambda(unet):
    """Issue 21 item 5: a NaN mask used to fail later as 'guidance made x non-finite ... lower lambda'."""
    size = unet.config.sample_size
    nan = torch.ones(1, 1, size, size)
    nan[..., 0, 0] = float("nan")
    big = torch.zeros(1, 1, size, size)
    big[..., 0, 0] = 3.0
    for mask, said in ((nan, "NaN"), (big, r"\[0, 3\]")):
        with pytest.raises(ValueError, match=r"mask must hold values in \[0, 1\].*" + said):
            guidance.guided_sample(unet, sched(), guidance.Colour(0, 1.0), 1.0, 0, 2, batch_size=1,
                                   num_inference_steps=4, mask=mask)


def test_prefix_cache_reuses_the_unguided_steps_with_a_full_runs_result(unet):
    """guidance.PrefixCache: a call that draws the same images resumes at the latest stored step <= its t1, with the
    generators' states restored (eta = 1 draws fresh noise every step), and gives a full run's images bit for bit."""
    def go(fn, lam, t1, t2=10, prefix=None, gen=7, mode="x", keep=False):
        return guidance.guided_sample(unet, sched(), fn, lam, t1, t2, batch_size=2, num_inference_steps=10, eta=1.0,
                                      generator=gen, prefix=prefix, mode=mode, keep_pred_x0=keep)
    cache = guidance.PrefixCache()
    red, blue = guidance.Colour(0, 1.0), guidance.Colour(2, -1.0)
    first = go(red, 5.0, 4, prefix=cache)
    assert cache.steps_saved == 0 and torch.equal(first.images, go(red, 5.0, 4).images)
    for fn, lam, t1, mode in [(blue, 5.0, 4, "x"), (red, 9.0, 6, "x"), (blue, 3.0, 6, "eps"), (red, 5.0, 5, "x")]:
        full, reused = go(fn, lam, t1, mode=mode), go(fn, lam, t1, prefix=cache, mode=mode)
        assert torch.equal(reused.images, full.images) and torch.equal(reused.mean_pred_x0, full.mean_pred_x0)
        assert reused.scores == full.scores
    assert cache.steps_saved == 4 + 4 + 6 + 4          # t1 = 6 resumed at 4, then at 6; t1 = 5 at 4
    assert "18 sampling steps reused" in repr(cache)
    other = go(red, 5.0, 6, prefix=cache, gen=8)         # other images: a full run
    assert cache.steps_saved == 18 and torch.equal(other.images, go(red, 5.0, 6, gen=8).images)
    unet_copy_version = [p._version for p in unet.parameters()]
    with torch.no_grad():
        p = next(unet.parameters())
        p.add_(0.0)                                      # changed in place (same values): the key misses
    assert [q._version for q in unet.parameters()] != unet_copy_version
    go(red, 5.0, 6, prefix=cache)
    assert cache.steps_saved == 18
    kept = go(red, 5.0, 6, prefix=cache, keep=True)      # keep_pred_x0 runs in full (every P_t is returned)
    assert cache.steps_saved == 18 and len(kept.pred_x0s) == 10
    with pytest.raises(TypeError, match="prefix must be a guidance.PrefixCache"):
        go(red, 5.0, 6, prefix={})
    with pytest.raises(ValueError, match="at must list step indices"):
        guidance.PrefixCache(at=(0, 3))

    pool = guidance.PrefixCache(at=(3, 7))               # an unguided run stores its state at the listed steps
    plain = go(red, 0.0, 0, 0, prefix=pool, gen=9)
    assert pool.steps_saved == 0 and torch.equal(plain.images, go(red, 0.0, 0, 0, gen=9).images)
    edit = go(blue, 4.0, 5, prefix=pool, gen=9)          # resumes at 3 (the latest stored step <= 5)
    assert pool.steps_saved == 3 and torch.equal(edit.images, go(blue, 4.0, 5, gen=9).images)
    again = go(red, 0.0, 0, 0, prefix=pool, gen=9)       # an empty range guides nothing: resumes at 7
    assert pool.steps_saved == 3 + 7 and torch.equal(again.images, plain.images)
