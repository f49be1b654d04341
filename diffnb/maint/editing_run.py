"""Maintainers: notebook 04's full run (issue 18): every edit trained with every strategy, Table 2 and the steps
sweep measured, then shipped.

    python -m diffnb.editing_run train runs/editing                      # every edit x strategy (RUNS)
    python -m diffnb.editing_run train runs/editing --edit smiling --run markovian   # one; processes may share a folder
    python -m diffnb.editing_run grid runs/editing                       # supplement D's lambda grid (Alg. 1)
    python -m diffnb.editing_run evaluate runs/editing [--edit E]        # Table 2, paintings, sweep -> results_E.json
    python -m diffnb.editing_run install runs/editing                    # data/models/editing-<edit>, cards, manifest
    ... --device cuda                                                    # train / evaluate on a GPU

Every strategy takes the same number of gradient steps (`FullRunConfig.steps`) on the same 100 toy images per edit
(`editing.TRAIN_SEED`), so that the strategy is the only difference (the paper's ablation, Fig. 6). Table 2 is
measured on `n_eval` held-out `photo` images (`editing.HELD_OUT_SEED`), every method from the same x_T
(`editing.invert`: the reconstruction model's inversion, computed once). The scores and the loaders the notebook uses
live in `diffnb.editing_eval`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import editing, metrics, zoo
from ..editing_eval import (  # noqa: F401
    PREFIX,
    RECONSTRUCTION,
    RUNS,
    SWEEP_EDIT,
    check_run,
    edit_in_chunks,
    entry_name,
    file_name,
    invert_in_chunks,
    load_examples,
    load_grid,
    reconstruct_in_chunks,
    score,
    to_uint8,
)

# supplement B: "for those prompts that cause severe changes, we set learning schedule to lower decrease speed".
# Hair colour is the severe change here: with lr x 0.9 every 10 steps Alg. 1 turned black hair blonde on 5 of 16
# held-out images (most turned red), every 30 steps on 14 of 16 (runs of 100 steps, batch 4).
SCHEDULES = {"blonde": {"decay_every": 30}}


@dataclass
class FullRunConfig:
    steps: int = 100                   # gradient steps per edit and strategy (batch 4; Alg. 1 edits visibly by 100)
    batch_size: int = 4
    n_eval: int = 100                  # held-out photo images per edit (Table 2)
    eval_steps: int = 20               # inversion and editing steps for Table 2
    sweep_edit: str = SWEEP_EDIT       # the paper's ablation attribute (Figs. 1 and 6)
    sweep_steps: tuple = (20, 50, 100, 200)
    sweep_n: int = 8
    n_painting: int = 32               # out of domain (Fig. 8): Alg. 1 on held-out paintings
    grid_clip: tuple = (0.5, 1.0, 2.0)  # supplement D's grid (Alg. 1 on sweep_edit)
    grid_recon: tuple = (0.5, 1.0, 2.0)
    grid_n: int = 8
    n_examples: int = 8                # images per row kept for the notebook's figures and sliders (uint8)
    per_image: int = 8                 # images whose scores are kept one by one (the notebook re-measures them)
    chunk: int = 25                    # images per edit() call
    seed: int = 0
    edits: tuple = tuple(editing.EDITS)
    extra: dict = field(default_factory=dict)


def _schedule(edit: str) -> dict:
    """The edit's learning-rate schedule where it departs from supplement B's default (every strategy shares it)."""
    return dict(SCHEDULES.get(editing.check_edit(edit) and edit, {}))


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
                                 batch_size=cfg.batch_size, seed=cfg.seed, num_threads=0, **_schedule(edit))
    result = editing.train(ddpm.unet, ddpm.scheduler, rect, clip, tc, progress=progress)
    editing.save_edit(result, out / file_name(edit, run), base_rect=rect)
    info = {"edit": edit, "run": run, "seconds": result.seconds, "device": device,
            "loss_first10": sum(v for _, v in result.losses[:10]) / min(10, len(result.losses)),
            "loss_last10": sum(v for _, v in result.losses[-10:]) / min(10, len(result.losses))}
    (out / f"train_{edit}_{run}.json").write_text(json.dumps(info, indent=1))
    return info


def _rows_for(edit, run_dir, x0, ddpm, rect, attr, seg, perceptual, cfg, runs, progress, t_start, timing=None,
              examples=None, tag=""):
    rows = {"unedited source": score(edit, x0, x0, attr, seg, perceptual).summary(cfg.per_image)}
    if examples is not None:
        examples[f"{tag}source"] = to_uint8(x0[:cfg.n_examples])
    x_T = invert_in_chunks(ddpm, rect, x0, cfg.eval_steps, cfg.chunk)
    recon = reconstruct_in_chunks(ddpm, rect, x0, cfg.eval_steps, cfg.chunk, x_T)
    rows[RECONSTRUCTION] = score(edit, x0, recon, attr, seg, perceptual).summary(cfg.per_image)
    if examples is not None:
        examples[f"{tag}{RECONSTRUCTION}"] = to_uint8(recon[:cfg.n_examples])
    for run in runs:
        path = Path(run_dir) / file_name(edit, run)
        if not path.is_file():
            continue
        result = editing.load_edit(path, rect, ddpm.unet)
        t0 = time.time()
        edited = edit_in_chunks(ddpm, rect, result, x0, cfg.eval_steps, cfg.chunk, x_T)
        if timing is not None:
            timing[f"{edit}/{run}"] = (time.time() - t0) / len(x0)
        rows[run] = score(edit, x0, edited, attr, seg, perceptual).summary(cfg.per_image)
        if examples is not None:
            examples[f"{tag}{run}"] = to_uint8(edited[:cfg.n_examples])
        if progress:
            print(f"{edit} / {run}: { {k: v for k, v in rows[run].items() if k != 'per_image'} } "
                  f"({(time.time() - t_start) / 60:.1f} min)", flush=True)
    return rows


def evaluate_edit(run_dir, edit: str, cfg: FullRunConfig, device: str = "cpu", progress: bool = True) -> dict:
    """One edit's results: Table 2 (every run on cfg.n_eval held-out photo images at cfg.eval_steps, with the
    unedited source as a row), Alg. 1 on cfg.n_painting held-out paintings (Fig. 8), and for cfg.sweep_edit the
    steps sweep (cfg.sweep_n images) and the lambda grid's scores (`lambda_grid`). Writes results_<edit>.json."""
    editing.check_edit(edit)
    run_dir = Path(run_dir)
    ddpm, rect, _ = _models(device)
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    perceptual = metrics.toy_lpips(attr)
    t_start = time.time()
    res = {"config": asdict(cfg), "edit": edit, "seconds_per_image": {}}
    examples = {}
    x0 = editing.edit_images(edit, cfg.n_eval, seed=editing.HELD_OUT_SEED, domain="photo").images
    res["table2"] = _rows_for(edit, run_dir, x0, ddpm, rect, attr, seg, perceptual, cfg, RUNS, progress, t_start,
                              res["seconds_per_image"], examples, "photo/")
    pnt = editing.edit_images(edit, cfg.n_painting, seed=editing.HELD_OUT_SEED, domain="painting").images
    res["painting"] = _rows_for(edit, run_dir, pnt, ddpm, rect, attr, seg, perceptual, cfg, ("alg1",), progress,
                                t_start, examples=examples, tag="painting/")
    if edit == cfg.sweep_edit:
        xs = editing.edit_images(edit, cfg.sweep_n, seed=editing.HELD_OUT_SEED, domain="photo").images
        res["sweep"] = {}
        x_Ts = {n: invert_in_chunks(ddpm, rect, xs, n, cfg.chunk) for n in cfg.sweep_steps}
        res["sweep"][RECONSTRUCTION] = sweep_reconstruction(ddpm, rect, xs, x_Ts, edit, attr, seg, perceptual, cfg,
                                                            examples)
        for run in RUNS:
            path = run_dir / file_name(edit, run)
            if not path.is_file():
                continue
            result = editing.load_edit(path, rect, ddpm.unet)
            res["sweep"][run] = {}
            for n in cfg.sweep_steps:
                edited = edit_in_chunks(ddpm, rect, result, xs, n, cfg.chunk, x_Ts[n])
                examples[f"sweep/{run}/{n}"] = to_uint8(edited[:cfg.n_examples])
                res["sweep"][run][str(n)] = score(edit, xs, edited, attr, seg, perceptual).summary()
                if progress:
                    print(f"sweep {run} {n} steps: {res['sweep'][run][str(n)]}", flush=True)
        grid = run_dir / "lambda_grid.safetensors"
        if grid.is_file():
            xg = editing.edit_images(edit, cfg.grid_n, seed=editing.HELD_OUT_SEED, domain="photo").images
            res["lambda_grid"] = grid_scores(grid, edit, xg, attr, seg, perceptual)
    res["minutes"] = (time.time() - t_start) / 60
    (run_dir / f"results_{edit}.json").write_text(json.dumps(res, indent=1))
    from safetensors.torch import save_file
    save_file(examples, str(run_dir / f"examples_{edit}.safetensors"), metadata={"eval_steps": str(cfg.eval_steps)})
    return res


