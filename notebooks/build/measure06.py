"""Notebook 06's rates: every edit behind a success rate of §§2-4, measured on all of its pairs.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python notebooks/build/measure06.py   # 5 min, busy 2 cores
    .venv/bin/python notebooks/build/measure06.py table2     # one group only; the others are kept

The notebook can afford its edits on a few pairs only (P2P on 21 generated pairs, refinement and re-weighting on 20
each, and Table 2's 9 photo pairs through five methods and two inversions cost minutes on a CPU), so this script runs
the same calls, with the same settings, on all of them, and stores every pair's numbers. It runs them in the
notebook's batches: the first batch of each group is what the notebook runs live (`LIVE_*` below), and it checks
that its numbers equal the stored ones. Table 2's pairs go in three batches of one pair per kind, because null-text
inversion's optimiser (the loss is the batch's mean, its early stop reads it) makes a pair's inversion depend on
its batch. SDEdit, which draws its noise for the whole batch from one generator, runs on all 9 pairs at once (as
it did when the notebook ran Table 2 in one batch; seconds).

Writes data/measured/06_p2plus.json: the settings, the shipped models it was measured on ("measured_on": the zoo's
digest of each one's manifest entry, which `zoo.load_measured` checks when the notebook loads the file), every
pair's captions and, per pair,

    replace     §2-§3, the 21 generated word swaps (editbench.edit_pairs(7, domain="toy")): toy-attr's reading of
                the unedited source, of P2P replace, of the target prompt alone and of P2Plus; the change outside
                the swapped attribute's part (P2P, prompt alone); P2Plus's mean pixel difference from P2P; the CLIP
                scores of P2P and P2Plus against the target caption
    refine      §2, the 20 refinement pairs: source read without the object, edit success, change outside the part
    reweight    §2, the 20 re-weighted captions at RW_SCALE: source smiles, the smile went
    table2      §4, the 9 photo pairs: per method (and the unedited source) success, structure distance, NS-LPIPS,
                CLIP score and NS-LPIPS with toy-seg's part; the region's coverage / precision / IoU of toy-seg's
                part; null-text reconstruction PSNR
    sweep       §4, the 3 photo subject swaps: success, CLIP score and structure distance per (tau_u, blending)
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffnb import attention, editbench, metrics, stylediffusion, t2i, toyclip, world, zoo

SEED, STEPS, GUIDANCE = 0, 20, 5.0
TAU_C, TAU_S, TAU_U = 0.6, 0.8, 0.5
N_GEN, N_EXTRA, RW_SCALE, N_PER_KIND = 7, 20, -2.0, 3
NULL_INNER, NULL_LR = 4, 5e-2
SDEDIT_STRENGTH = 0.6                                             # editbench.run_methods' default
TAU_US = (0.0, 0.25, 0.5, 0.75, 1.0)
LIVE_GEN = [0, 1, N_GEN, N_GEN + 1] + [2 * N_GEN + k for k in range(4)]   # 2 colour, 2 attribute, 4 subject
LIVE_REF, LIVE_RW = 6, 2                                          # the first 6 refinement pairs, 2 re-weighted
TABLE2_CHUNKS = [[k + N_PER_KIND * j for j in range(3)] for k in range(N_PER_KIND)]   # [0, 3, 6], [1, 4, 7], ...
OUT = Path(zoo.__file__).resolve().parents[1] / "data" / "measured" / "06_p2plus.json"   # ships with the repository


def chunks(n, live):
    """The live batch first, then the rest in order."""
    live = list(live)
    return [live, [i for i in range(n) if i not in live]]


def scatter(n, parts):
    """Lists per index from [(indices, values)]."""
    out = [None] * n
    for idx, vals in parts:
        for i, v in zip(idx, vals):
            out[i] = v
    assert None not in out
    return out


def tolist(t):
    return [bool(v) if isinstance(v, bool) else v for v in (t.tolist() if torch.is_tensor(t) else t)]


def measure_replace(bundle, attr, seg, clip):
    """§2-§3: P2P replace, the target prompt alone and P2Plus on the generated pairs (the notebook's code)."""
    gen_pairs = editbench.edit_pairs(N_GEN, seed=SEED, domain="toy")
    x_T_all = torch.randn(len(gen_pairs), *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 1))
    tok = bundle.tokenizer
    parts = []
    for idx in chunks(len(gen_pairs), LIVE_GEN):
        pairs = [gen_pairs[i] for i in idx]
        g_src, g_tgt, x_T = [p.source for p in pairs], [p.target for p in pairs], x_T_all[idx]
        rep = attention.edit(bundle, attention.Replace(tok, g_src, g_tgt, tau_c=TAU_C, tau_s=TAU_S), x_T=x_T,
                             guidance_scale=GUIDANCE, num_inference_steps=STEPS)
        with torch.no_grad():
            plain = t2i.decode(bundle, t2i.denoise(bundle, x_T, t2i.encode_prompt(bundle, g_tgt),
                                                   t2i.null_embedding(bundle, len(g_tgt)), GUIDANCE, STEPS)).cpu()
        p2plus = attention.edit(bundle, attention.Replace(tok, g_src, g_tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U),
                                x_T=x_T, guidance_scale=GUIDANCE, num_inference_steps=STEPS)
        src_ok = editbench.reads(attr, rep.source, g_src, g_tgt)
        view = [dataclasses.replace(p, image=img) for p, img in zip(pairs, rep.source)]
        part = F.max_pool2d(editbench.attribute_regions(seg, view), 3, stride=1, padding=1)

        def outside_change(edited):
            keep = 1 - part
            return ((edited - rep.source).abs().mean(1, keepdim=True) * keep).flatten(1).sum(1) / \
                keep.flatten(1).sum(1).clamp_min(1)
        clip_score = lambda im: toyclip.clip_score(clip.model, clip.tokenizer, im, g_tgt).detach()  # noqa: E731
        parts.append((idx, [dict(zip(
            ("src_ok", "p2p_ok", "plain_ok", "p2plus_ok", "out_p2p", "out_plain", "plus_diff", "clip_p2p",
             "clip_p2plus"), vals)) for vals in zip(
            tolist(src_ok), tolist(editbench.reads(attr, rep.target, g_tgt, g_src) & src_ok),
            tolist(editbench.reads(attr, plain, g_tgt, g_src) & src_ok),
            tolist(editbench.reads(attr, p2plus.target, g_tgt, g_src) & src_ok),
            tolist(outside_change(rep.target)), tolist(outside_change(plain)),
            tolist((p2plus.target - rep.target).abs().flatten(1).mean(1)),
            tolist(clip_score(rep.target)), tolist(clip_score(p2plus.target)))]))
    return {"pairs": [[p.kind, p.source, p.target] for p in gen_pairs], "live": LIVE_GEN,
            "per_pair": columns(scatter(len(gen_pairs), parts))}


