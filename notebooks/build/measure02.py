"""Notebook 02's rates: every reconstruction of §§2-4 and §6 measured on N = 21 held-out images per domain.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python notebooks/build/measure02.py    # 45 min on a busy 2-core machine (2026-11-29)

The notebook itself can afford toy-t2i runs on 3 + 3 images only (null-text inversion costs about 4 s per image at
25 steps on a CPU), so this script runs the same calls, with the same settings, on all 21 `toy` and 21 `photo`
images drawn by `world.sample(21, seed=90_000, domain=d)`, in the notebook's batches: chunk k inverts images
3k..3k+2 of `toy` followed by the same of `photo` (null-text inversion's early stop reads the batch's mean loss, so
the batch matters). Chunk 0 is what the notebook runs live; it checks that its numbers equal the stored ones.

Writes data/measured/02_inversion.json: the settings, the shipped models it was measured on ("measured_on": the
zoo's digest of each one's manifest entry, which `zoo.load_measured` checks when the notebook loads the file) and,
per image (index 0..20 in each domain), PSNR / SSIM / toy-LPIPS of

    curve    toy-ddpm DDIM inversion + reconstruction at 5, 10, 20, 25, 50 steps (batches of 3, one domain)
    table    toy-t2i at 10 and 25 steps: DDIM (text, w = 5), negative-prompt, null-text (4 Adam steps, lr 0.05)
    sweep    toy-t2i DDIM inversion at 25 steps and w = 3, 7.5 (w = 5 is the table's DDIM row; w = 1 equals the
             negative-prompt row exactly: with the null embedding set to the caption's, guidance cancels)
"""
import json
import time
from pathlib import Path

import torch

from diffnb import inversion, metrics, world, zoo

SEED, N, CHUNK, GUIDANCE = 0, 21, 3, 5.0
NULL_TEXT = dict(inner_steps=4, lr=5e-2)
CURVE_STEPS, TABLE_STEPS, SWEEP = (5, 10, 20, 25, 50), (10, 25), (3.0, 7.5)
OUT = Path(zoo.__file__).resolve().parents[1] / "data" / "measured" / "02_inversion.json"   # ships with the repository


def scores(rec, x, perceptual):
    rec = rec.clamp(-1, 1).cpu()
    return {"psnr": metrics.psnr(rec, x).clamp(max=99).tolist(), "ssim": metrics.ssim(rec, x).tolist(),
            "lpips": perceptual(rec, x).tolist()}


def text_run(tti, method, images, prompts, n, w=GUIDANCE):
    if method == "DDIM (text)":
        return inversion.text_ddim_invert(tti, images, prompts, n, w)
    if method == "negative-prompt":
        return inversion.negative_prompt_invert(tti, images, prompts, n, w)
    return inversion.null_text_invert(tti, images, prompts, n, w, **NULL_TEXT)


def main():
    ddpm, tti = zoo.load("toy-ddpm"), zoo.load("toy-t2i")
    perceptual = metrics.toy_lpips(zoo.load("toy-attr").model)
    held = {d: world.sample(N, seed=90_000 + SEED, domain=d) for d in ("toy", "photo")}
    out = {"measured_on": zoo.measured_on("02_inversion"),   # what zoo.load_measured checks
           "n": N, "chunk": CHUNK, "guidance": GUIDANCE, "null_text": NULL_TEXT, "seed": SEED,
           "perceptual": perceptual.name, "curve": {}, "table": {}, "sweep": {}}

    def put(group, key, d, s):
        slot = out[group].setdefault(key, {}).setdefault(d, {"psnr": [], "ssim": [], "lpips": []})
        for m in slot:
            slot[m] += s[m]
    t0 = time.time()
    for k in range(0, N, CHUNK):
        sl = slice(k, k + CHUNK)
        for d in ("toy", "photo"):
            x = held[d].images[sl]
            for n in CURVE_STEPS:
                rec = inversion.ddim_reconstruct(ddpm.unet, ddpm.scheduler,
                                                 inversion.ddim_invert(ddpm.unet, ddpm.scheduler, x, n).x_T, n)
                put("curve", str(n), d, scores(rec, x, perceptual))
        images = torch.cat([held["toy"].images[sl], held["photo"].images[sl]])
        prompts = held["toy"].captions[sl] + held["photo"].captions[sl]
        half = images.shape[0] // 2
        runs = [("table", f"{m}|{n}", m, n, GUIDANCE) for n in TABLE_STEPS
                for m in ("DDIM (text)", "negative-prompt", "null-text")]
        runs += [("sweep", f"{w:g}", "DDIM (text)", 25, w) for w in SWEEP]
        for group, key, m, n, w in runs:
            rec = inversion.text_reconstruct(tti, text_run(tti, m, images, prompts, n, w))
            put(group, key, "toy", scores(rec[:half], images[:half], perceptual))
            put(group, key, "photo", scores(rec[half:], images[half:], perceptual))
        print(f"chunk {k // CHUNK + 1}/{-(-N // CHUNK)} done, {time.time() - t0:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
