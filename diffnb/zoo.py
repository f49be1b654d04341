"""The model zoo: `load(name)` returns a small bundle of the parts a notebook needs.

Toy models live in `data/models/<name>/` (safetensors + config + card.md) and are checked against
`data/models/manifest.json` (sha256 of every file) before loading; nothing is ever unpickled and loading
never writes. Real models come from the Hugging Face hub by id, on a GPU, in real mode.

    python -m diffnb.zoo list                     # what there is
    python -m diffnb.zoo verify                   # check every toy model against the manifest
    python -m diffnb.zoo train toy-attr           # retrain into runs/toy-attr
    python -m diffnb.zoo install toy-attr runs/toy-attr   # measure, write the card, copy, update the manifest

The command line, the trainers, the cards and the manifest writer are the maintainers' (diffnb.maint: cli,
cards, install); this module is the registry the notebooks load from.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import hub, toyae
from .devices import Bundle, get_device, move  # noqa: F401  (get_device: the notebooks' zoo.get_device)

TOY_MODELS = {
    "toy-ddpm": "unconditional UNet2DModel + DDPM/DDIM scheduler, trained on toy world images",
    "toy-attr": "small CNN reading every world attribute (4 binary, 4 categorical)",
    "toy-seg": "small U-Net parsing a world image into its 10 mask classes",
    "toy-clip": "CLIPModel (ViT, 8x8 patches + text transformer) and a word-level tokenizer, contrastive on "
                "(image, caption)",
    "toy-t2i": "UNet2DConditionModel on toy-clip's frozen text tower, caption dropout for classifier-free guidance",
    "toy-ae": "tiny diffusers AutoencoderKL (latent 8x8x8), SDD's frozen encoder E and generator G (diffnb.toyae)",
    "toy-rectifier": ("Hou et al.'s rectifier: separable kernel offsets for toy-ddpm's mid and up blocks "
                      "(diffnb.rectifier)"),
}
SHIPPED_RESULTS = {  # not models but results of a full run that a notebook loads instead of recomputing
    "stylediffusion-photo": "StyleDiffusion mapping networks (Alg. 1, official schedule) for notebook 05's held-out "
                            "photo images",
    "sdd-manipulators": "SDD latent mappers over toy-ae distilled from toy-t2i, and their HQS curves (notebook 07; "
                        "diffnb.maint.sdd_run)",
    **{f"editing-{e}": f"notebook 04's trained edit '{e}': Alg. 1 and the Markovian and h-space baselines, with "
                       "Table 2's scores (diffnb.editing_run)" for e in ("smiling", "glasses", "blonde")},
}
# The models each shipped result was computed on. `maint.install.update_manifest` records a digest of each one's
# manifest entry under "built_on", and `verify` refuses the result once any of them has been reinstalled: mapping
# networks or manipulators trained against an older toy-t2i would load without error and silently show wrong edits.
RESULT_BASES = {"stylediffusion-photo": ("toy-t2i", "toy-clip"), "sdd-manipulators": ("toy-t2i", "toy-ae"),
                **{f"editing-{e}": ("toy-ddpm", "toy-rectifier", "toy-clip") for e in ("smiling", "glasses", "blonde")}}
RECOMPUTE = {"stylediffusion-photo": "python -m diffnb.stylediffusion runs/stylediffusion-photo (its card says how to "
                                     "ship it)",
             "sdd-manipulators": "python -m diffnb.sdd full-run runs/sdd, then python -m diffnb.sdd install runs/sdd",
             **{f"editing-{e}": "python -m diffnb.editing_run train/grid/evaluate/install runs/editing (its card)"
                for e in ("smiling", "glasses", "blonde")}}
REAL_MODELS = {  # name -> (hub id, download size, the toy model that stands in for it)
    "ddpm-celebahq": ("google/ddpm-celebahq-256", "455 MB", "toy-ddpm"),
    "clip-vit-b16": ("openai/clip-vit-base-patch16", "599 MB", "toy-clip"),
    "sd-1.4": ("CompVis/stable-diffusion-v1-4", "5.2 GB", "toy-t2i"),
    "clip-attributes": ("openai/clip-vit-base-patch16", "599 MB", "toy-attr"),   # CLIP zero-shot (diffnb.zeroshot)
    "face-parsing": ("jonathandinu/face-parsing", "about 340 MB", "toy-seg"),    # a CelebAMask-HQ SegFormer
}


# Toy models whose code lives in a method module (a layer above the registry): the loader is named, not imported,
# and imported on first use, so the registry imports no method module (README's layer table) and
# `python -m diffnb.zoo list` loads none. name -> (module, function(folder, card=, dtype=) -> bundle).
METHOD_LOADERS = {
    "toy-rectifier": ("diffnb.rectifier", "load_bundle"),
}


def _method_loader(name: str):
    import importlib
    module, function = METHOD_LOADERS[name]
    return getattr(importlib.import_module(module), function)


def default_root() -> Path:
    """Where the toy models live: $DIFFNB_DATA/models if set, else data/models beside the package."""
    if os.environ.get("DIFFNB_DATA"):
        return Path(os.environ["DIFFNB_DATA"]) / "models"
    return Path(__file__).resolve().parent.parent / "data" / "models"


@dataclass
class DiffusionBundle(Bundle):
    """An unconditional pixel-space diffusion model."""
    name: str
    unet: torch.nn.Module          # diffusers UNet2DModel: (B,3,H,W), t -> .sample eps
    scheduler: object              # diffusers DDIMScheduler (sampling, inversion)
    ddpm_scheduler: object         # diffusers DDPMScheduler (ancestral sampling)
    image_size: int
    source: str                    # folder or hub id
    card: str = ""                 # the model card (toy models)


@dataclass
class ClassifierBundle(Bundle):
    """An attribute classifier (diffnb.classifiers.AttributeClassifier)."""
    name: str
    model: torch.nn.Module
    source: str
    card: str = ""


@dataclass
class AEBundle(Bundle, toyae.AEBundle):
    """toy-ae as the registry hands it out: `toyae.AEBundle` with `.to(device)` and `.device` (the toy-models layer
    cannot import the diffusion core's Bundle itself)."""


@dataclass
class ClipBundle(Bundle):
    """A CLIP model and its tokenizer (use them through diffnb.toyclip: tokenize, image_embeds, clip_score)."""
    name: str
    model: torch.nn.Module         # transformers CLIPModel
    tokenizer: object              # toy: word-level PreTrainedTokenizerFast; real: CLIPTokenizer
    source: str
    card: str = ""


class ManifestError(RuntimeError):
    """A toy model's files do not match data/models/manifest.json."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# Files a model folder may hold without being listed: operating-system litter that no loader reads (Finder writes
# .DS_Store into every folder it opens). Everything else must be listed, because diffusers and transformers read
# files that a folder merely holds (a *.index.json with its shards, added_tokens.json, special_tokens_map.json, ...).
IGNORED_FILES = frozenset({".DS_Store"})


def read_manifest(root: Optional[Path] = None) -> dict:
    """data/models/manifest.json as {name: {"files": {relative path: sha256}}}. Raises ManifestError when it is
    missing, is not JSON, or is not an object of entries each with a non-empty "files" object of hex digests."""
    path = Path(root or default_root()) / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}; the toy models cannot be checked (a broken checkout?)")
    fix = f"restore it with `git checkout -- {path}`"
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} must hold an object of model entries, not a {type(manifest).__name__}; {fix}")
    for name, entry in manifest.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict):
            raise ManifestError(f"{path}: the entry {name!r} has no \"files\" object; {fix}")
        if not files:
            raise ManifestError(f"{path}: the entry {name!r} lists no files, so it would check nothing; {fix} or "
                                f"run `python -m diffnb.zoo install {name} DIR`")
        for rel, digest in files.items():
            if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise ManifestError(f"{path}: {name}'s file {rel!r} has no sha256 (got {digest!r}); {fix}")
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ManifestError(f"{path}: {name}'s file {rel!r} is outside its folder; {fix}")
    return manifest


def entry_digest(entry: dict) -> str:
    """16 hex digits over a manifest entry's weights and configs (their sha256; the card and training log are left
    out, so that editing a card does not invalidate what was computed on the model): what a shipped result records
    of each model it was computed on (`RESULT_BASES`)."""
    files = {rel: d for rel, d in entry["files"].items() if not rel.endswith((".md", "train_log.json"))}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def check_built_on(name: str, manifest: dict) -> None:
    """Refuse shipped result `name` when a model it was computed on has been reinstalled since (ManifestError)."""
    built_on = manifest[name].get("built_on", {})
    for base in RESULT_BASES.get(name, ()):
        have = entry_digest(manifest[base]) if base in manifest else None
        if built_on.get(base) != have:
            raise ManifestError(f"{name} was computed on another {base} (recorded {built_on.get(base)}, shipped "
                                f"{have}): its results would not match the model the notebooks load. Recompute it: "
                                f"{RECOMPUTE[name]}")


def verify(name: str, root: Optional[Path] = None) -> Path:
    """Check toy model `name`'s folder against the manifest, as a whole; return the folder. Raises ManifestError
    naming the first missing, changed or unlisted file (a file that the manifest does not list is refused: the
    loaders would read an added shard index or tokenizer file unchecked)."""
    if name not in SHIPPED_RESULTS:
        _check_name(name)
    root = Path(root or default_root())
    entry = read_manifest(root).get(name)
    if entry is None:
        raise ManifestError(f"{name} is not in {root / 'manifest.json'}; run `python -m diffnb.zoo install {name} DIR`")
    folder = root / name
    if name in RESULT_BASES:
        check_built_on(name, read_manifest(root))
    for rel, digest in entry["files"].items():
        path = folder / rel
        if not path.is_file():
            raise ManifestError(f"{name}: file {rel} is missing from {folder} (restore it with "
                                f"`git checkout -- {path}`)")
        if _sha256(path) != digest:
            raise ManifestError(f"{name}: file {rel} has changed since it was committed (checksum mismatch); "
                                f"restore it with `git checkout -- {path}` or retrain")
    unlisted = [rel for rel in _files(folder) if rel not in entry["files"] and Path(rel).name not in IGNORED_FILES]
    if unlisted:
        raise ManifestError(f"{name}: {folder} holds {len(unlisted)} file(s) that the manifest does not list: "
                            f"{', '.join(unlisted[:5])}{' ...' if len(unlisted) > 5 else ''}. The loaders would read "
                            f"them unchecked; delete them (`git clean -n {folder}` shows the untracked ones), or, "
                            f"for a deliberate change, reinstall with `python -m diffnb.zoo install {name} DIR`")
    return folder


# Measured numbers that a notebook loads instead of recomputing (data/measured/<name>.json, beside data/models): a
# script under notebooks/build/ measures them on the shipped models below and records each one's `entry_digest`
# under "measured_on"; `load_measured` refuses the file once any of those models has been reinstalled, so a
# retrained model fails with the name of the model and the command to re-measure, not with a stale number.
MEASURED = {"02_inversion": ("toy-ddpm", "toy-t2i", "toy-clip", "toy-attr"),
            "05_stylediffusion": ("toy-t2i", "toy-clip", "toy-attr", "toy-seg", "stylediffusion-photo"),
            "06_p2plus": ("toy-t2i", "toy-clip", "toy-attr", "toy-seg", "stylediffusion-photo")}


def measure_command(name: str) -> str:
    """The command that re-measures data/measured/<name>.json (minutes to tens of minutes on two CPU cores)."""
    return f"OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python notebooks/build/measure{name[:2]}.py"


def measured_path(name: str, root: Optional[Path] = None) -> Path:
    """data/measured/<name>.json, beside the models' folder (`root`, default `default_root()`)."""
    if name not in MEASURED:
        raise ValueError(f"unknown measured file {name!r}; known: {', '.join(MEASURED)}")
    return Path(root or default_root()).parent / "measured" / f"{name}.json"


