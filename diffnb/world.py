"""The toy world: 32x32 faces of people, cats and robots, with masks, attributes and captions.

It stands in for CelebA / CelebAMask-HQ / LAION in toy mode. Every image is drawn as a *label map*
with PIL at 4x (128x128), coloured through a per-image palette and box-downsampled to 32x32, so the
segmentation mask and the picture always agree. Everything is deterministic from a seed.

    batch = sample(16, seed=0)                    # WorldBatch: images (16,3,32,32) in [-1,1], masks, ...
    batch = sample(8, seed=1, domain="photo", glasses=True, subject="cat")
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import checks

SIZE = 32            # side of a world image in pixels
SCALE = 4            # images are drawn at SCALE x SIZE and box-downsampled
DOMAINS = ("toy", "photo", "painting")

SUBJECTS = ("person", "cat", "robot")
BINARY = ("smiling", "eyes_open", "glasses", "hat")
PALETTES = {  # categorical attributes: name -> {value: RGB}
    "hair": {"black": (28, 24, 22), "brown": (110, 62, 30), "blonde": (232, 196, 92),
             "red": (196, 52, 28), "grey": (150, 150, 150)},
    "skin": {"pale": (250, 218, 196), "tan": (214, 160, 112), "brown": (146, 94, 60),
             "dark": (88, 56, 38)},
    "background": {"blue": (70, 120, 220), "green": (70, 170, 90), "pink": (240, 150, 190),
                   "yellow": (240, 220, 90), "white": (235, 235, 235)},
}
CATEGORICAL = {"subject": SUBJECTS, **{k: tuple(v) for k, v in PALETTES.items()}}
BINARY_PRIOR = {"smiling": 0.5, "eyes_open": 0.7, "glasses": 0.35, "hat": 0.35}

# Segmentation classes (the toy CelebAMask-HQ).
MASK_CLASSES = ("background", "head", "hair", "left_eye", "right_eye", "mouth", "nose", "ears",
                "glasses", "hat")
_MASK_ID = {name: i for i, name in enumerate(MASK_CLASSES)}
# Render labels: the mask classes plus details that are drawn in their own colour but belong to a class.
_DETAILS = {"left_pupil": "left_eye", "right_pupil": "right_eye", "whisker": "head", "antenna": "head",
            "inner_ear": "ears", "hat_band": "hat", "teeth": "mouth", "antenna_ball": "head",
            "left_lid": "left_eye", "right_lid": "right_eye"}
_RENDER = MASK_CLASSES + tuple(_DETAILS)
_R = {name: i for i, name in enumerate(_RENDER)}
_RENDER_TO_MASK = np.array([_MASK_ID[n] for n in MASK_CLASSES] + [_MASK_ID[v] for v in _DETAILS.values()],
                           dtype=np.int64)
_FIXED_COLOURS = {"left_eye": (245, 245, 245), "right_eye": (245, 245, 245), "mouth": (150, 30, 45),
                  "glasses": (18, 18, 22), "hat": (120, 40, 150), "left_pupil": (25, 25, 40),
                  "right_pupil": (25, 25, 40), "whisker": (45, 40, 40), "antenna": (95, 95, 105),
                  "inner_ear": (235, 150, 165), "hat_band": (250, 200, 60), "teeth": (250, 250, 250),
                  "antenna_ball": (225, 40, 40), "left_lid": (40, 28, 30), "right_lid": (40, 28, 30)}


@dataclass(frozen=True)
class Attributes:
    """What a world image shows. Every field is checked against the world's vocabulary."""
    subject: str = "person"      # one of SUBJECTS
    smiling: bool = False
    eyes_open: bool = True
    glasses: bool = False
    hat: bool = False
    hair: str = "brown"          # hair / fur / crest colour, a key of PALETTES["hair"]
    skin: str = "tan"            # face colour, a key of PALETTES["skin"]
    background: str = "blue"     # a key of PALETTES["background"]

    def __post_init__(self):
        for name, values in CATEGORICAL.items():
            if getattr(self, name) not in values:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; accepted: {', '.join(values)}")
        for name in BINARY:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ATTRIBUTE_NAMES = tuple(f.name for f in fields(Attributes))


def check_attribute_names(names) -> None:
    """Raise a ValueError naming any attribute that the world does not have."""
    unknown = [n for n in names if n not in ATTRIBUTE_NAMES]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; accepted: {', '.join(ATTRIBUTE_NAMES)}")


