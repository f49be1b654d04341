"""Installing a finished training run into data/models and writing the manifest (the sha256 of every file that
`zoo.verify` checks before loading)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from ..zoo import IGNORED_FILES, RESULT_BASES, _files, _sha256, default_root, entry_digest, read_manifest


def update_manifest(name: str, root: Optional[Path] = None) -> None:
    """Record the sha256 of every file in data/models/<name> in the manifest; for a shipped result, also the digest
    of each model it was computed on (`zoo.RESULT_BASES`): install it only after recomputing on the shipped models."""
    root = Path(root or default_root())
    manifest = read_manifest(root) if (root / "manifest.json").is_file() else {}
    files = [rel for rel in _files(root / name) if Path(rel).name not in IGNORED_FILES]
    if not files:
        raise ValueError(f"{root / name} holds no files to record")
    manifest[name] = {"files": {rel: _sha256(root / name / rel) for rel in files}}
    if name in RESULT_BASES:   # the models this result was computed on (`zoo.check_built_on`)
        manifest[name]["built_on"] = {base: entry_digest(manifest[base]) for base in RESULT_BASES[name]}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def install(name: str, run_dir: Path, root: Optional[Path] = None, card: str = "") -> None:
    """Copy a finished training run into data/models/<name>, write its card and update the manifest."""
    root = Path(root or default_root())
    dest = root / name
    if dest.exists():
        shutil.rmtree(dest)
    keep = [f for f in _files(Path(run_dir)) if f.endswith((".json", ".safetensors"))
            and not f.startswith("resume_state")]   # the optimiser-side state stays in runs/
    for rel in keep:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(run_dir) / rel, dest / rel)
    if card:
        (dest / "card.md").write_text(card)
    update_manifest(name, root)