def measured_on(name: str, root: Optional[Path] = None) -> dict:
    """{model: entry_digest} of the shipped models that data/measured/<name>.json is measured on: what its
    measuring script records under "measured_on"."""
    measured_path(name, root)                          # the name's check
    manifest = read_manifest(root)
    missing = [m for m in MEASURED[name] if m not in manifest]
    if missing:
        raise ManifestError(f"{name}'s models {missing} are not in the manifest; install them first")
    return {m: entry_digest(manifest[m]) for m in MEASURED[name]}


def load_measured(name: str, root: Optional[Path] = None) -> dict:
    """data/measured/<name>.json as a dict, after checking that it was measured on the shipped models: every model of
    `MEASURED[name]` must be recorded under "measured_on" with the digest of its manifest entry today. Raises
    ManifestError naming the model, the recorded and the shipped digest and the command that re-measures."""
    path = measured_path(name, root)
    command = measure_command(name)
    if not path.is_file():
        raise ManifestError(f"no measured file {path}; measure it with `{command}`")
    data = json.loads(path.read_text())
    recorded = data.get("measured_on") if isinstance(data, dict) else None
    if not isinstance(recorded, dict):
        raise ManifestError(f"{path} does not record the models it was measured on (no \"measured_on\"), so it "
                            f"cannot be checked against the shipped ones; re-measure with `{command}`")
    shipped = measured_on(name, root)
    for model in sorted(set(shipped) | set(recorded), key=lambda m: (m not in shipped, m)):
        if recorded.get(model) != shipped.get(model):
            raise ManifestError(f"{path} was measured on another {model} (recorded {recorded.get(model)}, shipped "
                                f"{shipped.get(model)}): its numbers would not match what the notebook measures "
                                f"live. Re-measure with `{command}`")
    return data


