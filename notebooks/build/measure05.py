"""Notebook 05's rates: every reconstruction and edit behind §§4, 5 and 7-9, measured on all of its images and pairs.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python notebooks/build/measure05.py   # 2-3 min, busy 2 cores

The notebook loads the shipped StyleDiffusion and null-text inversions (data/models/stylediffusion-photo/), but even
sampling from them is too slow for its two minutes on every image: Table 3 reconstructs 16 images three ways, and
§§5, 7-9 edit 12 partial-caption and 9 full-caption pairs with null-text + P2P, StyleDiffusion + P2Plus (at
tau_v = 0.6 and, for the colour swaps, 0), SDEdit and StyleDiffusion + SDEdit. This script runs the same calls, with
the same settings, on all of them, and stores every image's and pair's numbers. It runs them in the notebook's
batches: the first batch of each group is what the notebook runs live (`LIVE_*` below), and the notebook checks that
its numbers equal the stored ones. SDEdit draws its noise for the whole batch from one generator, so it runs on all
21 pairs at once (the notebook runs the first 9, whose noise is the same: a generator's draws do not depend on how
many follow).

Writes data/measured/05_stylediffusion.json: the settings, the shipped models it was measured on ("measured_on":
the zoo's digest of each one's manifest entry, which `zoo.load_measured` checks when the notebook loads the file),
every pair's captions and

    table3    per image (16): PSNR and SSIM of the null-text (lr 1e-2), StyleDiffusion and null-text (lr 5e-2)
              reconstructions
    partial   per pair (12, §5): for the unedited source, null-text + P2P and StyleDiffusion + P2Plus: edit
              success, structure distance, NS-LPIPS, toy-clip cosine; both reconstructions' PSNR; the attention
              region's coverage of toy-seg's region and its area; StyleDiffusion + P2Plus success at tau_v = 0
              (colour swaps)
    table2    per pair (9, §§5, 7, 9): the same for the unedited source and StyleDiffusion + P2Plus
    sdedit    per pair (21, §8): SDEdit and StyleDiffusion + SDEdit, the four measures
"""
import dataclasses
import json
import time
from pathlib import Path

import torch

from diffnb import attention, editbench, inversion, metrics, toyclip, zoo
from diffnb import stylediffusion as S

SEED, STEPS, GUIDANCE = 0, 20, 5.0
TAU_V, TAU_C, TAU_S, TAU_U = 0.6, 0.6, 0.8, 0.5
STRENGTH = 0.6                                       # §8's SDEdit strength
LIVE_T3 = 8                                          # Table 3: the first 8 images (the figure's)
LIVE_PARTIAL = [0, 4, 8]                             # §5: the first colour, attribute and subject swap (§7's pick)
LIVE_T2 = [0]                                        # §9's pairs: the first (a colour swap)
OUT = Path(zoo.__file__).resolve().parents[1] / "data" / "measured" / "05_stylediffusion.json"


def chunks(n, live):
    live = list(live)
    return [live, [i for i in range(n) if i not in live]]


def subset_null(inv, idx):
    idx = list(idx)
    return dataclasses.replace(inv, x_T=inv.x_T[idx], cond=inv.cond[idx],
                               null_embeddings=[n[idx] for n in inv.null_embeddings])


class Measures:
    """The notebook's success / measure / coverage (§5), with its models: edit success is `editbench.reads` (the
    target caption's value of every swapped attribute read in the image), coverage `editbench.region_overlap`'s
    against `editbench.attribute_regions`."""

    def __init__(self, attr, seg, clip, perceptual):
        self.attr, self.seg, self.clip, self.perceptual = attr, seg, clip, perceptual

    def success(self, pairs, images):
        return editbench.reads(self.attr, images.clamp(-1, 1), [p.target for p in pairs],
                               [p.source for p in pairs]).float()

    def measure(self, pairs, images, regions, edited):
        e = edited.clamp(-1, 1)
        return {"success": self.success(pairs, e), "structure": editbench.structure_distance(self.attr, images, e),
                "ns_lpips": editbench.ns_lpips(self.perceptual, images, e, regions),
                "clip": toyclip.clip_score(self.clip.model, self.clip.tokenizer, e, [p.target for p in pairs]).detach()}

    def coverage(self, pairs, regions):
        return editbench.region_overlap(regions, editbench.attribute_regions(self.seg, pairs))["coverage"]


def rows_of(n, parts):
    """{key: [value per index]} from [(indices, {key: per-chunk list or {sub: list}})]."""
    out = {}
    for idx, cols in parts:
        for k, v in cols.items():
            if isinstance(v, dict):
                slot = out.setdefault(k, {})
                for s_, vv in v.items():
                    arr = slot.setdefault(s_, [None] * n)
                    for i, x in zip(idx, vv):
                        arr[i] = x
            else:
                arr = out.setdefault(k, [None] * n)
                for i, x in zip(idx, v):
                    arr[i] = x
    return out


def tolists(m):
    return {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in m.items()}


def measure_table3(bundle):
    held = S.table3_images()
    x0 = held.images
    full, null, null_fast = S.load_shipped("film"), S.load_shipped_null_text("null-text"), \
        S.load_shipped_null_text("null-text-lr5e-2")
    parts = []
    for idx in chunks(len(x0), range(LIVE_T3)):
        recs = {"null": inversion.text_reconstruct(bundle, subset_null(null, idx)),
                "sd": S.reconstruct(bundle, S.subset(full, idx)),
                "fast": inversion.text_reconstruct(bundle, subset_null(null_fast, idx))}
        parts.append((idx, {"psnr": {k: metrics.psnr(x0[idx], r).tolist() for k, r in recs.items()},
                            "ssim": {k: metrics.ssim(x0[idx], r).tolist() for k, r in recs.items()}}))
    return {"n": len(x0), "live": LIVE_T3, **rows_of(len(x0), parts)}


