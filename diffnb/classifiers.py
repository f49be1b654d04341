"""toy-attr: a small CNN that reads every attribute of a world image (the toy stand-in for CLIP zero-shot
attribute prompts on CelebA). Multi-label: one sigmoid logit per binary attribute, one softmax head per
categorical attribute.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import world
from .images import to_tensor


@dataclass
class AttrConfig:
    """Architecture of toy-attr."""
    channels: tuple = (16, 32, 64)     # conv widths at 32, 16 and 8 pixels
    image_size: int = 32


@dataclass
class AttributePrediction:
    """Probabilities for a batch of images."""
    binary: torch.Tensor              # (B, 4) P(attribute) in world.BINARY order
    categorical: dict                 # name -> (B, K) probabilities over world.CATEGORICAL[name]

    def attributes(self) -> list:
        """The most likely world.Attributes for each image."""
        out = []
        for i in range(self.binary.shape[0]):
            d = {n: bool(self.binary[i, j] > 0.5) for j, n in enumerate(world.BINARY)}
            d.update({n: world.CATEGORICAL[n][int(p[i].argmax())] for n, p in self.categorical.items()})
            out.append(world.Attributes(**d))
        return out


def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class AttributeClassifier(nn.Module):
    """(B, 3, 32, 32) in [-1, 1] -> {"binary": (B, 4), name: (B, K) for each categorical} logits."""

    def __init__(self, config: AttrConfig = AttrConfig()):
        super().__init__()
        self.config = config
        c = config.channels
        self.blocks = nn.ModuleList([_block(3, c[0]), _block(c[0], c[1]), _block(c[1], c[2])])
        self.heads = nn.ModuleDict({"binary": nn.Linear(c[2], len(world.BINARY)),
                                    **{n: nn.Linear(c[2], len(v)) for n, v in world.CATEGORICAL.items()}})

    def features(self, x: torch.Tensor) -> list:
        """The feature maps after each block: (B, c0, 32, 32), (B, c1, 16, 16), (B, c2, 8, 8)."""
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> dict:
        h = self.features(x)[-1].mean((2, 3))
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images) -> AttributePrediction:
        """Probabilities for any accepted image input (see diffnb.images.to_tensor)."""
        x = to_tensor(images, size=self.config.image_size).to(next(self.parameters()).device)
        logits = self(x)
        return AttributePrediction(binary=logits["binary"].sigmoid().cpu(),
                                   categorical={n: logits[n].softmax(-1).cpu() for n in world.CATEGORICAL})


def attribute_loss(logits: dict, targets: dict) -> torch.Tensor:
    """BCE on the binary attributes + cross-entropy on each categorical one (targets from world.encode_attributes)."""
    loss = F.binary_cross_entropy_with_logits(logits["binary"], targets["binary"])
    return loss + sum(F.cross_entropy(logits[n], targets[n]) for n in world.CATEGORICAL)


def config_dict(config: AttrConfig) -> dict:
    return {"model": "AttributeClassifier", **asdict(config)}
