"""Inversion on a tiny random UNet: Eq. 7 equals diffusers' DDIMInverseScheduler; edit-friendly is exact."""
import pytest
import torch
from diffusers import DDPMScheduler
from test_sampling import tiny_unet

from diffnb import inversion


@pytest.fixture(scope="module")
def setup():
    x0 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return tiny_unet(), DDPMScheduler(num_train_timesteps=1000, clip_sample=True), x0


def test_hand_written_eq7_equals_ddim_inverse_scheduler(setup):
    unet, sched, x0 = setup
    _, inv = inversion.inversion_schedulers(sched)
    inv.set_timesteps(10)
    x = x0
    with torch.no_grad():
        for t in inv.timesteps:
            eps = unet(x, t).sample
            ours = inversion.ddim_invert_step(eps, t, x, inv)
            x = inv.step(eps, t, x).prev_sample
            torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)


def test_ddim_inversion_round_trip_improves_with_steps(setup):
    """With a smooth noise predictor the linearisation error of Eq. 7 shrinks as the steps get finer."""
    _, sched, x0 = setup
    def smooth(x, t):
        return 0.3 * x + 0.1 * torch.sin(x) * float(t) / 1000
    errs = []
    for steps in (5, 50):
        res = inversion.ddim_invert(smooth, sched, x0, num_inference_steps=steps)
        assert len(res.latents) == steps + 1 and torch.equal(res.latents[0], x0)
        errs.append((inversion.ddim_reconstruct(smooth, sched, res.x_T, steps) - x0).pow(2).mean().item())
    assert errs[1] < errs[0] / 2, errs


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_edit_friendly_reconstruction_is_exact(setup, eta):
    unet, sched, x0 = setup
    res = inversion.edit_friendly_invert(unet, sched, x0, 20, eta=eta, generator=torch.Generator().manual_seed(1))
    assert len(res.zs) == 20
    assert (inversion.edit_friendly_sample(unet, sched, res) - x0).abs().max() <= 1e-4


def test_edit_friendly_hook_changes_the_result(setup):
    unet, sched, x0 = setup
    res = inversion.edit_friendly_invert(unet, sched, x0, 10, generator=torch.Generator().manual_seed(1))
    edited = inversion.edit_friendly_sample(unet, sched, res, z_hook=lambda t, x, z: z + 0.1)
    assert (edited - x0).abs().max() > 1e-2


def test_inversion_rejects_bad_input(setup):
    unet, sched, x0 = setup
    with pytest.raises(ValueError, match="num_inference_steps"):
        inversion.ddim_invert(unet, sched, x0, num_inference_steps=0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        inversion.ddim_invert(unet, sched, x0[0])
    with pytest.raises(ValueError, match="eta"):
        inversion.edit_friendly_invert(unet, sched, x0, 10, eta=0.0)
