"""Tensors with JSON metadata in one safetensors file: the format of every saved result (inversions, mapping
networks). Nothing is ever unpickled.

    write_safetensors({"x_T": x_T, "null.0": e0}, "inv.safetensors", "inversion", {"method": "null-text"})
    meta, tensors = read_safetensors("inv.safetensors", "inversion")
"""
from __future__ import annotations

import hashlib
import json

import torch


def write_safetensors(tensors: dict, path, key: str, meta: dict, dtype: torch.dtype = torch.float16,
                      per_step: tuple = ("net.", "null.", "att.")) -> None:
    """Save `tensors` with `meta` as JSON under metadata[key]; tensors whose names start with `per_step` in `dtype`
    (float16 halves the shipped files), the rest (x_T, c, E(x)) in float32."""
    from safetensors.torch import save_file
    save_file({k: v.detach().cpu().to(dtype if k.startswith(per_step) else torch.float32).contiguous()
               for k, v in tensors.items()}, str(path), metadata={key: json.dumps(meta)})


def read_safetensors(path, key: str):
    """(meta, {name: float32 tensor}) from what `write_safetensors` wrote."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()[key]), {k: f.get_tensor(k).float() for k in f.keys()}


def weights_fingerprint(module: torch.nn.Module) -> str:
    """16 hex digits of sha256 over a module's tensors (fp16 bytes, sorted names): what a trained result stores of
    the model it was trained against (SDD's manipulators, notebook 04's edits), so that it is refused once that
    model changes."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().half().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