def columns(rows):
    return {k: [r[k] for r in rows] for k in rows[0]}


def measure_refine(bundle, attr, seg):
    ref_attrs = world.sample_attributes(N_EXTRA, seed=SEED + 10, glasses=False, hat=False)
    ref_src_all = [world.caption(a) for a in ref_attrs]
    ref_tgt_all = [world.caption(world.Attributes(**{**a.as_dict(), ("glasses" if k % 2 == 0 else "hat"): True}))
                   for k, a in enumerate(ref_attrs)]
    x_T_all = torch.randn(N_EXTRA, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 4))
    parts = []
    for idx in chunks(N_EXTRA, range(LIVE_REF)):
        ref_src, ref_tgt = [ref_src_all[i] for i in idx], [ref_tgt_all[i] for i in idx]
        ref = attention.edit(bundle, attention.Refine(bundle.tokenizer, ref_src, ref_tgt, tau_c=TAU_C, tau_s=TAU_S),
                             x_T=x_T_all[idx], guidance_scale=GUIDANCE, num_inference_steps=STEPS)
        src_ok = editbench.reads(attr, ref.source, ref_src, ref_tgt)
        ok = editbench.reads(attr, ref.target, ref_tgt, ref_src) & src_ok
        view = [editbench.EditPair("refine", img, s_, t_, "") for img, s_, t_ in zip(ref.target, ref_src, ref_tgt)]
        part = F.max_pool2d(editbench.attribute_regions(seg, view), 3, stride=1, padding=1)
        out = (((ref.target - ref.source).abs().mean(1, keepdim=True) * (1 - part)).flatten(1).sum(1)
               / (1 - part).flatten(1).sum(1).clamp_min(1))
        parts.append((idx, [dict(src_ok=a, ok=b, out=c) for a, b, c in zip(tolist(src_ok), tolist(ok), tolist(out))]))
    return {"pairs": [[s, t] for s, t in zip(ref_src_all, ref_tgt_all)], "live": list(range(LIVE_REF)),
            "per_pair": columns(scatter(N_EXTRA, parts))}


