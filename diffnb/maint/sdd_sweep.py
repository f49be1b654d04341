"""Maintainers: the settings sweep that chose SDD's distillation recipe (sdd.DistillConfig's iterations and id_weight).

    python -m diffnb.maint.sdd_sweep runs/sdd-sweep --device cuda      # where a GPU is lent; hours on a CPU

For every setting of the grid (identity weight x batch size x learning rate x guidance scale) and every edit of
`sdd_eval.EDITS`, it distils the largest-HQS and the random-t manipulators once for the largest iteration count
and scores snapshots after `--snapshots` iterations (the first k steps of a run are a k-step run: the learning rate
is constant) on `--n-val` validation images per edit: person images that lack the target, drawn from seed 80,000
on (never the 128 test images from seed 90,000 that notebook 07 and tests/test_sdd.py score, nor the training
stream from 500,000). S comes from the shipped HQS curves (data/models/sdd-manipulators/summary.json).

The rule (`choose`): among the settings whose manipulators keep the other binary attributes in at least
`--kept-min` of the validation images for every edit and both strategies, the largest mean edit success over the
edits and both strategies. It writes sweep.json (every snapshot's scores, the table per setting and the choice).
The chosen setting becomes sdd.DistillConfig's defaults, and `python -m diffnb.sdd full-run` trains the shipped
manipulators with them on the CPU (bit-reproducible there; GPU kernels are not).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

STRATEGIES = ("largest HQS", "random")
VAL_SEED = 80_000


def _job(args) -> list:
    edit, strategy, id_weight, batch_size, snapshots, n_val, device, lr, guidance = args
    import torch
    torch.set_num_threads(1)
    from .. import metrics, sdd, sdd_eval, zoo
    bundle, ae = zoo.load("toy-t2i"), zoo.load("toy-ae")
    attr = zoo.load("toy-attr").model      # the judge, on the CPU; the identity term's copy moves to the device
    identity = metrics.toy_lpips(zoo.load("toy-attr").model).module
    bundle.to(device)
    ae.vae.to(device)
    identity.to(device)
    shipped = json.loads((zoo.default_root() / sdd_eval.NAME / "summary.json").read_text())
    S = shipped["edits"][edit]["strategies"][strategy]["S"]
    S = tuple(range(1, 1001)) if isinstance(S, str) else tuple(S)
    target = sdd_eval.EDITS[edit][1]
    y = sdd_eval.held_out(edit, n_val, seed=VAL_SEED)
    with torch.no_grad():
        before = attr.predict(y).attributes()
    rows, start = [], time.time()

    def snapshot(iteration, mapper):
        if iteration not in snapshots:
            return
        mapper.eval()
        with torch.no_grad():
            after = attr.predict(sdd.manipulate(ae, mapper, y.to(device)).cpu()).attributes()
        mapper.train()
        success, kept = sdd_eval.success_and_kept(edit, before, after)
        rows.append({"edit": edit, "strategy": strategy, "lr": lr, "id_weight": id_weight, "batch_size": batch_size,
                     "guidance_scale": guidance, "iterations": iteration, "success": success, "kept": kept,
                     "seconds": time.time() - start})

    cfg = replace(sdd.DistillConfig(), lr=lr, id_weight=id_weight, batch_size=batch_size, guidance_scale=guidance,
                  iterations=max(snapshots))
    sdd.distill(ae, bundle, target, S, cfg, identity=identity, strategy=strategy, callback=snapshot)
    return rows


def choose(rows: list, kept_min: float) -> tuple:
    """(chosen setting, rule in words, table per setting): see the module's docstring."""
    groups = defaultdict(list)
    for r in rows:
        groups[r["lr"], r["id_weight"], r["batch_size"], r.get("guidance_scale", 30.0), r["iterations"]].append(r)
    table = [{"lr": k[0], "id_weight": k[1], "batch_size": k[2], "guidance_scale": k[3], "iterations": k[4],
              "mean_success": sum(r["success"] for r in v) / len(v), "min_kept": min(r["kept"] for r in v),
              "n_runs": len(v)} for k, v in groups.items()]
    ok = [t for t in table if t["min_kept"] >= kept_min]
    rule = (f"the largest mean validation success (edits x {', '.join(STRATEGIES)}) among the settings that keep the "
            f"other binary attributes in >= {kept_min:.2f} of validation images for every edit and strategy")
    if not ok:
        best = max(table, key=lambda t: (t["min_kept"], t["mean_success"]))
        return best, "no setting keeps enough: the largest min kept", table
    return max(ok, key=lambda t: (t["mean_success"], -t["iterations"])), rule, table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffnb.maint.sdd_sweep", description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--device", default="cpu")
    p.add_argument("--id-weights", default="0.05,0.1,0.2,0.5")
    p.add_argument("--batch-sizes", default="8,32")
    p.add_argument("--snapshots", default="40,100,250,500,1000")
    p.add_argument("--lrs", default="0.005")
    p.add_argument("--guidance-scales", default="30")
    p.add_argument("--n-val", type=int, default=128)
    p.add_argument("--kept-min", type=float, default=0.87)
    p.add_argument("--procs", type=int, default=max(1, mp.cpu_count()))
    a = p.parse_args(argv)
    from .. import sdd_eval
    floats = lambda s: tuple(float(x) for x in s.split(","))
    ints = lambda s: tuple(int(x) for x in s.split(","))
    snaps = ints(a.snapshots)
    jobs = [(e, s, w, b, snaps, a.n_val, a.device, lr, g) for g in floats(a.guidance_scales) for lr in floats(a.lrs)
            for b in ints(a.batch_sizes) for w in floats(a.id_weights) for e in sdd_eval.EDITS for s in STRATEGIES]
    start = time.time()
    with mp.get_context("spawn").Pool(min(a.procs, len(jobs))) as pool:
        rows = [r for rs in pool.map(_job, jobs, chunksize=1) for r in rs]
    best, rule, table = choose(rows, a.kept_min)
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"chosen": best, "rule": rule, "kept_min": a.kept_min,
                                                "n_val": a.n_val, "val_seed": VAL_SEED, "device": a.device,
                                                "seconds": time.time() - start, "table": table, "rows": rows},
                                               indent=1))
    print(f"chosen {best} ({rule}); {out / 'sweep.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
