"""Maintainers: notebook 04's full run (issue 18): every edit trained with every strategy, Table 2 and the steps
sweep measured, then shipped.

    python -m diffnb.editing_run train runs/editing                      # every edit x strategy (RUNS)
    python -m diffnb.editing_run train runs/editing --edit smiling --run markovian   # one; processes may share a folder
    python -m diffnb.editing_run evaluate runs/editing                   # Table 2 and the steps sweep -> results.json
    python -m diffnb.editing_run install runs/editing                    # data/models/editing-runs, card, manifest
    ... --device cuda                                                    # train / evaluate on a GPU

Every strategy takes the same number of gradient steps (`FullRunConfig.steps`) on the same 100 toy images per edit
(`editing.TRAIN_SEED`), so that the strategy is the only difference (the paper's ablation, Fig. 6). Table 2 is
measured on `n_eval` held-out `photo` images (`editing.HELD_OUT_SEED`), each method from its own inverted x_T.

Identity similarity is the paper's CurricularFace score replaced by 1 - toy-LPIPS outside the edited attribute's
toy-seg region (`EDIT_REGIONS`, grown by 2 pixels, on the original and the edited image): what the edit should leave
alone. It is never reported without edit success, since an edit that does nothing keeps identity perfectly.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import editbench, editing, guidance, metrics, zoo

NAME = "editing-runs"
RUNS = {  # file tag -> (method, interval): Alg. 1 and the two baselines in their own and in the full interval
    "alg1": ("alg1", "full"),
    "markovian": ("markovian", "original"),
    "markovian-full": ("markovian", "full"),
    "hspace": ("hspace", "original"),
    "hspace-full": ("hspace", "full"),
}
# toy-seg's classes for each edit's attribute: guidance's attribute regions, and the hair itself for hair colour
EDIT_REGIONS = {edit: guidance.ATTRIBUTE_REGIONS.get(attr, (attr,)) for edit, (attr, _, _) in editing.EDITS.items()}


@dataclass
class FullRunConfig:
    steps: int = 100                   # gradient steps per edit and strategy (batch 4; Alg. 1 edits visibly by 100)
    batch_size: int = 4
    n_eval: int = 100                  # held-out photo images per edit (Table 2)
    eval_steps: int = 20               # inversion and editing steps for Table 2
    sweep_edit: str = "smiling"        # the paper's ablation attribute (Figs. 1 and 6)
    sweep_steps: tuple = (20, 50, 100, 200)
    sweep_n: int = 16
    chunk: int = 25                    # images per edit() call
    seed: int = 0
    edits: tuple = tuple(editing.EDITS)
    extra: dict = field(default_factory=dict)


def file_name(edit: str, run: str) -> str:
    return f"{edit}_{run}.safetensors"


def check_run(run: str) -> tuple:
    if run not in RUNS:
        raise ValueError(f"unknown run {run!r}; accepted: {', '.join(RUNS)}")
    return RUNS[run]


def _models(device: str = "cpu"):
    ddpm = zoo.load("toy-ddpm", device=device)
    rect = zoo.load("toy-rectifier", device=device).model
    return ddpm, rect, zoo.load("toy-clip", device=device)


def train_one(out_dir, edit: str, run: str, cfg: FullRunConfig, device: str = "cpu", progress: bool = True) -> dict:
    """Train one edit with one strategy; writes <edit>_<run>.safetensors and train_<edit>_<run>.json."""
    method, interval = check_run(run)
    editing.check_edit(edit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ddpm, rect, clip = _models(device)
    tc = editing.EditTrainConfig(edit=edit, method=method, interval=interval, steps=cfg.steps,
                                 batch_size=cfg.batch_size, seed=cfg.seed, num_threads=0)
    result = editing.train(ddpm.unet, ddpm.scheduler, rect, clip, tc, progress=progress)
    editing.save_edit(result, out / file_name(edit, run), base_rect=rect)
    info = {"edit": edit, "run": run, "seconds": result.seconds, "device": device,
            "loss_first10": sum(v for _, v in result.losses[:10]) / min(10, len(result.losses)),
            "loss_last10": sum(v for _, v in result.losses[-10:]) / min(10, len(result.losses))}
    (out / f"train_{edit}_{run}.json").write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------------------------------
# Scores (Table 2's columns)
# ------------------------------------------------------------------------------------------------
@dataclass
class EditScores:
    """Per-image scores of one method's edits (tensors of shape (B,))."""
    success: torch.Tensor              # toy-attr reads the edit's target value
    others_kept: torch.Tensor          # fraction of the other binary attributes whose reading is unchanged
    identity: torch.Tensor             # 1 - toy-LPIPS outside the edited attribute's toy-seg region

    def summary(self) -> dict:
        def ms(v):
            v = v.float()
            return [round(float(v.mean()), 4), round(float(v.std()), 4)]
        return {"success": ms(self.success), "others_kept": ms(self.others_kept), "identity": ms(self.identity)}


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


def edit_in_chunks(ddpm, rect, result, x0: torch.Tensor, steps: int, chunk: int) -> torch.Tensor:
    return torch.cat([editing.edit(ddpm.unet, ddpm.scheduler, rect, result, x0[i:i + chunk], steps)
                      for i in range(0, len(x0), chunk)])