def measure_reweight(bundle, attr):
    rw_attrs = world.sample_attributes(N_EXTRA, seed=SEED + 20, smiling=True)
    prompts_all = [world.caption(a, drop=("hair", "skin", "eyes_open", "glasses", "hat")) for a in rw_attrs]
    x_T_all = torch.randn(N_EXTRA, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 5))
    parts = []
    for idx in chunks(N_EXTRA, range(LIVE_RW)):
        prompts = [prompts_all[i] for i in idx]
        serious = [p.replace("smiling", "serious") for p in prompts]
        ctrl = attention.Reweight(bundle.tokenizer, prompts, prompts, word="smiling", scale=RW_SCALE, tau_c=1.0,
                                  tau_s=TAU_S)
        rw = attention.edit(bundle, ctrl, x_T=x_T_all[idx], guidance_scale=GUIDANCE, num_inference_steps=STEPS)
        src_ok = editbench.reads(attr, rw.source, prompts, serious)
        ok = editbench.reads(attr, rw.target, serious, prompts) & src_ok
        parts.append((idx, [dict(src_ok=a, ok=b) for a, b in zip(tolist(src_ok), tolist(ok))]))
    return {"prompts": prompts_all, "live": list(range(LIVE_RW)), "per_pair": columns(scatter(N_EXTRA, parts))}