def sweep_reconstruction(ddpm, rect, xs, x_Ts, edit, attr, seg, perceptual, cfg, examples) -> dict:
    """The no-edit baseline of the steps sweep (Fig. 1: reconstruction improves with steps)."""
    out = {}
    for n in cfg.sweep_steps:
        recon = reconstruct_in_chunks(ddpm, rect, xs, n, cfg.chunk, x_Ts[n])
        examples[f"sweep/{RECONSTRUCTION}/{n}"] = to_uint8(recon[:cfg.n_examples])
        out[str(n)] = score(edit, xs, recon, attr, seg, perceptual).summary()
    return out


def add_reconstruction(run_dir, edit: str, device: str = "cpu") -> dict:
    """Add the reconstruction rows (Table 2, paintings, sweep) to results computed before they existed."""
    from safetensors.torch import load_file, save_file
    run_dir = Path(run_dir)
    res = json.loads((run_dir / f"results_{edit}.json").read_text())
    cfg = FullRunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in res["config"].items()})
    ddpm, rect, _ = _models(device)
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    perceptual = metrics.toy_lpips(attr)
    ex_path = run_dir / f"examples_{edit}.safetensors"
    examples = load_file(str(ex_path))
    for part, domain, n in (("table2", "photo", cfg.n_eval), ("painting", "painting", cfg.n_painting)):
        x0 = editing.edit_images(edit, n, seed=editing.HELD_OUT_SEED, domain=domain).images
        x_T = invert_in_chunks(ddpm, rect, x0, cfg.eval_steps, cfg.chunk)
        recon = reconstruct_in_chunks(ddpm, rect, x0, cfg.eval_steps, cfg.chunk, x_T)
        rows = dict(res[part])
        rows.pop(RECONSTRUCTION, None)
        res[part] = {"unedited source": rows.pop("unedited source"),
                     RECONSTRUCTION: score(edit, x0, recon, attr, seg, perceptual).summary(cfg.per_image), **rows}
        examples[f"{domain}/{RECONSTRUCTION}"] = to_uint8(recon[:cfg.n_examples])
    if "sweep" in res:
        xs = editing.edit_images(edit, cfg.sweep_n, seed=editing.HELD_OUT_SEED, domain="photo").images
        x_Ts = {n: invert_in_chunks(ddpm, rect, xs, n, cfg.chunk) for n in cfg.sweep_steps}
        runs = {k: v for k, v in res["sweep"].items() if k != RECONSTRUCTION}
        res["sweep"] = {RECONSTRUCTION: sweep_reconstruction(ddpm, rect, xs, x_Ts, edit, attr, seg, perceptual, cfg,
                                                             examples), **runs}
    (run_dir / f"results_{edit}.json").write_text(json.dumps(res, indent=1))
    save_file(examples, str(ex_path), metadata={"eval_steps": str(cfg.eval_steps)})
    return res


