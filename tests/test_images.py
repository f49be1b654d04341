"""Images are read as they are: 16-bit and float modes by their real range, EXIF orientation, clear messages."""
import numpy as np
import pytest
import torch
from PIL import Image

from diffnb import images, world


def test_16bit_greyscale_png_reads_by_its_range(tmp_path):
    arr = np.full((8, 8), 32768, dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    x = images.to_tensor(str(path), size=8)
    assert x.shape == (1, 3, 8, 8)
    assert abs(float(x.mean())) < 0.01          # mid-grey, not all white


def test_i16_pil_image_reads_by_its_range():
    im = Image.fromarray(np.full((4, 4), 16384, dtype=np.uint16)).convert("I;16")
    assert abs(float(images.to_tensor(im, size=4).mean()) - (16384 / 65535 * 2 - 1)) < 1e-3


@pytest.mark.parametrize("value,expected", [(0.25, -0.5), (191.25, 0.5)])
def test_float_images_and_float_tiffs_read_by_their_range(tmp_path, value, expected):
    im = Image.fromarray(np.full((6, 6), value, dtype=np.float32))
    assert abs(float(images.to_tensor(im, size=6).mean()) - expected) < 1e-3
    path = tmp_path / "float.tif"
    im.save(path)
    assert abs(float(images.to_tensor(str(path), size=6).mean()) - expected) < 1e-3   # not all black


def test_exif_orientation_is_honoured(tmp_path):
    arr = np.zeros((4, 8, 3), dtype=np.uint8)
    arr[:, :4] = 255                           # left half white, as stored
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6                            # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=100)
    x = images.to_tensor(str(path), size=8)
    raw = images.to_tensor(arr, size=8)
    assert not torch.allclose(x, raw, atol=0.2)  # displayed upright: the white half moved to the top
    assert float(x[0, :, :4].mean()) > float(x[0, :, 4:].mean()) + 1.0


def test_truncated_file_names_its_path(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.png"):
        images.to_tensor(str(path))


@pytest.mark.parametrize("arr,shown", [(np.full((4, 4, 3), 200.0, dtype=np.float32), r"\[200, 200\]"),
                                       (np.full((4, 4, 3), -0.5, dtype=np.float32), r"\[-0.5, -0.5\]")])
def test_numpy_out_of_range_reports_the_values_as_given_with_a_numpy_hint(arr, shown):
    with pytest.raises(ValueError, match=shown) as e:
        images.to_tensor(arr)
    assert "numpy" in str(e.value) and "x * 2 - 1" not in str(e.value)


@pytest.mark.parametrize("bad", [torch.zeros(0, 3, 8, 8), np.zeros((0, 8, 8, 3), np.uint8), torch.zeros(3, 0, 0),
                                 np.zeros((0, 0, 3), np.uint8)])
def test_empty_batches_and_zero_size_images_fail_clearly(bad):
    with pytest.raises(ValueError, match="empty"):
        images.to_tensor(bad)


def test_channels_last_tensor_gets_a_hint():
    with pytest.raises(ValueError, match="channels-last"):
        images.to_tensor(torch.zeros(32, 32, 3))


def test_uint16_numpy_reads_by_its_range():
    assert abs(float(images.to_tensor(np.full((4, 4), 65535, np.uint16), size=4).mean()) - 1) < 1e-4


@pytest.mark.parametrize("seed", [1.7, True, -1, "3"])
def test_world_refuses_seeds_that_are_not_non_negative_integers(seed):
    with pytest.raises(ValueError, match="seed"):
        world.sample(2, seed=seed)


def test_world_accepts_numpy_integer_seeds():
    assert torch.equal(world.sample(1, seed=np.int64(3)).images, world.sample(1, seed=3).images)