def measure_table2(bundle, attr, seg, clip, trunk, perceptual):
    """§4: editbench.run_methods (+ StyleDiffusion's shipped inversion) on Table 2's photo pairs, in TABLE2_CHUNKS,
    and the tau_u sweep on each chunk's subject swap from the chunk's null-text inversion."""
    all_pairs = editbench.edit_pairs(N_PER_KIND, seed=SEED)
    sd_all = stylediffusion.load_shipped("table2-film")    # refused (ManifestError) if shipped for another toy-t2i
    tok = bundle.tokenizer
    sdedit_all = editbench.sdedit(bundle, torch.stack([p.image for p in all_pairs]), [p.target for p in all_pairs],
                                  SDEDIT_STRENGTH, GUIDANCE, STEPS, torch.Generator().manual_seed(SEED))
    parts, sweep_parts = [], []
    for idx in TABLE2_CHUNKS:
        pairs = [all_pairs[i] for i in idx]
        sources, targets = [p.source for p in pairs], [p.target for p in pairs]
        sd_inv = stylediffusion.subset(sd_all, idx)
        extra = {"stylediffusion": lambda b, ps, _null, sd_inv=sd_inv: stylediffusion.p2plus_edit(
            b, sd_inv, ps, tau_v=0.6, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U).target}
        methods = tuple(m for m in editbench.METHODS if m != "sdedit") + ("stylediffusion",)
        run = editbench.run_methods(bundle, pairs, methods=methods, guidance_scale=GUIDANCE,
                                    num_inference_steps=STEPS, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U,
                                    sdedit_strength=SDEDIT_STRENGTH, null_inner_steps=NULL_INNER, null_lr=NULL_LR,
                                    seed=SEED, extra=extra)
        run.results["sdedit"] = editbench.MethodResult("sdedit", sdedit_all[idx])
        run.results = {m: run.results[m] for m in editbench.METHODS + ("stylediffusion",)}
        scores = editbench.score(run, trunk, clip, perceptual, with_source=True)
        photos = torch.stack([p.image for p in pairs])
        edited = {"source": photos, **{m: r.edited for m, r in run.results.items()}}
        seg_part = editbench.attribute_regions(seg, pairs)
        ov = editbench.region_overlap(run.regions, seg_part)
        rows = [dict(psnr=v) for v in tolist(metrics.psnr(photos, run.results["p2p"].reconstruction))]
        for k in ov:
            for r, v in zip(rows, tolist(ov[k])):
                r[k] = v
        for m, e in edited.items():
            ok = editbench.reads(attr, e, targets, sources)
            ns_seg = editbench.ns_lpips(perceptual, photos, e.clamp(-1, 1), seg_part)
            for j, r in enumerate(rows):
                r[m] = dict(ok=bool(ok[j]), structure=float(scores[m].structure[j]),
                            ns_lpips=float(scores[m].ns_lpips[j]), clip=float(scores[m].clip[j]),
                            ns_seg=float(ns_seg[j]))
        parts.append((idx, rows))
        # the tau_u sweep on this chunk's subject swaps (the notebook's photo_edit)
        sj = [j for j, p in enumerate(pairs) if p.kind == "subject"]
        sp = [pairs[j] for j in sj]
        sp_src, sp_tgt = [p.source for p in sp], [p.target for p in sp]
        null = run.null_text
        sweep = {(0.0, True): run.results["p2p"].edited[sj], (TAU_U, True): run.results["p2plus"].edited[sj]}
        for tu, blend in [(tu, True) for tu in TAU_US] + [(tu, False) for tu in (0.0, TAU_U, 1.0)]:
            if (tu, blend) not in sweep:
                lb = attention.LocalBlend(tok, sp_src, sp_tgt, [[p.word, p.target_word] for p in sp]) if blend else None
                ctrl = attention.Replace(tok, sp_src, sp_tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=tu, local_blend=lb)
                sweep[(tu, blend)] = attention.edit(bundle, ctrl, x_T=null.x_T[sj], guidance_scale=GUIDANCE,
                                                    num_inference_steps=STEPS,
                                                    null_embeddings=[n[sj] for n in null.null_embeddings]).target
        ph = photos[sj]
        srow = [{} for _ in sj]
        for (tu, blend), e in sweep.items():
            ok = editbench.reads(attr, e, sp_tgt, sp_src)
            cl = toyclip.clip_score(clip.model, clip.tokenizer, e, sp_tgt).detach()
            st = editbench.structure_distance(trunk, ph, e.clamp(-1, 1))
            for j, r in enumerate(srow):
                r[f"{tu:g}|{int(blend)}"] = dict(ok=bool(ok[j]), clip=float(cl[j]), structure=float(st[j]))
        sweep_parts.append(([idx[j] for j in sj], srow))
    n = len(all_pairs)
    subj = [i for i, p in enumerate(all_pairs) if p.kind == "subject"]
    sweep_rows = {i: r for idx, rows in sweep_parts for i, r in zip(idx, rows)}
    return {"pairs": [[p.kind, p.source, p.target] for p in all_pairs], "chunks": TABLE2_CHUNKS,
            "per_pair": scatter(n, parts), "sweep": {"pairs": subj, "per_pair": [sweep_rows[i] for i in subj]}}


def main(only=None):
    """Measure every group, or only those named (the others are kept from the stored file)."""
    bundle, clip = zoo.load("toy-t2i"), zoo.load("toy-clip")
    attr, seg, trunk = zoo.load("toy-attr").model, zoo.load("toy-seg").model, zoo.load("toy-attr").model
    perceptual = metrics.toy_lpips(trunk)
    out = {"measured_on": zoo.measured_on("06_p2plus"),   # what zoo.load_measured checks
           "seed": SEED, "steps": STEPS, "guidance": GUIDANCE, "tau": [TAU_C, TAU_S, TAU_U], "n_gen": N_GEN,
           "n_extra": N_EXTRA, "rw_scale": RW_SCALE, "n_per_kind": N_PER_KIND, "null_text": [NULL_INNER, NULL_LR],
           "tau_us": list(TAU_US), "perceptual": perceptual.name}
    if only:
        # the groups kept must be from the same models: zoo.load_measured refuses a file measured on others
        out.update({k: v for k, v in zoo.load_measured("06_p2plus").items() if k not in only})
    t0 = time.time()
    for name, fn in (("replace", lambda: measure_replace(bundle, attr, seg, clip)),
                     ("refine", lambda: measure_refine(bundle, attr, seg)),
                     ("reweight", lambda: measure_reweight(bundle, attr)),
                     ("table2", lambda: measure_table2(bundle, attr, seg, clip, trunk, perceptual))):
        if only and name not in only:
            continue
        out[name] = fn()
        print(f"{name} done, {time.time() - t0:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])     # e.g. `measure06.py table2` re-measures Table 2 only