@dataclass
class WorldBatch:
    """A batch of world images with everything known about them."""
    images: torch.Tensor          # (B, 3, 32, 32) float32 in [-1, 1]
    masks: torch.Tensor           # (B, 32, 32) int64, indices into MASK_CLASSES
    attributes: list              # B Attributes
    captions: list                # B full captions (see `caption`)
    domain: str                   # "toy", "photo" or "painting"
    seed: int                     # the seed the batch was drawn from

    def __len__(self):
        return len(self.attributes)


# ----------------------------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------------------------
def check_seed(seed) -> int:
    """A seed is a non-negative integer (Python or numpy); 1.7 or True is refused rather than truncated."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def sample_attributes(n: int, seed: int = 0, **fixed) -> list:
    """Draw n Attributes from the world's prior; keyword arguments fix attributes (e.g. hat=True)."""
    check_seed(seed)
    check_attribute_names(fixed)
    Attributes(**{**Attributes().as_dict(), **fixed})  # validates the fixed values
    rng = np.random.default_rng([int(seed), 7])
    out = []
    for _ in range(n):
        d = {name: values[rng.integers(len(values))] for name, values in CATEGORICAL.items()}
        d.update({name: bool(rng.random() < p) for name, p in BINARY_PRIOR.items()})
        d.update(fixed)
        out.append(Attributes(**d))
    return out


def encode_attributes(attrs) -> dict:
    """Attributes -> {"binary": (B,4) float tensor, name: (B,) long index for each categorical}."""
    out = {"binary": torch.tensor([[float(getattr(a, b)) for b in BINARY] for a in attrs])}
    for name, values in CATEGORICAL.items():
        out[name] = torch.tensor([values.index(getattr(a, name)) for a in attrs], dtype=torch.long)
    return out


# ----------------------------------------------------------------------------------------------
# Captions: a small grammar, with partial variants that leave attributes out
# ----------------------------------------------------------------------------------------------
_HAIR_WORD = {"person": "hair", "cat": "fur", "robot": "crest"}
_SKIN_WORD = {"person": "skin", "cat": "face", "robot": "face"}


def caption(attrs: Attributes, drop=()) -> str:
    """The caption of `attrs`, e.g. 'a smiling cat with grey fur, tan face, open eyes, glasses and a hat
    on a blue background'. Attributes named in `drop` are left out (the subject is always kept).
    Glasses and hats are mentioned only when present; 'smiling'/'serious' and open/closed eyes always."""
    check_attribute_names(drop)
    a, s = attrs, attrs.subject
    head = ["a"] + ([] if "smiling" in drop else ["smiling" if a.smiling else "serious"]) + [s]
    parts = []
    if "hair" not in drop:
        parts.append(f"{a.hair} {_HAIR_WORD[s]}")
    if "skin" not in drop:
        parts.append(f"{a.skin} {_SKIN_WORD[s]}")
    if "eyes_open" not in drop:
        parts.append("open eyes" if a.eyes_open else "closed eyes")
    if a.glasses and "glasses" not in drop:
        parts.append("glasses")
    if a.hat and "hat" not in drop:
        parts.append("a hat")
    text = " ".join(head)
    if parts:
        text += " with " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
    if "background" not in drop:
        text += f" on a {a.background} background"
    return text


def partial_caption(attrs: Attributes, rng: np.random.Generator, p_drop: float = 0.5) -> str:
    """A caption that leaves each attribute out with probability p_drop (StyleDiffusion's point)."""
    droppable = [n for n in ATTRIBUTE_NAMES if n != "subject"]
    return caption(attrs, drop=[n for n in droppable if rng.random() < p_drop])


def vocabulary() -> list:
    """Every word a caption can contain, sorted."""
    words = {"a", "with", "and", "on", "background", "smiling", "serious", "open", "closed", "eyes",
             "glasses", "hat", *SUBJECTS, *_HAIR_WORD.values(), *_SKIN_WORD.values()}
    for pal in PALETTES.values():
        words |= set(pal)
    return sorted(words)