def _check_name(name: str) -> None:
    if name not in TOY_MODELS and name not in REAL_MODELS:
        raise ValueError(f"unknown model {name!r}; known toy models: {', '.join(TOY_MODELS)}; "
                         f"real models: {', '.join(REAL_MODELS)}")


def load(name: str, root: Optional[Path] = None, device: Optional[str] = None, dtype: torch.dtype = torch.float32,
         progress: bool = False):
    """Load a toy model (checked against the manifest) or a real one (from the hub). Returns a bundle, moved as a
    whole to `device` (every module it holds; a device that does not exist here is refused by name).
    progress: show transformers' and diffusers' loading progress bars (off by default, so that saved notebook
    outputs hold no stuck bars)."""
    _check_name(name)
    if device is not None:
        from .devices import check_device
        check_device(device)
    with _quiet_loading(not progress):
        return _load(name, root, device, dtype)


class _quiet_loading:
    """Silence transformers' and diffusers' progress bars ("Loading weights", "Loading pipeline components") for
    the duration, restoring their settings after."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if not self.quiet:
            return self
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog
        self.previous = (tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled())
        tlog.disable_progress_bar()
        dlog.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.quiet:
            import diffusers.utils.logging as dlog
            import transformers.utils.logging as tlog
            (tlog.enable_progress_bar if self.previous[0] else tlog.disable_progress_bar)()
            (dlog.enable_progress_bar if self.previous[1] else dlog.disable_progress_bar)()
        return False


def _load(name, root, device, dtype):
    if name in REAL_MODELS:
        if name == "clip-attributes":
            from .zeroshot import REAL_PROMPTS, ZeroShotAttributes
            clip = _load_real_clip(name, device, dtype)    # CLIP ViT-B/16, named as what it stands for here: toy-attr
            reader = ZeroShotAttributes(clip.model, clip.tokenizer, REAL_PROMPTS).eval()
            return ClassifierBundle(name, reader, clip.source)
        if name == "face-parsing":
            return _load_face_parser(name, device, dtype)
        if REAL_MODELS[name][2] == "toy-t2i":
            return _load_real_t2i(name, device, dtype)
        if REAL_MODELS[name][2] == "toy-clip":
            return _load_real_clip(name, device, dtype)
        return _load_real(name, device, dtype)
    folder = verify(name, root)
    card = (folder / "card.md").read_text() if (folder / "card.md").is_file() else ""
    if name == "toy-ddpm":
        bundle = _diffusion_bundle(name, folder, dtype)
        bundle.card = card
    elif name == "toy-clip":
        bundle = _load_clip(folder, card, dtype)
    elif name == "toy-seg":
        bundle = _load_seg(folder, card, dtype)
    elif name == "toy-t2i":
        bundle = _load_t2i(folder, card, dtype, root)
    elif name == "toy-ae":   # issue 19
        bundle = AEBundle(**vars(toyae.load_folder(folder, card=card, dtype=dtype)))
    elif name in METHOD_LOADERS:   # toy-rectifier (issue 17): its code is a method module's
        bundle = _method_loader(name)(folder, card=card, dtype=dtype)
    else:
        bundle = _load_attr(folder, card, dtype)
    _to(bundle, device)
    return bundle


def _diffusion_bundle(name: str, folder: Path, dtype) -> DiffusionBundle:
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(str(folder), use_safetensors=True, torch_dtype=dtype,
                                       low_cpu_mem_usage=False).eval()
    ddpm = DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler")
    return DiffusionBundle(name=name, unet=unet.requires_grad_(False), scheduler=DDIMScheduler.from_config(ddpm.config),
                           ddpm_scheduler=ddpm, image_size=unet.config.sample_size, source=str(folder))


def _load_attr(folder: Path, card: str, dtype) -> ClassifierBundle:
    from safetensors.torch import load_file

    from .classifiers import AttrConfig, AttributeClassifier
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("model", None)
    model = AttributeClassifier(AttrConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))
    model.load_state_dict({k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()})
    return ClassifierBundle("toy-attr", model.to(dtype).eval().requires_grad_(False), str(folder), card)


def _load_clip(folder: Path, card: str, dtype) -> ClipBundle:
    from transformers import CLIPModel, PreTrainedTokenizerFast
    model = CLIPModel.from_pretrained(str(folder), use_safetensors=True, dtype=dtype)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    return ClipBundle("toy-clip", model.eval().requires_grad_(False), tokenizer, str(folder), card)


def _load_real_clip(name, device, dtype) -> ClipBundle:
    hub_id = REAL_MODELS[name][0]
    access, note = hub.access()
    try:
        from transformers import CLIPModel, CLIPTokenizer
        model = CLIPModel.from_pretrained(hub_id, use_safetensors=True, dtype=dtype, **access)
        tokenizer = CLIPTokenizer.from_pretrained(hub_id, **access)
    except Exception as e:  # offline, no network, or no access
        raise hub.error(name, *REAL_MODELS[name], e, note, "network") from None
    bundle = ClipBundle(name, model.eval().requires_grad_(False), tokenizer, hub_id)
    _to(bundle, device)
    return bundle


def _load_seg(folder: Path, card: str, dtype) -> ClassifierBundle:
    from safetensors.torch import load_file

    from .segmentation import SegConfig, SegmentationNet
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("model", None)
    model = SegmentationNet(SegConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}))
    model.load_state_dict({k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()})
    return ClassifierBundle("toy-seg", model.to(dtype).eval().requires_grad_(False), str(folder), card)


def _load_t2i(folder: Path, card: str, dtype, root):
    """toy-t2i: its UNet2DConditionModel and scheduler, with toy-clip's text tower and tokenizer (no VAE)."""
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

    from .t2i import T2IBundle, text_tower
    unet = UNet2DConditionModel.from_pretrained(str(folder), use_safetensors=True, torch_dtype=dtype,
                                                low_cpu_mem_usage=False).eval().requires_grad_(False)
    ddpm = DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler")
    clip = load("toy-clip", root=root, dtype=dtype)
    return T2IBundle("toy-t2i", unet, text_tower(clip.model).to(dtype), clip.tokenizer,
                     DDIMScheduler.from_config(ddpm.config), None, unet.config.sample_size, str(folder), card)


