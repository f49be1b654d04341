"""Maintainers: SDD's full run for notebook 07, in one command.

Measured: about 12 minutes per edit with the three edits as parallel processes (`--edit`, 1 torch thread each) on a
2-core machine shared with one other job (2026-11-29); an earlier run took 33 minutes per edit at load ~20.

    python -m diffnb.sdd full-run runs/sdd          # HQS curves and the 15 manipulators of Table 3
    python -m diffnb.sdd install runs/sdd           # copy into data/models/sdd-manipulators, card, manifest

For each edit of `sdd_eval.EDITS` it measures HQS (SDS form of d_t, both entropy forms) over `n_images` person
images on the grid `FULL_GRID`, then distils one manipulator per Table 3 strategy, each for the same number of
iterations. Re-run it whenever toy-ae or toy-t2i is retrained: the manipulators store both models' fingerprints and
`sdd.load` refuses them against any other.

`python -m diffnb.sdd ...` and `python -m diffnb.sdd_run ...` are this module's entry points. The names notebook 07
loads the shipped run with (NAME, STRATEGIES, file_name) and the scores live in `diffnb.sdd_eval`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import sdd, sdd_eval, world
from ..sdd_eval import NAME, STRATEGIES, file_name  # noqa: F401  (the shipped run's names; old import path)

FULL_GRID = tuple(range(50, 1001, 50))


@dataclass
class FullRunConfig:
    n_images: int = 64                # images E_y averages over (Eq. 12)
    grid: tuple = FULL_GRID           # the t grid of the HQS curves
    small_xi: float = 0.0             # Table 3's small threshold: every t with positive HQS
    large_xi_share: float = 0.5       # Table 3's large threshold: this share of the largest HQS
    image_seed: int = 70_000
    distill: sdd.DistillConfig = None  # default: sdd.DistillConfig()

    def __post_init__(self):
        self.distill = self.distill or sdd.DistillConfig()


def strategy_timesteps(curves: dict, strategy: str, cfg: FullRunConfig) -> tuple:
    """S for one Table 3 strategy, from the curves of one prompt (hybrid HQS on the SDS form, paper entropy)."""
    c = curves["sds"]
    if strategy == "random":
        return tuple(range(1, 1001))
    if strategy == "small xi":
        return sdd.select(c, cfg.small_xi)
    if strategy == "large xi":
        return sdd.select(c, cfg.large_xi_share * float(c.hqs().max()))
    if strategy == "largest HQS":
        return sdd.largest(c)
    if strategy == "official":
        return sdd.official_selection(c)
    raise ValueError(f"unknown strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")


def curves_json(curves: dict) -> dict:
    c = curves["sds"]
    return {"t": list(c.t), "n_images": c.n_images, "guidance_scale": c.guidance_scale, "form": c.form,
            "hqs": c.hqs("paper").tolist(), "hqs_official_entropy": c.hqs("official").tolist(),
            "H_bar": c.H_bar("paper").mean(0).tolist(), "H_bar_official": c.H_bar("official").mean(0).tolist(),
            "N_bar": c.N_bar.mean(0).tolist(), "official_H_mean": c.H["official"].mean(0).tolist()}


def full_run(out_dir, cfg: FullRunConfig = None, progress: bool = True, edits=None, device: str = "cpu") -> dict:
    """HQS curves and the Table 3 manipulators for `edits` (default: all of sdd_eval.EDITS), one
    summary_<edit>.json per edit in out_dir (`merge_summaries` joins them; several processes may share out_dir).
    device: where toy-t2i, toy-ae and the identity term run ("cpu", or "cuda" where a GPU is lent); the noise
    comes from CPU generators on either."""
    from .. import metrics, zoo
    cfg = cfg or FullRunConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle, ae = zoo.load("toy-t2i"), zoo.load("toy-ae")
    identity = metrics.toy_lpips(zoo.load("toy-attr").model).module
    bundle.to(device)
    ae.vae.to(device)
    identity.to(device)
    images = world.sample(cfg.n_images, seed=cfg.image_seed, subject="person").images.to(device)
    where = device_name(device)
    t0 = time.time()
    summary = {"config": asdict(cfg), "edits": {}, "device": where}
    for edit in edits or list(sdd_eval.EDITS):
        target = sdd_eval.check_edit(edit)[1]
        t_edit = time.time()
        curves = sdd.hqs_curves(bundle, images, target, cfg.grid, cfg.distill.guidance_scale,
                                torch.Generator().manual_seed(cfg.image_seed), forms=("sds",))
        entry = {"prompt": target, "curves": curves_json(curves), "strategies": {}}
        for strategy in STRATEGIES:
            S = strategy_timesteps(curves, strategy, cfg)
            m = sdd.distill(ae, bundle, target, S, cfg.distill, identity=identity, strategy=strategy)
            sdd.save(m, out / file_name(edit, strategy))
            entry["strategies"][strategy] = {"S": list(S) if len(S) < 1000 else "all t in [1, 1000]",
                                             "seconds": m.seconds, "file": file_name(edit, strategy)}
            if progress:
                print(f"{edit} / {strategy}: |S| = {len(S)}, {m.seconds:.0f} s ({(time.time() - t0) / 60:.1f} min)",
                      flush=True)
        summary["edits"][edit] = entry
        entry["minutes"] = (time.time() - t_edit) / 60
        (out / f"summary_{edit.replace(' ', '-')}.json").write_text(json.dumps(
            {"config": asdict(cfg), "edits": {edit: entry}, "minutes": entry["minutes"],
             "fingerprints": m.fingerprints, "device": where}, indent=1))
    summary["minutes"] = (time.time() - t0) / 60
    summary["fingerprints"] = m.fingerprints
    return summary


def device_name(device) -> str:
    """What a run's card says it ran on: the GPU's name, or "CPU, n torch threads"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} torch thread{'s' * (torch.get_num_threads() > 1)}"