def measure_pairs(bundle, M, pairs, sd, null_p, live):
    """§5 (null_p given) or §9's pairs: per-chunk edits and measures."""
    tok = bundle.tokenizer
    parts = []
    for idx in chunks(len(pairs), live):
        ps = [pairs[i] for i in idx]
        imgs = torch.stack([p.image for p in ps])
        _, regions = editbench.word_regions(bundle, ps, STEPS)
        sd_edit = S.p2plus_edit(bundle, S.subset(sd, idx), ps, tau_v=TAU_V, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U)
        cols = {"source": tolists(M.measure(ps, imgs, regions, imgs)),
                "sd": tolists(M.measure(ps, imgs, regions, sd_edit.target)),
                "psnr_sd": metrics.psnr(imgs, sd_edit.source).tolist(),
                "coverage": M.coverage(ps, regions).tolist(),
                "area": regions.flatten(1).mean(1).tolist()}
        if null_p is not None:
            sources, targets = [p.source for p in ps], [p.target for p in ps]
            blend = attention.LocalBlend(tok, sources, targets, [[p.word, p.target_word] for p in ps])
            nl = subset_null(null_p, idx)
            p2p = attention.edit(bundle, attention.Replace(tok, sources, targets, tau_c=TAU_C, tau_s=TAU_S,
                                                           tau_u=0.0, local_blend=blend),
                                 x_T=nl.x_T, guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                                 null_embeddings=nl.null_embeddings)
            cols["nt"] = tolists(M.measure(ps, imgs, regions, p2p.target))
            cols["psnr_nt"] = metrics.psnr(imgs, p2p.source).tolist()
        # §7: the colour swaps at tau_v = 0 (None for the other pairs)
        col = [j for j, p in enumerate(ps) if p.kind == "colour"]
        tv0 = [None] * len(ps)
        if col:
            e = S.p2plus_edit(bundle, S.subset(sd, [idx[j] for j in col]), [ps[j] for j in col], tau_v=0.0,
                              tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U).target
            for j, v in zip(col, M.success([ps[j] for j in col], e).tolist()):
                tv0[j] = v
        cols["tv0"] = tv0
        # §8: StyleDiffusion + SDEdit from the learned trajectory (deterministic, per pair)
        after = S.sdedit(bundle, S.subset(sd, idx), [p.target for p in ps], STRENGTH)
        cols["sd_sdedit"] = tolists(M.measure(ps, imgs, regions, after))
        cols["regions"] = regions                                  # kept for the SDEdit measures below
        parts.append((idx, cols))
    regions = torch.empty(len(pairs), *parts[0][1]["regions"].shape[1:])
    for idx, cols in parts:
        regions[idx] = cols.pop("regions")
    return rows_of(len(pairs), parts), regions


def main():
    bundle, clip = zoo.load("toy-t2i"), zoo.load("toy-clip")
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    M = Measures(attr, seg, clip, metrics.toy_lpips(attr))
    out = {"measured_on": zoo.measured_on("05_stylediffusion"),   # what zoo.load_measured checks
           "seed": SEED, "steps": STEPS, "guidance": GUIDANCE, "tau": [TAU_V, TAU_C, TAU_S, TAU_U],
           "strength": STRENGTH, "perceptual": M.perceptual.name}
    t0 = time.time()
    out["table3"] = measure_table3(bundle)
    print(f"table3 done, {time.time() - t0:.0f} s", flush=True)
    partial = editbench.edit_pairs(S.FULL_RUN["partial_per_kind"], seed=S.FULL_RUN["partial_seed"], partial=True)
    pairs2 = editbench.edit_pairs(S.FULL_RUN["table2_per_kind"], seed=S.FULL_RUN["table2_seed"])
    rows_p, regions_p = measure_pairs(bundle, M, partial, S.load_shipped("partial-film"),
                                      S.load_shipped_null_text("partial-null-text"), LIVE_PARTIAL)
    out["partial"] = {"pairs": [[p.kind, p.source, p.target] for p in partial], "live": LIVE_PARTIAL,
                      "per_pair": rows_p}
    print(f"partial done, {time.time() - t0:.0f} s", flush=True)
    rows_2, regions_2 = measure_pairs(bundle, M, pairs2, S.load_shipped("table2-film"), None, LIVE_T2)
    out["table2"] = {"pairs": [[p.kind, p.source, p.target] for p in pairs2], "live": LIVE_T2, "per_pair": rows_2}
    print(f"table2 done, {time.time() - t0:.0f} s", flush=True)
    # §8: SDEdit on all 21 pairs in one batch (one noise draw), as the notebook ran it
    all_pairs = partial + pairs2
    all_imgs = torch.stack([p.image for p in all_pairs])
    plain = editbench.sdedit(bundle, all_imgs, [p.target for p in all_pairs], STRENGTH, GUIDANCE, STEPS,
                             torch.Generator().manual_seed(SEED))
    out["sdedit"] = {"per_pair": tolists(M.measure(all_pairs, all_imgs, torch.cat([regions_p, regions_2]), plain))}
    print(f"sdedit done, {time.time() - t0:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