def update_runs(run_dir, edit: str, runs, device: str = "cpu", progress: bool = True) -> dict:
    """Measure again the given runs of one edit (Table 2 rows, their examples and, for the sweep edit, their sweep)
    after they were retrained, keeping every other row of results_<edit>.json as measured."""
    from safetensors.torch import load_file, save_file
    run_dir = Path(run_dir)
    runs = [r for r in RUNS if r in set(runs)]
    res = json.loads((run_dir / f"results_{edit}.json").read_text())
    cfg = FullRunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in res["config"].items()})
    ddpm, rect, _ = _models(device)
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    perceptual = metrics.toy_lpips(attr)
    ex_path = run_dir / f"examples_{edit}.safetensors"
    examples = load_file(str(ex_path))
    x0 = editing.edit_images(edit, cfg.n_eval, seed=editing.HELD_OUT_SEED, domain="photo").images
    x_T = invert_in_chunks(ddpm, rect, x0, cfg.eval_steps, cfg.chunk)
    new = {}
    for run in runs:
        result = editing.load_edit(run_dir / file_name(edit, run), rect, ddpm.unet)
        t0 = time.time()
        edited = edit_in_chunks(ddpm, rect, result, x0, cfg.eval_steps, cfg.chunk, x_T)
        res["seconds_per_image"][f"{edit}/{run}"] = (time.time() - t0) / len(x0)
        new[run] = score(edit, x0, edited, attr, seg, perceptual).summary(cfg.per_image)
        examples[f"photo/{run}"] = to_uint8(edited[:cfg.n_examples])
        if progress:
            print(f"{edit} / {run}: { {k: v for k, v in new[run].items() if k != 'per_image'} }", flush=True)
    old = res["table2"]
    res["table2"] = {k: new.get(k, old.get(k)) for k in ["unedited source", RECONSTRUCTION, *RUNS]
                     if k in new or k in old}
    if "sweep" in res:
        xs = editing.edit_images(edit, cfg.sweep_n, seed=editing.HELD_OUT_SEED, domain="photo").images
        for run in runs:
            result = editing.load_edit(run_dir / file_name(edit, run), rect, ddpm.unet)
            res["sweep"][run] = {}
            for n in cfg.sweep_steps:
                edited = edit_in_chunks(ddpm, rect, result, xs, n, cfg.chunk,
                                        invert_in_chunks(ddpm, rect, xs, n, cfg.chunk))
                examples[f"sweep/{run}/{n}"] = to_uint8(edited[:cfg.n_examples])
                res["sweep"][run][str(n)] = score(edit, xs, edited, attr, seg, perceptual).summary()
                if progress:
                    print(f"sweep {run} {n} steps: {res['sweep'][run][str(n)]}", flush=True)
        order = [RECONSTRUCTION, *RUNS]
        res["sweep"] = {k: res["sweep"][k] for k in order if k in res["sweep"]}
    (run_dir / f"results_{edit}.json").write_text(json.dumps(res, indent=1))
    save_file(examples, str(ex_path), metadata={"eval_steps": str(cfg.eval_steps)})
    return res


