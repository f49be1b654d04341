"""Getting images in and out: every public function that takes a picture goes through `to_tensor`.

Accepted: a torch tensor (C,H,W) or (B,C,H,W) in [-1, 1]; a numpy array (H,W), (H,W,C) or (B,H,W,C),
uint8 in [0, 255], uint16 in [0, 65535] or float in [0, 1]; a PIL image of any size or mode (16-bit and float
images by their real range, EXIF orientation applied); a path to an image file; or a list of these.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

ACCEPTED = ("a torch tensor (C,H,W) or (B,C,H,W) in [-1, 1], a numpy array (H,W[,C]) uint8, uint16 or float in "
            "[0, 1], a PIL image, a path to an image file, or a list of these")
NUMPY_HINT = ("numpy images are read as uint8 in [0, 255], uint16 in [0, 65535] or float in [0, 1] "
              "(for a float array in [-1, 1] pass (x + 1) / 2; for a float array in [0, 255] pass x / 255)")


def _open(path: Path) -> Image.Image:
    """Read an image file fully (so a truncated file fails here, naming its path), upright (EXIF orientation)."""
    from PIL import ImageOps
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file PIL can read (PNG, JPEG, ...)") from None
    except (OSError, SyntaxError) as e:   # truncated or corrupt data
        raise ValueError(f"{path} could not be read as an image ({e}); is the file complete?") from None


def _from_pil(im: Image.Image) -> np.ndarray:
    """A PIL image -> float32 (H, W, C) in [0, 1], read by the range of its mode: 16-bit greyscale (I;16*) over
    65535, 32-bit integer (I) over 65535 when it holds 16-bit data, float (F) as [0, 1] or [0, 255]."""
    if im.mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float32)[..., None] / 65535.0
    if im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if im.mode == "F" and lo >= 0 and hi <= 1:
            scale = 1.0
        elif im.mode == "F" and lo >= 0 and hi <= 255:
            scale = 255.0
        elif im.mode == "I" and lo >= 0 and hi <= 65535:
            scale = 65535.0
        else:
            raise ValueError(f"a mode-{im.mode} image with values in [{lo:g}, {hi:g}] has no known range; accepted: "
                             "float images in [0, 1] or [0, 255], 16-bit images in [0, 65535]")
        return arr[..., None] / scale
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _from_numpy(img: np.ndarray) -> np.ndarray:
    """A numpy image -> float32 in [0, 1] by its dtype's range, or a message that reports the values as given."""
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"a numpy image of dtype {img.dtype} is not accepted; {NUMPY_HINT}")
    arr = img.astype(np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("the image contains NaN or inf values")
    if arr.size and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
        raise ValueError(f"a float numpy image must lie in [0, 1], got values in [{arr.min():.3g}, {arr.max():.3g}]; "
                         f"{NUMPY_HINT}")
    return arr


def _check_size(shape, where: str) -> None:
    if any(d == 0 for d in shape):
        raise ValueError(f"{where} has an empty shape {tuple(shape)}: an image needs at least one channel and 1x1 "
                         "pixels")


def _hint_channels_last(shape) -> str:
    """A hint when a (..., H, W, C) tensor was given where (..., C, H, W) is expected."""
    if len(shape) >= 3 and shape[-1] in (1, 3, 4) and shape[-3] not in (1, 3, 4):
        return (f" The shape {tuple(shape)} looks channels-last (H, W, C); torch images are channels-first: "
                "pass x.permute(2, 0, 1) (or x.permute(0, 3, 1, 2) for a batch).")
    return ""


def _one(img) -> torch.Tensor:
    if isinstance(img, (str, Path)):
        img = _open(Path(img))
    if isinstance(img, Image.Image):
        _check_size((img.height, img.width), "the PIL image")
        arr = _from_pil(img)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1) * 2 - 1
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"a numpy image must be (H,W) or (H,W,C), got shape {img.shape}; accepted: {ACCEPTED}")
        _check_size(img.shape, "the numpy image")
        arr = _from_numpy(img)
        if arr.ndim == 2:
            arr = arr[..., None]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1) * 2 - 1
    if isinstance(img, torch.Tensor):
        if img.ndim != 3:
            raise ValueError(f"expected a (C,H,W) tensor here, got shape {tuple(img.shape)}; accepted: {ACCEPTED}")
        _check_size(img.shape, "the tensor image")
        return img.float()
    raise TypeError(f"cannot read an image from {type(img).__name__}; accepted: {ACCEPTED}")


def to_tensor(images, size: int = 32, channels: int = 3) -> torch.Tensor:
    """Any accepted image input -> (B, channels, size, size) float32 in [-1, 1], resized with antialiasing."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ValueError(f"got an empty batch of images (shape {tuple(images.shape)}); accepted: {ACCEPTED}")
        _check_size(images.shape[1:], "the tensor images")
        x = images.float()
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ValueError(f"got an empty batch of images (shape {images.shape}); accepted: {ACCEPTED}")
        x = torch.cat([_one(i)[None] for i in images])
    elif isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"got an empty list of images; accepted: {ACCEPTED}")
        x = torch.stack([_resize(_channels(_one(i)[None], channels), size)[0] for i in images])
    else:
        x = _one(images)[None]
    if not torch.isfinite(x).all():
        raise ValueError("the images contain NaN or inf values")
    if x.min() < -1.01 or x.max() > 1.01:
        raise ValueError(f"tensor images must lie in [-1, 1], got values in [{x.min():.3g}, {x.max():.3g}] "
                         "(for [0, 1] images pass x * 2 - 1)")
    try:
        return _resize(_channels(x, channels), size).clamp(-1, 1)
    except ValueError as e:
        shape = images.shape if isinstance(images, torch.Tensor) else x.shape
        raise ValueError(str(e) + _hint_channels_last(shape)) from None


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1:
        return x.repeat(1, channels, 1, 1)
    if c == 4 and channels == 3:  # RGBA: drop alpha
        return x[:, :3]
    raise ValueError(f"images have {c} channels; accepted: 1 (grey), 3 (RGB) or 4 (RGBA), converted to {channels}")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B,C,H,W) or (C,H,W) in [-1, 1] -> uint8 (B,H,W,C) / (H,W,C) numpy."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy() if x.ndim == 4 else x.permute(1, 2, 0).numpy()


def to_pil(x: torch.Tensor, scale: int = 1):
    """A (C,H,W) tensor -> PIL image; a (B,C,H,W) tensor -> list of PIL images; nearest-upscaled by `scale`."""
    arr = to_uint8(x)
    if arr.ndim == 3:
        im = Image.fromarray(arr)
        return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im
    return [to_pil(torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1, scale) for a in arr]