def parse_caption(text: str) -> dict:
    """The attributes a caption states, as {name: value}. Raises ValueError on words outside the world's
    vocabulary, listing them and the vocabulary."""
    words = text.lower().replace(",", " ").split()
    vocab = set(vocabulary())
    unknown = sorted({w for w in words if w not in vocab})
    if unknown:
        raise ValueError(f"unknown word(s) {unknown}; the toy world's vocabulary is: {' '.join(sorted(vocab))}")
    out = {}
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        if w in SUBJECTS:
            out["subject"] = w
        elif w in ("smiling", "serious"):
            out["smiling"] = w == "smiling"
        elif w in ("open", "closed") and nxt == "eyes":
            out["eyes_open"] = w == "open"
        elif w == "glasses":
            out["glasses"] = True
        elif w == "hat":
            out["hat"] = True
        elif nxt in _HAIR_WORD.values() and w in PALETTES["hair"]:
            out["hair"] = w
        elif nxt in _SKIN_WORD.values() and w in PALETTES["skin"]:
            out["skin"] = w
        elif nxt == "background" and w in PALETTES["background"]:
            out["background"] = w
    return out


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------
def _ellipse(d, cx, cy, rx, ry, label, width=0):
    box = (cx - rx, cy - ry, cx + rx, cy + ry)
    if width:
        d.ellipse(box, outline=label, width=width)
    else:
        d.ellipse(box, fill=label)


def _draw_labels(a: Attributes, rng: np.random.Generator, jitter: float) -> Image.Image:
    """Draw one label map (a 128x128 "P" image of render labels) for attributes `a`."""
    S = SIZE * SCALE
    img = Image.new("P", (S, S), _R["background"])
    d = ImageDraw.Draw(img)
    cx = S / 2 + rng.uniform(-jitter, jitter)
    cy = S / 2 + 6 + rng.uniform(-jitter, jitter)
    r = rng.uniform(33, 39)
    rx = r * (1.12 if a.subject == "cat" else 1.0)
    robot, cat = a.subject == "robot", a.subject == "cat"

    # 1. ears and hair behind the head
    if cat:
        for sgn in (-1, 1):
            base = cx + sgn * 0.62 * rx
            d.polygon([(base - 0.42 * r, cy - 0.5 * r), (base + 0.42 * r, cy - 0.5 * r),
                       (base + sgn * 0.2 * r, cy - 1.45 * r)], fill=_R["ears"])
            d.polygon([(base - 0.2 * r, cy - 0.7 * r), (base + 0.2 * r, cy - 0.7 * r),
                       (base + sgn * 0.12 * r, cy - 1.2 * r)], fill=_R["inner_ear"])
    elif robot:
        for sgn in (-1, 1):
            x0 = cx + sgn * 0.95 * r
            d.rectangle((min(x0, x0 + sgn * 0.3 * r), cy - 0.3 * r, max(x0, x0 + sgn * 0.3 * r), cy + 0.2 * r),
                        fill=_R["ears"])
        d.line((cx, cy - r, cx, cy - 1.5 * r), fill=_R["antenna"], width=5)
        _ellipse(d, cx, cy - 1.5 * r, 0.16 * r, 0.16 * r, _R["antenna_ball"])
    else:
        d.ellipse((cx - r - 7, cy - r - 9, cx + r + 7, cy + 0.55 * r), fill=_R["hair"])
        for sgn in (-1, 1):
            _ellipse(d, cx + sgn * r, cy + 0.05 * r, 0.2 * r, 0.27 * r, _R["ears"])

    # 2. the head, then hair / fur / crest on top of it
    if robot:
        d.rounded_rectangle((cx - r, cy - r, cx + r, cy + 0.95 * r), radius=8, fill=_R["head"])
        d.rectangle((cx - 0.7 * r, cy - r - 7, cx + 0.7 * r, cy - 0.62 * r), fill=_R["hair"])
    else:
        _ellipse(d, cx, cy, rx, r, _R["head"])
        top = cy - r - (8 if not cat else 2)
        bottom = cy - (0.25 if not cat else 0.5) * r
        d.chord((cx - rx - 3, top, cx + rx + 3, 2 * bottom - top), 180, 360, fill=_R["hair"])

    # 3. eyes
    ey = cy - 0.1 * r
    for side, sgn in (("left", -1), ("right", 1)):
        ex = cx + sgn * 0.4 * rx
        erx, ery = 0.23 * r, 0.2 * r
        if a.eyes_open:
            if robot:
                d.rectangle((ex - erx, ey - ery, ex + erx, ey + ery), fill=_R[f"{side}_eye"])
                d.rectangle((ex - 0.45 * erx, ey - 0.45 * ery, ex + 0.45 * erx, ey + 0.45 * ery),
                            fill=_R[f"{side}_pupil"])
            else:
                _ellipse(d, ex, ey, erx, ery, _R[f"{side}_eye"])
                pr = 0.55 * ery if not cat else 0.45 * erx
                _ellipse(d, ex, ey, pr * (0.6 if cat else 1.0), 0.9 * ery if cat else pr, _R[f"{side}_pupil"])
        else:
            d.line((ex - erx, ey, ex + erx, ey), fill=_R[f"{side}_lid"], width=4)
        if a.glasses:
            _ellipse(d, ex, ey, erx + 6, ery + 6, _R["glasses"], width=5)
    if a.glasses:
        d.line((cx - 0.4 * rx + 0.23 * r + 6, ey, cx + 0.4 * rx - 0.23 * r - 6, ey), fill=_R["glasses"], width=5)
        for sgn in (-1, 1):
            d.line((cx + sgn * (0.4 * rx + 0.23 * r + 6), ey, cx + sgn * rx * 0.98, ey - 3),
                   fill=_R["glasses"], width=4)

    # 4. nose and whiskers
    ny = cy + 0.22 * r
    if cat:
        d.polygon([(cx - 0.13 * r, ny - 0.05 * r), (cx + 0.13 * r, ny - 0.05 * r), (cx, ny + 0.1 * r)],
                  fill=_R["nose"])
        for sgn in (-1, 1):
            for dy in (-0.06, 0.08):
                d.line((cx + sgn * 0.25 * r, ny + dy * r, cx + sgn * 0.95 * rx, ny + (dy * 2.2) * r),
                       fill=_R["whisker"], width=3)
    elif robot:
        d.rectangle((cx - 0.08 * r, ny - 0.08 * r, cx + 0.08 * r, ny + 0.08 * r), fill=_R["nose"])
    else:
        _ellipse(d, cx, ny, 0.1 * r, 0.08 * r, _R["nose"])

    # 5. mouth: an open smile (a chord with teeth) or a straight line
    my, mw = cy + 0.5 * r, 0.4 * rx
    if a.smiling:
        d.chord((cx - mw, my - 0.36 * r, cx + mw, my + 0.36 * r), 0, 180, fill=_R["mouth"])
        d.rectangle((cx - 0.6 * mw, my, cx + 0.6 * mw, my + 0.08 * r), fill=_R["teeth"])
    else:
        d.rectangle((cx - 0.6 * mw, my + 0.02 * r, cx + 0.6 * mw, my + 0.13 * r), fill=_R["mouth"])

    # 6. hat
    if a.hat:
        top = cy - r - (10 if robot else 6)
        d.rectangle((cx - 1.1 * r, top - 6, cx + 1.1 * r, top + 4), fill=_R["hat"])
        d.rectangle((cx - 0.62 * r, top - 0.75 * r, cx + 0.62 * r, top), fill=_R["hat"])
        d.rectangle((cx - 0.62 * r, top - 0.28 * r, cx + 0.62 * r, top - 0.12 * r), fill=_R["hat_band"])
    return img


