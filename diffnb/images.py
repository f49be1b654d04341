"""Getting images in and out: every public function that takes a picture goes through `to_tensor`.

Accepted: a torch tensor (C,H,W) or (B,C,H,W) in [-1, 1]; a numpy array (H,W), (H,W,C) or (B,H,W,C),
uint8 in [0, 255] or float in [0, 1]; a PIL image of any size or mode; a path to an image file; or a list of these.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

ACCEPTED = ("a torch tensor (C,H,W) or (B,C,H,W) in [-1, 1], a numpy array (H,W[,C]) uint8 or float in [0, 1], "
            "a PIL image, a path to an image file, or a list of these")


def _one(img) -> torch.Tensor:
    if isinstance(img, (str, Path)):
        path = Path(img)
        if not path.is_file():
            raise FileNotFoundError(f"no image file at {path}")
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except UnidentifiedImageError:
            raise ValueError(f"{path} is not an image file PIL can read (PNG, JPEG, ...)") from None
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB"))
    if isinstance(img, np.ndarray):
        arr = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ValueError(f"a numpy image must be (H,W) or (H,W,C), got shape {img.shape}; accepted: {ACCEPTED}")
        return torch.from_numpy(arr).permute(2, 0, 1) * 2 - 1
    if isinstance(img, torch.Tensor):
        if img.ndim != 3:
            raise ValueError(f"expected a (C,H,W) tensor here, got shape {tuple(img.shape)}; accepted: {ACCEPTED}")
        return img.float()
    raise TypeError(f"cannot read an image from {type(img).__name__}; accepted: {ACCEPTED}")


def to_tensor(images, size: int = 32, channels: int = 3) -> torch.Tensor:
    """Any accepted image input -> (B, channels, size, size) float32 in [-1, 1], resized with antialiasing."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        x = images.float()
    elif isinstance(images, np.ndarray) and images.ndim == 4:
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
    return _resize(_channels(x, channels), size).clamp(-1, 1)


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
