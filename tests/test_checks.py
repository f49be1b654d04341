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
