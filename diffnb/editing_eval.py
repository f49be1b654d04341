"""Notebook 04's measurements (issue 18): Table 2's scores of an edit, and the shipped full run's loaders.

The full run itself (train every edit x strategy, evaluate, install) is a maintainers' recipe:
`diffnb.maint.editing_run` (`python -m diffnb.editing_run ...`). Each edit ships as its own zoo entry
(`editing-smiling`, `editing-glasses`, `editing-blonde`): the trained edits (`<edit>_<run>.safetensors`), Table 2's
scores (`results.json`), the first held-out images' edits as uint8 (`examples.safetensors`) and, for the sweep edit,
supplement D's lambda grid (`lambda_grid.safetensors`). Every loader verifies the entry against the manifest.

Identity similarity is the paper's CurricularFace score replaced by 1 - toy-LPIPS outside the edited attribute's
toy-seg region (`EDIT_REGIONS`, grown by 2 pixels, on the original and the edited image): what the edit should leave
alone. It is never reported without edit success, since an edit that does nothing keeps identity perfectly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from . import editbench, editing, guidance, zoo

PREFIX = "editing-"                  # the zoo entries: editing-smiling, editing-glasses, editing-blonde
SWEEP_EDIT = "smiling"               # the paper's ablation attribute (Figs. 1, 6): the steps sweep and the lambda grid
RECONSTRUCTION = "reconstruction"     # Table 2's no-edit row beside the unedited source: inverted and sampled back
RUNS = {  # file tag -> (method, interval): Alg. 1 and the two baselines in their own and in the full interval
    "alg1": ("alg1", "full"),
    "markovian": ("markovian", "original"),
    "markovian-full": ("markovian", "full"),
    "hspace": ("hspace", "original"),
    "hspace-full": ("hspace", "full"),
}
# toy-seg's classes for each edit's attribute: guidance's attribute regions, and the hair itself for hair colour
EDIT_REGIONS = {edit: guidance.ATTRIBUTE_REGIONS.get(attr, (attr,)) for edit, (attr, _, _) in editing.EDITS.items()}


def file_name(edit: str, run: str) -> str:
    return f"{edit}_{run}.safetensors"


def check_run(run: str) -> tuple:
    if run not in RUNS:
        raise ValueError(f"unknown run {run!r}; accepted: {', '.join(RUNS)}")
    return RUNS[run]


def entry_name(edit: str) -> str:
    return f"{PREFIX}{editing.check_edit(edit) and edit}"


@dataclass
class EditScores:
    """Per-image scores of one method's edits (tensors of shape (B,))."""
    success: torch.Tensor              # toy-attr reads the edit's target value
    others_kept: torch.Tensor          # fraction of the other binary attributes whose reading is unchanged
    identity: torch.Tensor             # 1 - toy-LPIPS outside the edited attribute's toy-seg region

    def summary(self, per_image: int = 0) -> dict:
        """{metric: [mean, std]}, and under "per_image" the first `per_image` images' scores."""
        def ms(v):
            v = v.float()
            return [round(float(v.mean()), 4), round(float(v.std()), 4)]
        out = {"success": ms(self.success), "others_kept": ms(self.others_kept), "identity": ms(self.identity)}
        if per_image:
            out["per_image"] = {k: [round(float(x), 5) for x in getattr(self, k)[:per_image].float()]
                                for k in ("success", "others_kept", "identity")}
        return out


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as uint8 (what a shipped example needs: 1/4 of float32)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).contiguous()


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1


def edit_region(seg_net, edit: str, original: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): where the edit is allowed to act, toy-seg's classes for the attribute on either image."""
    editing.check_edit(edit)
    classes = EDIT_REGIONS[edit]
    return torch.maximum(guidance.region_mask(seg_net, original, classes),
                         guidance.region_mask(seg_net, edited, classes))


@torch.no_grad()
def score(edit: str, original: torch.Tensor, edited: torch.Tensor, attr_model, seg_net, perceptual) -> EditScores:
    region = edit_region(seg_net, edit, original, edited)
    return EditScores(editing.edit_success(attr_model, edited, edit),
                      editing.others_kept(attr_model, edited, original, edit),
                      1 - editbench.ns_lpips(perceptual, original, edited, region))


def invert_in_chunks(ddpm, rect, x0: torch.Tensor, steps: int, chunk: int) -> torch.Tensor:
    """The x_T every method starts from (`editing.invert`), computed once for all of them."""
    return torch.cat([editing.invert(ddpm.unet, ddpm.scheduler, rect, x0[i:i + chunk], steps)
                      for i in range(0, len(x0), chunk)])


def reconstruct_in_chunks(ddpm, rect, x0: torch.Tensor, steps: int, chunk: int, x_T=None) -> torch.Tensor:
    """`editing.reconstruct` in chunks: the inversion-and-sampling baseline, with no edit."""
    return torch.cat([editing.reconstruct(ddpm.unet, ddpm.scheduler, rect, x0[i:i + chunk], steps,
                                          x_T=None if x_T is None else x_T[i:i + chunk])
                      for i in range(0, len(x0), chunk)])


def edit_in_chunks(ddpm, rect, result, x0: torch.Tensor, steps: int, chunk: int, x_T=None) -> torch.Tensor:
    return torch.cat([editing.edit(ddpm.unet, ddpm.scheduler, rect, result, x0[i:i + chunk], steps,
                                   x_T=None if x_T is None else x_T[i:i + chunk])
                      for i in range(0, len(x0), chunk)])


def load_examples(path) -> dict:
    """{"photo/<run>" | "painting/<run>" | "sweep/<run>/<steps>": the first images' edits in [-1, 1]}."""
    from safetensors.torch import load_file
    return {k: from_uint8(v) for k, v in load_file(str(path)).items()}


def load_grid(path) -> dict:
    """{(lambda_clip, lambda_recon): edited images} and "source" from `lambda_grid`'s file."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        out = {"source": from_uint8(f.get_tensor("source"))}
        for lc in json.loads(meta["grid_clip"]):
            for lr in json.loads(meta["grid_recon"]):
                out[(lc, lr)] = from_uint8(f.get_tensor(f"clip{lc}_recon{lr}"))
    return out


def load_results(edit: str, root=None) -> dict:
    """The shipped results of one edit (verified against the manifest)."""
    return json.loads((zoo.verify(entry_name(edit), root) / "results.json").read_text())


def load_shipped_examples(edit: str, root=None) -> dict:
    """The shipped edits of the first held-out images (`load_examples`), verified against the manifest."""
    return load_examples(zoo.verify(entry_name(edit), root) / "examples.safetensors")


def load_shipped_grid(root=None) -> dict:
    """Supplement D's shipped lambda grid (`load_grid`), verified against the manifest."""
    return load_grid(zoo.verify(entry_name(SWEEP_EDIT), root) / "lambda_grid.safetensors")


def load_run(edit: str, run: str, rect, unet=None, root=None) -> editing.EditRun:
    """A shipped trained edit (verified against the manifest), onto the shipped toy-rectifier."""
    check_run(run)
    return editing.load_edit(zoo.verify(entry_name(edit), root) / file_name(edit, run), rect, unet)
