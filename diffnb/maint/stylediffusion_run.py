"""The shipped full run of notebook 05 (data/models/stylediffusion-photo): StyleDiffusion and null-text inversions
of held-out photo images, their recipe and their card.

    python -m diffnb.stylediffusion runs/stylediffusion-photo        # recompute (about 40 minutes, 2 CPU cores)
    python -m diffnb.stylediffusion --card data/models/stylediffusion-photo
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from .. import editbench, inversion, metrics, zoo
from .. import stylediffusion as S

FULL_RUN, ABLATIONS, table3_images = S.FULL_RUN, S.ABLATIONS, S.table3_images   # the recipe's settings


def full_run(out_dir, variants=None) -> None:
    """Recompute the shipped inversions into out_dir: about 40 minutes on a 2-core CPU. To ship them, copy the
    .safetensors files into data/models/stylediffusion-photo, write its card (`--card`) and update the manifest
    (`diffnb.maint.install.update_manifest("stylediffusion-photo")`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tti, clip = zoo.load("toy-t2i"), zoo.load("toy-clip")
    cfg = FULL_RUN
    common = dict(num_inference_steps=cfg["num_inference_steps"], guidance_scale=cfg["guidance_scale"])
    sd = dict(common, iterations=cfg["iterations"], lr=cfg["lr"])
    nt = dict(common, inner_steps=cfg["null_inner_steps"], lr=cfg["null_lr"])
    t3 = table3_images()
    a = cfg["ablation_n"]
    partial = editbench.edit_pairs(cfg["partial_per_kind"], seed=cfg["partial_seed"], partial=True)
    table2 = editbench.edit_pairs(cfg["table2_per_kind"], seed=cfg["table2_seed"])
    # â_t is kept for the ablation images only (the ablations share them; the edits never need them)
    jobs = {"film": lambda: S.save(S.invert(tti, clip, t3.images, t3.captions, **sd), out / "film.safetensors", maps=a),
            "null-text": lambda: inversion.save(inversion.null_text_invert(tti, t3.images, t3.captions, **nt),
                                                out / "null-text.safetensors"),
            "null-text-lr5e-2": lambda: inversion.save(inversion.null_text_invert(
                tti, t3.images, t3.captions, **{**nt, "lr": 5e-2}), out / "null-text-lr5e-2.safetensors")}
    for name, kw in ABLATIONS.items():
        jobs[name] = (lambda kw=kw, name=name: S.save(S.invert(tti, clip, t3.images[:a], t3.captions[:a],
                                                              **{**sd, **kw}),
                                                    out / f"{name}.safetensors", maps=0))
    jobs["partial-film"] = lambda: S.save(S.invert(tti, clip, torch.stack([p.image for p in partial]),
                                                   [p.source for p in partial], **sd),
                                          out / "partial-film.safetensors", maps=0)
    jobs["partial-null-text"] = lambda: inversion.save(inversion.null_text_invert(
        tti, torch.stack([p.image for p in partial]), [p.source for p in partial], **nt),
        out / "partial-null-text.safetensors")
    jobs["table2-film"] = lambda: S.save(S.invert(tti, clip, torch.stack([p.image for p in table2]),
                                                  [p.source for p in table2], **sd),
                                         out / "table2-film.safetensors", maps=0)
    for name in variants or jobs:
        t0 = time.perf_counter()
        jobs[name]()
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)


def card(folder) -> str:
    """The model card of a full run in `folder`: the recipe, each file's compute time, and Table 3 measured."""
    folder = Path(folder)
    tti = zoo.load("toy-t2i")
    x0 = table3_images().images
    lines = ["# stylediffusion-photo", "",
             "Notebook 05's full run: StyleDiffusion inversions (Alg. 1, mapping networks per image and step) and "
             "null-text inversions of held-out `photo` images, on toy-t2i and toy-clip.", "",
             "Recompute: `python -m diffnb.stylediffusion runs/stylediffusion-photo`, copy the .safetensors files "
             "here, "
             "then `python -m diffnb.stylediffusion --card data/models/stylediffusion-photo` and "
             "`python -c \"from diffnb.maint import install; install.update_manifest('stylediffusion-photo')\"`.", "",
             f"- settings: `{FULL_RUN}`",
             f"- ablations (on the first {FULL_RUN['ablation_n']} Table 3 images): `{ABLATIONS}`",
             "", "| file | images | wall seconds (CPU; the 2026-11-29 run: three processes of 1 thread on 2 cores) | "
             "reconstruction PSNR / SSIM |", "| --- | --- | --- | --- |"]
    for path in sorted(folder.glob("*.safetensors")):
        if "null-text" in path.stem:
            inv = inversion.load(path)
            n = inv.x_T.shape[0]
            rec = inversion.text_reconstruct(tti, inv) if n == len(x0) else None
        else:
            inv = S.load(path)
            n = inv.x_T.shape[0]
            rec = S.reconstruct(tti, inv) if path.stem in ("film", *ABLATIONS) else None
        q = "–"
        if rec is not None:
            ref = x0[:n]
            q = f"{metrics.psnr(ref, rec).mean():.2f} dB / {metrics.ssim(ref, rec).mean():.3f}"
        lines.append(f"| {path.name} | {n} | {inv.seconds:.0f} | {q} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="Recompute notebook 05's shipped StyleDiffusion inversions")
    ap.add_argument("out_dir")
    ap.add_argument("--variants", nargs="*", default=None)
    ap.add_argument("--card", action="store_true", help="only write out_dir/card.md from the files there")
    args = ap.parse_args(argv)
    if args.card:
        (Path(args.out_dir) / "card.md").write_text(card(args.out_dir))
    else:
        full_run(args.out_dir, args.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
