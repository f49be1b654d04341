"""Property-based tests (Hypothesis) over the public input checks: every call either succeeds with finite output of
the right shape, or raises a ValueError / TypeError / FileNotFoundError whose message names what was wrong. An
exception of any other type (from torch, diffusers, PIL or numpy) fails the test. 2,000 examples in all, bounded:
tiny inputs and a zero noise predictor instead of a U-Net."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffnb import checks, images, sampling, toyclip, world, zoo

SETTINGS = dict(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)
OURS = (ValueError, TypeError, FileNotFoundError)

# ----------------------------------------------------------------------------------------------
# images.to_tensor: arrays, PIL modes and sizes
# ----------------------------------------------------------------------------------------------
DTYPES = [np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    shape = (h, w) if draw(st.booleans()) else (h, w, draw(st.integers(1, 5)))
    if dtype in (np.float32, np.float64):
        lo = draw(st.sampled_from([0.0, -1.0, -300.0]))
        hi = draw(st.sampled_from([1.0, 255.0, 1e6]))
        arr = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(lo, hi, shape).astype(dtype)
        if arr.size and draw(st.booleans()):
            arr.flat[0] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return arr
    if dtype == np.bool_:
        return np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) > 0.5
    top = {np.uint8: 255, np.uint16: 65535, np.int32: 10**6}[dtype]
    return np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, top, shape).astype(dtype)


def _check_image_output(x, n=1, size=32):
    assert isinstance(x, torch.Tensor) and x.shape == (n, 3, size, size) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1


@settings(**SETTINGS)
@given(arrays())
def test_numpy_images_are_read_or_refused_clearly(arr):
    try:
        x = images.to_tensor(arr)
    except OURS as e:
        assert any(w in str(e) for w in ("image", "channels", "numpy", "NaN")), str(e)
        return
    _check_image_output(x)


MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F", "YCbCr", "HSV"]


@settings(**SETTINGS)
@given(st.sampled_from(MODES), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**16),
       st.sampled_from([1.0, 255.0, 65535.0, 1e6]))
def test_pil_images_of_any_mode_and_size_are_read_or_refused_clearly(mode, w, h, seed, top):
    rng = np.random.default_rng(seed)
    if mode in ("I", "F"):
        im = Image.fromarray(rng.uniform(0, top, (h, w)).astype(np.float32 if mode == "F" else np.int32))
    else:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    try:
        x = images.to_tensor(im, size=16)
    except OURS as e:
        assert "range" in str(e) or "image" in str(e), str(e)
        return
    _check_image_output(x, size=16)


@settings(**SETTINGS)
@given(st.integers(0, 3), st.integers(0, 6), st.integers(0, 40), st.integers(0, 40),
       st.sampled_from([1.0, 2.0, 255.0]), st.booleans())
def test_tensor_images_of_any_shape_are_read_or_refused_clearly(ndim_extra, c, h, w, scale, nan):
    shape = [c, h, w] if ndim_extra < 2 else [2, c, h, w]
    if ndim_extra == 3:
        shape = [h, w, c]
    x = torch.rand(shape) * 2 * scale - scale
    if nan and x.numel():
        x.view(-1)[0] = math.nan
    try:
        out = images.to_tensor(x, size=8)
    except OURS as e:
        assert any(w in str(e) for w in ("image", "channels", "tensor", "NaN", "[-1, 1]")), str(e)
        return
    _check_image_output(out, n=out.shape[0], size=8)


# ----------------------------------------------------------------------------------------------
# Numbers and counts: Python, numpy and 0-d torch scalars, bools, NaN, inf, strings, None
# ----------------------------------------------------------------------------------------------
VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.none(), st.text(max_size=3),
                   st.integers(-100, 100).map(np.int64), st.floats(-1e3, 1e3).map(np.float32),
                   st.floats(-1e3, 1e3).map(torch.tensor), st.just(torch.zeros(2)), st.just(np.bool_(True)))


@settings(**SETTINGS)
@given(VALUES, VALUES, VALUES)
def test_sampling_arguments_are_checked_before_any_work(batch_size, steps, eta):
    eps_zero = lambda x, t: torch.zeros_like(x)   # noqa: E731 (a noise predictor without a U-Net)
    from diffusers import DDIMScheduler
    try:
        out = sampling.sample(eps_zero, DDIMScheduler(num_train_timesteps=50), batch_size=batch_size,
                              num_inference_steps=steps, eta=eta, image_shape=(3, 4, 4),
                              generator=torch.Generator().manual_seed(0))
    except OURS as e:
        assert any(n in str(e) for n in ("batch_size", "num_inference_steps", "eta")), str(e)
        return
    assert out.images.shape[0] == int(batch_size) and torch.isfinite(out.images).all()
    assert not isinstance(batch_size, (bool, np.bool_)) and not isinstance(steps, (bool, np.bool_))


@settings(**SETTINGS)
@given(VALUES)
def test_number_and_count_checks_accept_scalars_and_name_the_argument(value):
    for fn in (lambda v: checks.count("n_things", v), lambda v: checks.number("lambda_x", v, 0, 10)):
        try:
            out = fn(value)
        except ValueError as e:
            assert "n_things" in str(e) or "lambda_x" in str(e), str(e)
            continue
        assert isinstance(out, (int, float)) and math.isfinite(out) and not isinstance(value, (bool, str))


# ----------------------------------------------------------------------------------------------
# Prompts over and beyond the vocabulary
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return zoo.load("toy-clip").tokenizer


WORDS = sorted(world.vocabulary())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=6)), max_size=30))
def test_prompts_are_tokenized_or_refused_with_the_vocabulary(tokenizer, words):
    prompt = " ".join(words)
    try:
        enc = toyclip.tokenize(tokenizer, prompt)
    except OURS as e:
        assert "unknown word" in str(e) or "words" in str(e), str(e)
        return
    assert enc["input_ids"].shape == (1, tokenizer.model_max_length)


# ----------------------------------------------------------------------------------------------
# Raw tensors into the samplers and inversions (issue 21 item 3): any shape, dtype, range, NaN
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    from diffusers import DDIMScheduler
    from test_sampling import tiny_unet
    return tiny_unet(), DDIMScheduler(num_train_timesteps=50, clip_sample=False)   # sample shape (3, 8, 8)


TENSOR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 3), st.sampled_from([1, 3, 4]), st.sampled_from([4, 8, 9]), st.sampled_from(TENSOR_DTYPES),
       st.sampled_from([1.0, 1.5, 300.0]), st.sampled_from([None, math.nan, math.inf]), st.booleans())
def test_raw_tensors_into_sampling_and_inversion_are_run_or_refused_by_name(tiny_model, b, c, hw, dtype, scale, bad,
                                                                             invert):
    unet, sched = tiny_model
    x = (torch.rand(b, c, hw, hw, generator=torch.Generator().manual_seed(b + c + hw)) * 2 - 1) * scale
    if bad is not None and x.numel():
        x.view(-1)[0] = bad
    x = x.to(dtype)
    from diffnb import inversion
    try:
        if invert:
            out = inversion.ddim_invert(unet, sched, x, num_inference_steps=2).x_T
        else:
            out = sampling.sample(unet, sched, batch_size=max(b, 1), num_inference_steps=2, x_T=x).images
    except OURS as e:
        name = "x0" if invert else "x_T"
        assert name in str(e), str(e)
        return
    assert out.shape == (b, 3, 8, 8) and torch.isfinite(out).all()


def test_a_float_slider_reaches_draw_rounded_to_its_step():
    """ipywidgets reports 0.5 + 0.1 as 0.6000000000000001; draw() and the caption get 0.6 (the browser suite)."""
    from diffnb import widgets
    seen = []
    s = widgets.slider(0.3, 0.7, 0.1, 0.5, "strength")
    widgets.interactive_grid(lambda strength: seen.append(strength) or torch.zeros(1, 3, 4, 4), static=False,
                             strength=s)
    s.value = 0.5 + 0.1
    assert seen[-1] == 0.6


def test_a_redraw_runs_on_one_torch_thread_and_its_status_says_how_long_it_took():
    from diffnb import widgets
    before = torch.get_num_threads()
    seen = []
    s = widgets.int_slider(1, 3, 1, 1, "k")
    box = widgets.interactive_grid(lambda k: seen.append(torch.get_num_threads()) or torch.zeros(1, 3, 4, 4),
                                   static=False, k=s)
    status = box.children[-1]
    assert status.value.startswith("k = 1 (drawn in ") and status.value.endswith(" s)")
    s.value = 2
    assert seen == [1, 1] and torch.get_num_threads() == before and status.value.startswith("k = 2 (drawn in ")
    s.value = 1
    assert status.value == "k = 1 (cached)" and len(seen) == 2
    widgets.interactive_grid(lambda k: seen.append(torch.get_num_threads()) or torch.zeros(1, 3, 4, 4),
                             static=False, threads=None, k=widgets.int_slider(1, 3, 1, 1, "k"))
    assert seen[-1] == before
    with pytest.raises(ValueError, match="positive integer or None"):
        with widgets.torch_threads(0):
            pass


def test_a_precomputed_grid_draws_every_setting_once_and_moves_only_swap_pictures():
    """interactive_grid(precompute=True) (notebook 01): every setting drawn when the cell runs, each once; a move
    draws nothing and its status says what the grid cost; a grid too large, or a widget with no list of values,
    is refused with what is accepted."""
    import ipywidgets as ipw

    from diffnb import widgets
    seen = []

    def draw(eta, steps, ddim):
        seen.append((eta, steps, ddim))
        return torch.full((1, 3, 4, 4), eta + steps / 10 - ddim)

    eta, steps, ddim = widgets.slider(0.0, 1.0, 0.25, 0.0, "η"), widgets.int_slider(5, 15, 5, 10, "steps"), \
        widgets.checkbox(True, "DDIM")
    box = widgets.interactive_grid(draw, static=False, precompute=True, eta=eta, steps=steps, ddim=ddim)
    assert sorted(seen) == sorted((e, s, d) for e in (0.0, 0.25, 0.5, 0.75, 1.0) for s in (5, 10, 15)
                                  for d in (False, True))
    image, status = box.children[-2], box.children[-1]
    first = image.value
    assert status.value.startswith("eta = 0.0, steps = 10, ddim = True (precomputed with the other 29 settings")
    eta.value = 0.5 + 0.25
    steps.value = 15
    assert len(seen) == 30 and image.value != first and "steps = 15" in status.value and "s in all" in status.value
    with pytest.raises(ValueError, match="would draw 101 settings; at most 64"):
        widgets.interactive_grid(draw, static=False, precompute=True, eta=widgets.slider(0.0, 1.0, 0.01, 0.0, "η"))
    with pytest.raises(TypeError, match="cannot list the values of a Text"):
        widgets.interactive_grid(draw, static=False, precompute=True, eta=ipw.Text("a"))
    assert widgets.slider_values(widgets.dropdown(("toy", "photo"), "toy", "domain")) == ["toy", "photo"]