def evaluate(run_dir, cfg: FullRunConfig, device: str = "cpu", progress: bool = True, edits=None) -> dict:
    """`evaluate_edit` for each edit (default cfg.edits); returns {edit: results}."""
    return {e: evaluate_edit(run_dir, e, cfg, device, progress) for e in (edits or cfg.edits)}


def lambda_grid(run_dir, cfg: FullRunConfig, device: str = "cpu", progress: bool = True) -> Path:
    """Train Alg. 1 on cfg.sweep_edit for each (lambda_clip, lambda_recon) of cfg.grid_clip x cfg.grid_recon (the
    shipped steps and schedule) and edit the first cfg.grid_n held-out photo images with each; the edited images
    (not the weights: a grid of rectifiers would not fit the zoo) go to lambda_grid.safetensors."""
    from safetensors.torch import save_file
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ddpm, rect, clip = _models(device)
    edit = cfg.sweep_edit
    xs = editing.edit_images(edit, cfg.grid_n, seed=editing.HELD_OUT_SEED, domain="photo").images
    tensors, meta = {"source": to_uint8(xs)}, {}
    for lc in cfg.grid_clip:
        for lr in cfg.grid_recon:
            tc = editing.EditTrainConfig(edit=edit, method="alg1", steps=cfg.steps, batch_size=cfg.batch_size,
                                         seed=cfg.seed, num_threads=0, lambda_clip=lc, lambda_recon=lr,
                                         **_schedule(edit))
            result = editing.train(ddpm.unet, ddpm.scheduler, rect, clip, tc)
            out = edit_in_chunks(ddpm, rect, result, xs, cfg.eval_steps, cfg.chunk)
            tensors[f"clip{lc}_recon{lr}"] = to_uint8(out)
            meta[f"clip{lc}_recon{lr}"] = f"{result.seconds:.1f}"
            if progress:
                print(f"lambda grid clip {lc} recon {lr}: {result.seconds:.0f} s", flush=True)
    meta.update(edit=edit, grid_clip=json.dumps(list(cfg.grid_clip)), grid_recon=json.dumps(list(cfg.grid_recon)),
                eval_steps=str(cfg.eval_steps))
    path = run_dir / "lambda_grid.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def grid_scores(path, edit, xs, attr, seg, perceptual) -> dict:
    grid = load_grid(path)
    return {f"{k[0]},{k[1]}": score(edit, xs, v[:len(xs)], attr, seg, perceptual).summary()
            for k, v in grid.items() if k != "source"}