def _load_real_t2i(name, device, dtype):
    hub_id = REAL_MODELS[name][0]
    access, note = hub.access()
    try:
        from diffusers import StableDiffusionPipeline
        pipe = StableDiffusionPipeline.from_pretrained(hub_id, use_safetensors=True, torch_dtype=dtype,
                                                       safety_checker=None, **access)
    except Exception as e:  # offline, no network, or no access
        raise hub.error(name, *REAL_MODELS[name], e, note, "network and a GPU") from None
    from diffusers import DDIMScheduler

    from .t2i import T2IBundle
    bundle = T2IBundle(name, pipe.unet.eval().requires_grad_(False), pipe.text_encoder.eval().requires_grad_(False),
                       pipe.tokenizer, DDIMScheduler.from_config(pipe.scheduler.config),
                       pipe.vae.eval().requires_grad_(False),
                       pipe.unet.config.sample_size * 8, hub_id)
    _to(bundle, device)
    return bundle


class _SegformerLogits(torch.nn.Module):
    """A SegFormer face parser with toy-seg's interface: (B,3,H,W) in [-1,1] -> (B, classes, H, W) logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.classes = tuple(model.config.id2label[i] for i in range(len(model.config.id2label)))

    def forward(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        logits = self.model(pixel_values=((x + 1) / 2 - mean) / std).logits
        return torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _load_face_parser(name, device, dtype) -> ClassifierBundle:
    hub_id = REAL_MODELS[name][0]
    access, note = hub.access()
    try:
        from transformers import SegformerForSemanticSegmentation
        model = SegformerForSemanticSegmentation.from_pretrained(hub_id, use_safetensors=True, dtype=dtype, **access)
    except Exception as e:  # offline, no network, or no access
        raise hub.error(name, *REAL_MODELS[name], e, note, "network") from None
    bundle = ClassifierBundle(name, _SegformerLogits(model.eval().requires_grad_(False)), hub_id)
    _to(bundle, device)
    return bundle


def _load_real(name, device, dtype):
    hub_id = REAL_MODELS[name][0]
    access, note = hub.access()
    try:
        from diffusers import DDPMPipeline
        pipe = DDPMPipeline.from_pretrained(hub_id, use_safetensors=True, torch_dtype=dtype, **access)
    except Exception as e:  # offline, no network, or no access
        raise hub.error(name, *REAL_MODELS[name], e, note, "network and a GPU for reasonable speed") from None
    from diffusers import DDIMScheduler
    bundle = DiffusionBundle(name=name, unet=pipe.unet.eval().requires_grad_(False),
                             scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
                             ddpm_scheduler=pipe.scheduler, image_size=pipe.unet.config.sample_size, source=hub_id)
    _to(bundle, device)
    return bundle


def _to(bundle, device):
    """Move the whole bundle (every module it holds) to `device`, when one is given."""
    if device is not None:
        move(bundle, device)


if __name__ == "__main__":   # python -m diffnb.zoo: the command line is the maintainers' (diffnb.maint.cli)
    import sys

    from diffnb.maint.cli import main
    sys.exit(main())
