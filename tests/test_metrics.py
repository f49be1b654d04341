"""Metrics: IoU on known masks; the toy perceptual distance ranks distortions as a person would."""
import pytest
import torch
import torch.nn.functional as F

from diffnb import metrics, world, zoo


def test_iou_known_values():
    a = torch.zeros(1, 4, 4, dtype=torch.long)
    b = a.clone()
    b[0, :2] = 1
    a[0, :1] = 1
    ious = metrics.iou_per_class(a, b, num_classes=3)
    assert ious[1] == pytest.approx(0.5) and ious[0] == pytest.approx(8 / 12) and torch.isnan(ious[2])
    assert metrics.mean_iou(b, b) == 1.0


@pytest.fixture(scope="module")
def lp():
    return metrics.toy_lpips(zoo.load("toy-attr").model)


def _blur(x, r):
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)


def test_toy_lpips_is_zero_on_identical_and_grows_with_noise_and_blur(lp):
    x = world.sample(64, seed=77).images
    assert lp(x, x).abs().max() < 1e-6
    g = torch.Generator().manual_seed(0)
    noise = [lp(x, (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1)).mean()
             for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    blur = [lp(x, _blur(x, r)).mean() for r in (1, 2, 3)]
    assert all(a < b for a, b in zip(noise, noise[1:])), noise
    assert all(a < b for a, b in zip(blur, blur[1:])), blur


def test_toy_lpips_closed_eyes_beat_one_pixel_shift(lp):
    b = world.sample(64, seed=78, eyes_open=True)
    closed = lp(b.images, world.with_attributes(b, eyes_open=False).images)
    shift = lp(b.images, torch.roll(b.images, 1, dims=3))
    assert closed.mean() > 1.5 * shift.mean()
    assert (closed > shift).float().mean() > 0.8


def test_metric_names_say_which_lpips(lp):
    assert "toy" in lp.name