def card(run_dir: Path, edit: str) -> str:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / f"results_{edit}.json").read_text())
    trains = [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"train_{edit}_*.json"))]
    cfg = res["config"]
    attr, src, tar = editing.EDITS[edit]
    lines = [f"# {entry_name(edit)}", "",
             f"Notebook 04's full run for the edit `{edit}` ({attr}: {src} -> {tar}): Alg. 1 and the Markovian "
             "(DiffusionCLIP) and h-space (Asyrp) baselines, in their own and in the full interval.", "",
             "Recompute: `python -m diffnb.editing_run train runs/editing`, `python -m diffnb.editing_run grid "
             "runs/editing`, `python -m diffnb.editing_run evaluate runs/editing`, `python -m diffnb.editing_run "
             "install runs/editing`.", "",
             f"- {cfg['steps']} gradient steps of batch {cfg['batch_size']} per strategy, on 100 toy images "
             f"(schedule: {_schedule(edit) or 'supplement B, lr x 0.9 every 10 steps'}); Table 2 on "
             f"{cfg['n_eval']} held-out photo images at {cfg['eval_steps']} DDIM steps",
             "- training seconds: " + ", ".join(f"{t['run']} {t['seconds']:.0f} ({t['device']})" for t in trains),
             "", "| images | method | success | others kept | identity (1 - toy-LPIPS outside the region) |",
             "| --- | --- | --- | --- | --- |"]
    for part in ("table2", "painting"):
        for run, r in res[part].items():
            lines.append(f"| {'photo' if part == 'table2' else 'painting'} | {run} | {r['success'][0]:.3f} ± "
                         f"{r['success'][1]:.3f} | {r['others_kept'][0]:.3f} | {r['identity'][0]:.3f} ± "
                         f"{r['identity'][1]:.3f} |")
    return "\n".join(lines) + "\n"


MAX_ENTRY_BYTES, MAX_RUN_BYTES = 3_000_000, 1_000_000    # the zoo's limits: a new artefact, one shipped run
SWEEP_EXAMPLES = 4                                        # sweep images kept per run and step count (the slider's)


def _shipped_examples(path: Path, dest: Path) -> None:
    """The examples file as shipped: the sweep's rows cut to their first SWEEP_EXAMPLES images (size)."""
    from safetensors.torch import load_file, save_file
    ex = load_file(str(path))
    ex = {k: (v[:SWEEP_EXAMPLES] if k.startswith("sweep/") else v).contiguous() for k, v in ex.items()}
    save_file(ex, str(dest), metadata={"sweep_examples": str(SWEEP_EXAMPLES)})


def install(run_dir, root=None, edits=None) -> list:
    """Ship each edit as zoo entry editing-<edit> (under MAX_ENTRY_BYTES; each run under MAX_RUN_BYTES)."""
    from .install import update_manifest
    run_dir = Path(run_dir)
    root = Path(root or zoo.default_root())
    done = []
    for edit in edits or editing.EDITS:
        dest = root / entry_name(edit)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for p in sorted(run_dir.glob(f"{edit}_*.safetensors")):
            shutil.copy2(p, dest / p.name)
        shutil.copy2(run_dir / f"results_{edit}.json", dest / "results.json")
        _shipped_examples(run_dir / f"examples_{edit}.safetensors", dest / "examples.safetensors")
        if (run_dir / "lambda_grid.safetensors").is_file() and edit == FullRunConfig.sweep_edit:
            shutil.copy2(run_dir / "lambda_grid.safetensors", dest / "lambda_grid.safetensors")
        (dest / "card.md").write_text(card(run_dir, edit))
        big = [p.name for p in dest.glob(f"{edit}_*.safetensors") if p.stat().st_size > MAX_RUN_BYTES]
        total = sum(p.stat().st_size for p in dest.iterdir())
        if big or total > MAX_ENTRY_BYTES:
            raise ValueError(f"{dest.name}: {total:,} bytes (limit {MAX_ENTRY_BYTES:,}); runs over "
                             f"{MAX_RUN_BYTES:,}: {big}")
        update_manifest(entry_name(edit), root)
        done.append(dest)
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffnb.editing_run", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("train", "grid", "evaluate", "install"):
        s = sub.add_parser(name)
        s.add_argument("run_dir")
        if name == "install":
            continue
        s.add_argument("--device", default="cpu")
        s.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
        s.add_argument("--steps", type=int, help="gradient steps per edit and strategy")
        if name in ("train", "evaluate"):
            s.add_argument("--edit", action="append", choices=list(editing.EDITS))
        if name == "train":
            s.add_argument("--run", action="append", choices=list(RUNS))
    a = p.parse_args(argv)
    if a.cmd == "install":
        for dest in install(a.run_dir):
            print("installed", dest)
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = FullRunConfig(**({"steps": a.steps} if a.steps else {}))
    if a.cmd == "train":
        for edit in a.edit or cfg.edits:
            for run in a.run or RUNS:
                print(train_one(a.run_dir, edit, run, cfg, a.device), flush=True)
    elif a.cmd == "grid":
        print("wrote", lambda_grid(a.run_dir, cfg, a.device))
    else:
        evaluate(a.run_dir, cfg, a.device, edits=a.edit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


if __name__ == "__main__":
    raise SystemExit(main())