def _palette(a: Attributes, rng: np.random.Generator) -> np.ndarray:
    """(len(_RENDER), 3) float32 colours for one image, with a little per-image variation."""
    pal = np.zeros((len(_RENDER), 3), np.float32)
    for name, rgb in _FIXED_COLOURS.items():
        pal[_R[name]] = rgb
    skin = np.array(PALETTES["skin"][a.skin], np.float32)
    hair = np.array(PALETTES["hair"][a.hair], np.float32)
    pal[_R["background"]] = PALETTES["background"][a.background]
    pal[_R["head"]] = skin
    pal[_R["hair"]] = hair
    pal[_R["ears"]] = {"person": skin, "cat": hair, "robot": skin * 0.75}[a.subject]
    pal[_R["nose"]] = {"person": skin * 0.8, "cat": np.array((225, 110, 130)), "robot": skin * 0.6}[a.subject]
    if a.subject == "robot":
        pal[_R["left_eye"]] = pal[_R["right_eye"]] = (120, 230, 240)
    pal += rng.normal(0, 5, size=(1, 3)).astype(np.float32)
    return np.clip(pal, 0, 255)


def _apply_domain(x: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """x: (B, 32, 32, 3) float in [0, 1] -> the same images as seen in `domain`."""
    B = x.shape[0]
    if domain == "toy":
        return x
    yy, xx = np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE), indexing="ij")
    if domain == "photo":
        ang = rng.uniform(0, 2 * math.pi, size=(B, 1, 1))
        strength = rng.uniform(0.15, 0.35, size=(B, 1, 1))
        light = 1 + strength * (np.cos(ang) * xx + np.sin(ang) * yy)                 # lighting gradient
        x = x * light[..., None] * rng.uniform(0.9, 1.1, size=(B, 1, 1, 3))           # colour jitter
        x = 0.25 * (np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 2)) * 0.4 + 0.6 * x
        x = x + rng.normal(0, 1, size=x.shape) * rng.uniform(0.02, 0.05, size=(B, 1, 1, 1))  # sensor noise
    elif domain == "painting":
        grey = x.mean(-1, keepdims=True)
        ang = rng.uniform(0.5, 1.1, size=(B, 1, 1)) * rng.choice([-1, 1], size=(B, 1, 1))
        c, s = np.cos(ang), np.sin(ang)                                              # hue rotation about grey
        u = (x - grey)
        v = np.stack([u[..., 1] - u[..., 2], u[..., 0] - 0.5 * (u[..., 1] + u[..., 2])], -1)  # 2-D chroma
        x = grey + 1.3 * (c[..., None] * u + s[..., None] * np.concatenate([v, -v[..., :1]], -1) * 0.6)
        strokes = rng.normal(0, 1, size=(B, SIZE, SIZE // 4, 1)).repeat(4, 2)         # horizontal brush strokes
        x = x + 0.08 * strokes + 0.04 * rng.normal(0, 1, size=(B, SIZE, SIZE, 1))
        x = np.round(x * 10) / 10                                                    # flat paint
    else:
        raise ValueError(f"unknown domain {domain!r}; accepted: {', '.join(DOMAINS)}")
    return np.clip(x, 0, 1)


def render(attrs, seed: int = 0, domain: str = "toy") -> WorldBatch:
    """Draw one image per Attributes in `attrs` (deterministic from `seed`)."""
    check_seed(seed)
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; accepted: {', '.join(DOMAINS)}")
    attrs = list(attrs)
    if not attrs or not all(isinstance(a, Attributes) for a in attrs):
        raise ValueError("render takes a non-empty list of world.Attributes (see sample_attributes)")
    rng = np.random.default_rng([int(seed), 11])
    jitter = 6.0 if domain == "toy" else 9.0
    labels = [_draw_labels(a, rng, jitter) for a in attrs]                         # B label maps, 128x128
    x, masks = [], []
    for a, lab in zip(attrs, labels):
        pal = _palette(a, rng).round().astype(np.uint8)
        coloured = lab.copy()
        coloured.putpalette(pal.ravel().tolist() + [0] * (768 - pal.size))
        x.append(np.asarray(coloured.convert("RGB").reduce(SCALE)))                # box downsample
        masks.append(np.asarray(lab)[SCALE // 2::SCALE, SCALE // 2::SCALE])
    x = np.stack(x).astype(np.float32) / 255.0                                     # (B, 32, 32, 3)
    masks = _RENDER_TO_MASK[np.stack(masks)]
    x = _apply_domain(x, domain, np.random.default_rng([int(seed), 13]))
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)) * 2 - 1
    return WorldBatch(images=images, masks=torch.from_numpy(masks), attributes=attrs,
                      captions=[caption(a) for a in attrs], domain=domain, seed=int(seed))


def sample(n: int, seed: int = 0, domain: str = "toy", **fixed) -> WorldBatch:
    """n random world images; keyword arguments fix attributes, e.g. sample(8, subject="cat", hat=True).

    A batch is the unit of determinism: the same n and seed give the same pixels in every process, but image i
    depends on n as well as the seed (world.sample(4, seed=3).images[0] is not world.sample(1, seed=3).images[0]:
    the geometry, palettes and photo-domain noise are drawn batch-wide). Per-image seeds would change every shipped
    model's training stream and held-out sets, so this is documented rather than changed; to compare images across
    runs, draw them with the same n and seed."""
    n = checks.count("n", n)
    return render(sample_attributes(n, seed=seed, **fixed), seed=seed, domain=domain)


def with_attributes(batch: WorldBatch, **changes) -> WorldBatch:
    """The same images (same seed, same geometry) with some attributes changed, e.g. eyes_open=False."""
    check_attribute_names(changes)
    return render([replace(a, **changes) for a in batch.attributes], seed=batch.seed, domain=batch.domain)


def stream(batch_size: int, seed: int = 0, domain: str = "toy"):
    """An endless iterator of WorldBatches (batch k uses seed `seed * 1_000_003 + k`)."""
    k = 0
    while True:
        yield sample(batch_size, seed=seed * 1_000_003 + k, domain=domain)
        k += 1