def evaluate(run_dir, cfg: FullRunConfig, device: str = "cpu", progress: bool = True) -> dict:
    """Table 2 (every edit x run on cfg.n_eval held-out photo images, cfg.eval_steps steps, with the unedited
    source as a row) and the steps sweep (cfg.sweep_edit, cfg.sweep_n images). Writes results.json; returns it."""
    run_dir = Path(run_dir)
    ddpm, rect, _ = _models(device)
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    perceptual = metrics.toy_lpips(attr)
    results = {"config": asdict(cfg), "table2": {}, "sweep": {}, "seconds_per_image": {}}
    t_start = time.time()
    for edit in cfg.edits:
        x0 = editing.edit_images(edit, cfg.n_eval, seed=editing.HELD_OUT_SEED, domain="photo").images
        rows = {"unedited source": score(edit, x0, x0, attr, seg, perceptual).summary()}
        for run in RUNS:
            path = run_dir / file_name(edit, run)
            if not path.is_file():
                continue
            result = editing.load_edit(path, rect, ddpm.unet)
            t0 = time.time()
            edited = edit_in_chunks(ddpm, rect, result, x0, cfg.eval_steps, cfg.chunk)
            results["seconds_per_image"][f"{edit}/{run}"] = (time.time() - t0) / len(x0)
            rows[run] = score(edit, x0, edited, attr, seg, perceptual).summary()
            if progress:
                print(f"{edit} / {run}: {rows[run]} ({(time.time() - t_start) / 60:.1f} min)", flush=True)
        results["table2"][edit] = rows
    x0 = editing.edit_images(cfg.sweep_edit, cfg.sweep_n, seed=editing.HELD_OUT_SEED, domain="photo").images
    for run in RUNS:
        path = run_dir / file_name(cfg.sweep_edit, run)
        if not path.is_file():
            continue
        result = editing.load_edit(path, rect, ddpm.unet)
        results["sweep"][run] = {}
        for n in cfg.sweep_steps:
            edited = edit_in_chunks(ddpm, rect, result, x0, n, cfg.chunk)
            results["sweep"][run][str(n)] = score(cfg.sweep_edit, x0, edited, attr, seg, perceptual).summary()
            if progress:
                print(f"sweep {run} {n} steps: {results['sweep'][run][str(n)]}", flush=True)
    results["minutes"] = (time.time() - t_start) / 60
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results


# ------------------------------------------------------------------------------------------------
# Card and install
# ------------------------------------------------------------------------------------------------
def card(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    trains = [json.loads(p.read_text()) for p in sorted(run_dir.glob("train_*.json"))]
    cfg = res["config"]
    lines = [f"# {NAME}", "", "Notebook 04's full run: each edit of `editing.EDITS` trained with Alg. 1 and with the "
             "Markovian (DiffusionCLIP) and h-space (Asyrp) baselines, in their own and in the full interval.", "",
             "Recompute: `python -m diffnb.editing_run train runs/editing`, `python -m diffnb.editing_run evaluate "
             "runs/editing`, `python -m diffnb.editing_run install runs/editing`.", "",
             f"- {cfg['steps']} gradient steps of batch {cfg['batch_size']} per edit and strategy, on 100 toy images "
             f"per edit; Table 2 on {cfg['n_eval']} held-out photo images at {cfg['eval_steps']} steps",
             "- training seconds: " + ", ".join(f"{t['edit']}/{t['run']} {t['seconds']:.0f} ({t['device']})"
                                                for t in trains), "",
             "| edit | method | success | others kept | identity (1 - toy-LPIPS outside the region) |",
             "| --- | --- | --- | --- | --- |"]
    for edit, rows in res["table2"].items():
        for run, r in rows.items():
            lines.append(f"| {edit} | {run} | {r['success'][0]:.3f} ± {r['success'][1]:.3f} | "
                         f"{r['others_kept'][0]:.3f} | {r['identity'][0]:.3f} ± {r['identity'][1]:.3f} |")
    return "\n".join(lines) + "\n"


def install(run_dir, root=None) -> Path:
    from .maint.install import update_manifest
    run_dir = Path(run_dir)
    dest = Path(root or zoo.default_root()) / NAME
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in sorted(run_dir.glob("*.safetensors")):
        shutil.copy2(p, dest / p.name)
    shutil.copy2(run_dir / "results.json", dest / "results.json")
    (dest / "card.md").write_text(card(run_dir))
    update_manifest(NAME, dest.parent)
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffnb.editing_run", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("train", "evaluate"):
        s = sub.add_parser(name)
        s.add_argument("run_dir")
        s.add_argument("--device", default="cpu")
        s.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
        s.add_argument("--steps", type=int, help="gradient steps per edit and strategy")
        if name == "train":
            s.add_argument("--edit", action="append", choices=list(editing.EDITS))
            s.add_argument("--run", action="append", choices=list(RUNS))
    i = sub.add_parser("install")
    i.add_argument("run_dir")
    a = p.parse_args(argv)
    if a.cmd == "install":
        print("installed", install(a.run_dir))
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = FullRunConfig(**({"steps": a.steps} if a.steps else {}))
    if a.cmd == "train":
        for edit in a.edit or cfg.edits:
            for run in a.run or RUNS:
                print(train_one(a.run_dir, edit, run, cfg, a.device), flush=True)
    else:
        evaluate(a.run_dir, cfg, a.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
