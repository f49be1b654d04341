"""toy-seg: a small U-Net that parses a world image into the mask classes (the toy face parser,
standing in for a CelebAMask-HQ SegFormer in real mode)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import world
from .images import to_tensor


@dataclass
class SegConfig:
    """Architecture of toy-seg."""
    channels: tuple = (16, 32, 64)               # widths at 32, 16 and 8 pixels
    num_classes: int = len(world.MASK_CLASSES)   # background, head, hair, eyes, mouth, nose, ears, glasses, hat
    image_size: int = 32


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class SegmentationNet(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] -> (B, num_classes, 32, 32) logits."""

    def __init__(self, config: SegConfig = SegConfig()):
        super().__init__()
        self.config = config
        c = config.channels
        self.down = nn.ModuleList([_conv(3, c[0]), _conv(c[0], c[1]), _conv(c[1], c[2])])
        self.up = nn.ModuleList([_conv(c[2] + c[1], c[1]), _conv(c[1] + c[0], c[0])])
        self.head = nn.Conv2d(c[0], config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], 1))
        return self.head(x)

    @torch.no_grad()
    def predict(self, images) -> torch.Tensor:
        """Any accepted image input -> (B, 32, 32) int64 class indices into world.MASK_CLASSES."""
        x = to_tensor(images, size=self.config.image_size).to(next(self.parameters()).device)
        return self(x).argmax(1).cpu()


def config_dict(config: SegConfig) -> dict:
    return {"model": "SegmentationNet", **asdict(config)}