def merge_summaries(run_dir) -> dict:
    """One summary of a run folder's summary_<edit>.json files (the edits in sdd_eval.EDITS order); the minutes are
    the sum over edits (the CPU-bound wall time of one sequential run)."""
    parts = {}
    for f in Path(run_dir).glob("summary_*.json"):
        s = json.loads(f.read_text())
        parts.update({e: (s, v) for e, v in s["edits"].items()})
    missing = [e for e in sdd_eval.EDITS if e not in parts]
    if missing:
        raise FileNotFoundError(f"{run_dir} has no summary for {missing}; "
                                f"run `python -m diffnb.sdd full-run {run_dir}`")
    fps = {json.dumps(s["fingerprints"], sort_keys=True) for s, _ in parts.values()}
    if len(fps) > 1:
        raise ValueError(f"the edits in {run_dir} were trained against different models: {fps}")
    first = parts[next(iter(sdd_eval.EDITS))][0]
    return {"config": first["config"], "edits": {e: parts[e][1] for e in sdd_eval.EDITS},
            "minutes": sum(parts[e][1]["minutes"] for e in sdd_eval.EDITS), "fingerprints": first["fingerprints"],
            "device": first.get("device", "CPU")}


def card(run_dir: Path) -> str:
    s = merge_summaries(run_dir)
    d = s["config"]["distill"]
    lines = [f"# {NAME}", "", "SDD manipulators (notebook 07): one latent mapper M_phi over toy-ae per edit and "
             "Table 3 strategy, distilled from toy-t2i (Alg. 1).", "",
             "Recompute: `python -m diffnb.sdd full-run runs/sdd` then `python -m diffnb.sdd install runs/sdd`.", "",
             f"- wall time: {s['minutes']:.1f} minutes summed over the edits, on {s['device']}",
             f"- fingerprints {s['fingerprints']} (`sdd.load` refuses any other toy-ae or toy-t2i)",
             f"- HQS: SDS form of d_t, guidance {d['guidance_scale']}, {s['config']['n_images']} person images, "
             f"t = {s['config']['grid'][0]}, {s['config']['grid'][1]}, ..., {s['config']['grid'][-1]}",
             f"- distillation: {d['iterations']} iterations of batch {d['batch_size']}, AdamW lr {d['lr']}, "
             f"L2 weight {d['l2_weight']}, identity (toy-LPIPS, edited vs original) weight {d['id_weight']}, "
             f"gradient clipping {d['clip_grad']}, mapper width {d['hidden']}",
             *sweep_lines(Path(run_dir) / "sweep.json"), "",
             "| edit | prompt | largest HQS at t | official (entropy only) t | S (small xi) | S (large xi) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for edit, e in s["edits"].items():
        st = e["strategies"]
        lines.append(f"| {edit} | {e['prompt']} | {st['largest HQS']['S']} | {st['official']['S']} | "
                     f"{len(st['small xi']['S'])} t | {len(st['large xi']['S'])} t |")
    lines += ["", "Measured quality (edit success, kept attributes, toy-FID, directional toy-CLIP) is in notebook 07 "
              "and tests/test_sdd.py, computed from these files."]
    return "\n".join(lines) + "\n"


def sweep_lines(path: Path) -> list:
    """The card's account of the settings sweep (diffnb.maint.sdd_sweep) that chose the distillation recipe."""
    if not path.exists():
        return []
    w = json.loads(path.read_text())
    c, table, rows = w["chosen"], w["table"], w["rows"]
    settings = {(t["lr"], t["id_weight"], t["batch_size"], t["guidance_scale"]) for t in table}
    loudest = max(table, key=lambda t: t["mean_success"])
    smile = max(r["success"] for r in rows if r["edit"] == "smiling")
    lengths, device = len({t["iterations"] for t in table}), w["runs"][0]["device"].split(" (")[0]
    return [f"- the recipe (identity weight, batch, guidance, iterations) was chosen by "
            f"`python -m diffnb.maint.sdd_sweep` (sweep.json: {len(settings)} settings x {lengths} run lengths, "
            f"on {device}, {w['n_val']} validation images per edit "
            f"from seed {w['val_seed']}): {w['rule']}. Chosen: identity weight {c['id_weight']}, batch "
            f"{c['batch_size']}, guidance {c['guidance_scale']:g}, {c['iterations']} iterations (validation mean "
            f"success {c['mean_success']:.2f}, min kept {c['min_kept']:.2f}). The most editing setting (guidance "
            f"{loudest['guidance_scale']:g}, identity weight {loudest['id_weight']}) reached mean success "
            f"{loudest['mean_success']:.2f} but kept the other attributes in only {loudest['min_kept']:.2f} of images "
            f"for one edit; no setting taught smiling to more than {smile:.0%} of validation images. The shipped "
            "manipulators were then trained on the CPU with that recipe (GPU kernels are not bit-reproducible)"]


def install(run_dir, root=None) -> Path:
    from .. import zoo
    from .install import update_manifest
    root = Path(root or zoo.default_root())
    dest = root / NAME
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in [*Path(run_dir).glob("*.safetensors"), *Path(run_dir).glob("sweep.json")]:
        shutil.copy2(f, dest / f.name)
    (dest / "summary.json").write_text(json.dumps(merge_summaries(run_dir), indent=1))
    (dest / "card.md").write_text(card(Path(run_dir)))
    update_manifest(NAME, root)
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffnb.sdd", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("full-run")
    f.add_argument("out_dir")
    f.add_argument("--iterations", type=int, help="distillation iterations per manipulator")
    f.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    f.add_argument("--device", default="cpu", help="where the models run: cpu (default) or cuda")
    f.add_argument("--edit", action="append", choices=list(sdd_eval.EDITS),
                   help="only this edit (repeatable; default: all); processes may share OUT_DIR")
    i = sub.add_parser("install")
    i.add_argument("run_dir")
    a = p.parse_args(argv)
    if a.cmd == "full-run":
        if a.threads:
            torch.set_num_threads(a.threads)
        cfg = FullRunConfig()
        if a.iterations:
            cfg.distill = replace(cfg.distill, iterations=a.iterations)
        s = full_run(a.out_dir, cfg, edits=a.edit, device=a.device)
        print(f"done in {s['minutes']:.1f} min; install with `python -m diffnb.sdd install {a.out_dir}`")
    else:
        print("installed", install(a.run_dir))
    return 0


# ------------------------------------------------------------------------------------------------
# The benchmark's SDD entries (python -m diffnb.bench): the times of §5.3 and Eqs. 13-15
# ------------------------------------------------------------------------------------------------
_BENCH: dict = {}


def bench_times(n: int = 16, num_inference_steps: int = 50, repeats: int = 3, iterations: int = 0) -> dict:
    """tau_SDD,train (one manipulator, the full run's DistillConfig), tau_SDD,infer (one forward pass per image,
    best of `repeats` over n images), tau_Diff,infer for SDEdit (strength 0.5) and DDIB at `num_inference_steps`
    DDIM steps (the paper: 50), and what Eqs. 13-15 make of them at m = 100, n = 10. Cached per process.
    iterations > 0 overrides the distillation's (a quick check of this code, not a benchmark)."""
    key = (n, num_inference_steps, repeats, iterations)
    if key not in _BENCH:
        from .. import metrics, zoo
        bundle, ae = zoo.load("toy-t2i"), zoo.load("toy-ae")
        identity = metrics.toy_lpips(zoo.load("toy-attr").model).module
        y = sdd_eval.held_out("glasses", n)
        target = sdd_eval.EDITS["glasses"][1]
        cfg = replace(sdd.DistillConfig(), iterations=iterations) if iterations else sdd.DistillConfig()
        m = sdd.distill(ae, bundle, target, (400,), cfg, identity=identity)
        best = lambda fn: min(_timed(fn) for _ in range(repeats))
        with torch.no_grad():
            infer = best(lambda: sdd.manipulate(ae, m.mapper, y)) / n
        sdedit = best(lambda: sdd_eval.sdedit(bundle, y, "glasses", 0.5, num_inference_steps)) / n
        ddib = _timed(lambda: sdd_eval.ddib(bundle, y, "glasses", num_inference_steps)) / n
        sdd_total = sdd_eval.total_time_sdd(m.seconds, infer, 100, 10)
        total = lambda tau: sdd_eval.total_time_diffusion(tau, 100, 10) / sdd_total
        _BENCH[key] = {"tau_sdd_train_s": m.seconds, "tau_sdd_infer_s_per_image": infer,
                       "tau_sdedit_s_per_image": sdedit, "tau_ddib_s_per_image": ddib,
                       "sdd_infer_speedup_over_sdedit": sdedit / infer,
                       "sdd_break_even_m_vs_sdedit": sdd_eval.break_even_m(m.seconds, sdedit, infer),
                       "sdd_break_even_m_vs_ddib": sdd_eval.break_even_m(m.seconds, ddib, infer),
                       "sdedit_over_sdd_total_time_m100_n10": total(sdedit),
                       "ddib_over_sdd_total_time_m100_n10": total(ddib)}
    return _BENCH[key]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
