# %% [markdown]
# # 05 · StyleDiffusion: inverting a real image into the value input of cross-attention
#
# **After this notebook you can** say what the keys and the values of cross-attention each decide, build
# StyleDiffusion's mapping network $M_t$ from a CLIP image encoder to the value input, train it with Alg. 1
# ($\mathcal L_{rec} + \mathcal L_{att}$), compare its reconstructions with null-text inversion (Table 3), see
# why it needs less of the caption than null-text does, and edit with it: P2Plus with the value window τ_v, and
# SDEdit started from the inversion.
#
# This is the first contribution of Li et al., *StyleDiffusion: Prompt-Embedding Inversion for Text-Based
# Editing* (§3.3, Alg. 1, Eqs. 5-8, Tables 1-3, Figs. 3, 4, 14-16, 18), in miniature: toy-t2i (32 × 32 pixels)
# stands in for Stable Diffusion and toy-clip's vision tower for CLIP ViT-B/16. Notebook 02 built null-text
# inversion; notebook 06 built the attention processors and P2Plus this notebook edits with.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown

from diffnb import attention, editbench, inversion, metrics, show, stylediffusion as S, t2i, toyclip, widgets, world, zoo

# %% [markdown]
# ## Settings
# The heavy part of this notebook, Alg. 1 with the official schedule on 16 + 12 + 9 images and six ablations,
# takes about 40 minutes on two CPU cores. By default the notebook loads the result of that run, shipped in
# `data/models/stylediffusion-photo/` (safetensors, checked against the manifest like every toy model) and runs
# Alg. 1 live only on two images with a shortened schedule. `FULL_RUN = True` recomputes everything here.
# `MODE = "real"` swaps in Stable Diffusion 1.4 and CLIP ViT-B/16 (see the last section).

# %%
MODE = "toy"                 # "toy" (offline, CPU) or "real" (GPU + network)
FULL_RUN = False             # True: recompute the shipped inversions here (about 40 minutes on 2 CPU cores)
SEED = 0
STEPS = 20                   # DDIM steps (the paper: 50); the shipped run used 20
GUIDANCE = 5.0               # classifier-free guidance w (the paper: 7.5)
LIVE_ITERATIONS = 5          # §3's live run: inner iterations at the first step (the official schedule: 100)
TAU_V = 0.6                  # learned value input for the first 60% of the steps (the official default)
TAU_C, TAU_S, TAU_U = 0.6, 0.8, 0.5   # the attention injection of notebook 06 (official defaults)
DEVICE = zoo.get_device()
bundle = zoo.load({"toy": "toy-t2i", "real": "sd-1.4"}[MODE], device=DEVICE)
clip = zoo.load({"toy": "toy-clip", "real": "clip-vit-b16"}[MODE], device=DEVICE)
attr = zoo.load("toy-attr").model                    # reads attributes; the structure-distance trunk
seg = zoo.load("toy-seg").model                      # reads layouts
perceptual = metrics.toy_lpips(attr) if MODE == "toy" else metrics.real_lpips()
tok = bundle.tokenizer
print(bundle.source, "|", clip.source, "|", perceptual.name)

# %% [markdown]
# ## 1. Keys decide where, values decide what (Fig. 4)
# In a cross-attention layer the image features make the queries, and the caption's embedding $\mathbf c$ makes
# both the keys and the values:
#
# $$\hat{\mathbf f} = \mathrm{Softmax}\Big(\frac{\mathbf q\,\Psi_K(\mathbf c_k)^\top}{\sqrt d}\Big)\,\Psi_V(\mathbf c_v),
# \qquad \mathbf c_k = \mathbf c_v = \mathbf c \text{ normally.}$$
#
# The keys only enter the attention map, which says *where* each token's value goes; the values are *what* is
# added there. StyleDiffusion's Fig. 4 tests this by giving the keys one prompt and the values another.
# `S.swap_key_value` does that through the same attention processor as notebook 06 (its controller hands the
# layer a different value input). We give 4 random pairs of prompts the same starting noise and ask toy-attr
# which prompt each attribute of the swapped image follows, and toy-seg which image its layout follows.

# %%
n_kv = 4
a1, a2 = world.sample_attributes(n_kv, seed=SEED + 1), world.sample_attributes(n_kv, seed=SEED + 2)
c1, c2 = [world.caption(a) for a in a1], [world.caption(a) for a in a2]
x_T = torch.randn(n_kv, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED))
combos = {"k1 v1": (c1, c1), "k2 v2": (c2, c2), "k1 v2": (c1, c2), "k2 v1": (c2, c1)}
out = S.swap_key_value(bundle, sum((k for k, _ in combos.values()), []), sum((v for _, v in combos.values()), []),
                       x_T=x_T.repeat(4, 1, 1, 1), guidance_scale=GUIDANCE, num_inference_steps=STEPS)  # one batch
gen = dict(zip(combos, out.chunk(4)))
show.rows([(kv, g) for kv, g in gen.items()], nrow=n_kv, width=4)
plt.show()
print("prompt 1:", c1[0]); print("prompt 2:", c2[0])

# %%
names = ["subject", "hair", "skin", "background", "smiling", "eyes_open", "glasses", "hat"]
read = {kv: attr.predict(g).attributes() for kv, g in gen.items()}
follows_value = follows_key = total = 0
for kv, key_attrs, value_attrs in (("k1 v2", a1, a2), ("k2 v1", a2, a1)):
    for i in range(n_kv):
        for nm in names:
            if getattr(key_attrs[i], nm) != getattr(value_attrs[i], nm):      # only where the prompts disagree
                total += 1
                follows_value += getattr(read[kv][i], nm) == getattr(value_attrs[i], nm)
                follows_key += getattr(read[kv][i], nm) == getattr(key_attrs[i], nm)
masks = {kv: seg.predict(g) for kv, g in gen.items()}
lay_k = ((masks["k1 v2"] == masks["k1 v1"]).float().mean() + (masks["k2 v1"] == masks["k2 v2"]).float().mean()) / 2
lay_v = ((masks["k1 v2"] == masks["k2 v2"]).float().mean() + (masks["k2 v1"] == masks["k1 v1"]).float().mean()) / 2
print(f"attributes where the two prompts disagree ({total}): the swapped image follows the VALUE prompt in "
      f"{follows_value / total:.0%}, the KEY prompt in {follows_key / total:.0%}")
print(f"layout (toy-seg pixel agreement): with the key prompt's image {lay_k:.2f}, with the value prompt's {lay_v:.2f}")

# %% [markdown]
# **What the toy shows, and where it differs from the paper.** The values carry the content, as in Fig. 4
# (bottom): the swapped image takes its subject, colours and accessories from the value prompt. In Stable
# Diffusion the keys keep the layout; in toy-t2i the layout follows the values too. The reason is the maps:
# toy-t2i's cross-attention is nearly uniform over the tokens (notebook 06 §1: a few per cent each, everywhere),
# so changing the keys barely moves the attention map, and there is little "where" for the keys to decide.
# The next cell measures it: the mean largest token weight per pixel against the uniform $1/L$.

# %%
_, store = attention.record(bundle, c1[:2], x_T=x_T[:2], guidance_scale=GUIDANCE, num_inference_steps=STEPS)
maps = attention.cross_maps(store, res=16)                       # (2, 16, 16, L)
L = maps.shape[-1]
print(f"largest token weight per pixel: mean {maps.max(-1).values.mean():.3f}; uniform would be 1/L = {1 / L:.3f}")

# %% [markdown]
# ## 2. The mapping network (Table 1, Eq. 5)
# StyleDiffusion keeps the key input as the caption's embedding $\mathbf c$ and replaces the *value* input by a
# learned embedding computed from the image $\mathbf x$:
#
# $$\tilde{\mathbf c}_t = M_t\big(E(\mathbf x)\big), \qquad
# \hat{\mathbf f} = \mathrm{Softmax}\Big(\frac{\mathbf q\,\Psi_K(\mathbf c)^\top}{\sqrt d}\Big)\,\Psi_V(\tilde{\mathbf c}_t)
# \qquad \text{(Eq. 5)}$$
#
# $E$ is the frozen CLIP image encoder: all its output tokens after the final layer norm (197 × 768 for
# ViT-B/16; here toy-clip's). $M_t$ (Table 1) mixes *tokens*, not channels: 1×1 convolutions along the token
# axis take the $n$ image tokens to the $L$ text positions, with BatchNorm and LeakyReLU between, one network
# per timestep, initialised from $\mathcal N(0, 0.01)$. Two forms exist:
#
# * **the paper's** (`form="value"`): the output *is* the value input;
# * **the official code's** (`form="film"`, `OFFICIAL-CODE-NOTES.md`): the output is $2L$ tokens, a scale and a
#   shift, and the value input is $\mathbf c \odot \text{scale} + \text{shift}$, a modulation of the caption.
#
# We use the official form: in the ablation of §6 it reconstructs better than the paper's form (the table there
# has both), because it starts from the caption's own embedding rather than from nothing.

# %%
tokens = S.image_tokens(clip, world.sample(1, seed=SEED, domain="photo").images)
cond = t2i.encode_prompt(bundle, ["a cat"])
for form in ("value", "film"):
    net = S.MappingNetwork(tokens.shape[1], cond.shape[1], form)
    n_par = sum(p.numel() for p in net.parameters())
    print(f"form={form!r}: E(x) {tuple(tokens.shape[1:])} -> c̃_t {tuple(net(tokens, cond).shape[1:])}, "
          f"{n_par:,} parameters per step")

# %% [markdown]
# ## 3. Alg. 1: train $M_t$ along the inversion trajectory
# 1. DDIM-invert the image under its caption (guidance 1): the pivot trajectory $\hat{\mathbf z}_T, \dots,
#    \hat{\mathbf z}_0$, and the cross-attention maps $\hat{\mathbf a}_t$ on the way.
# 2. From $\tilde{\mathbf z}_T = \hat{\mathbf z}_T$, at each step $t$ train $M_t$ (starting from $M_{t+1}$'s
#    weights) so that one guided DDIM step with the learned value input lands on the trajectory and keeps its maps:
#
# $$\mathcal L = \underbrace{\|\tilde{\mathbf z}_{t-1} - \hat{\mathbf z}_{t-1}\|_2^2}_{\mathcal L_{rec}\ \text{(Eq. 6)}}
# + \lambda_{att}\,\underbrace{\|\tilde{\mathbf a}_t - \hat{\mathbf a}_t\|_2^2}_{\mathcal L_{att}\ \text{(Eq. 7)}}$$
#
# with Adam, $(\beta_1, \beta_2) = (0, 0.999)$, learning rate $10^{-2}(1 - i/100)$, $\lceil 100\,e^{-0.1 i}\rceil$
# inner iterations at step $i$ and an early stop (the official schedule). Only the conditional branch's value input
# changes, so the unconditional prediction is computed once per step. Every image gets its own $M_t$ (the paper
# inverts one image at a time); `S.invert` runs a batch as that many independent inversions.
#
# Live, on two held-out `photo` images, with the schedule shortened to `LIVE_ITERATIONS` at the first step:

# %%
held_out = S.table3_images()                          # the 16 held-out photo images of Table 3
live_imgs, live_caps = held_out.images[:2], held_out.captions[:2]
live = S.invert(bundle, clip, live_imgs, live_caps, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                iterations=LIVE_ITERATIONS, generator=torch.Generator().manual_seed(SEED))
rec_live = S.reconstruct(bundle, live)
print(f"Alg. 1, 2 images, {STEPS} steps, schedule {LIVE_ITERATIONS}: {live.seconds:.1f} s; "
      f"PSNR {metrics.psnr(live_imgs, rec_live).mean():.1f} dB")
fig, ax = plt.subplots(1, 2, figsize=(8, 2.4))
ax[0].semilogy([l[0] for l in live.losses]); ax[0].set_title("final L_rec per step"); ax[0].set_xlabel("step i (high t first)")
ax[1].semilogy([l[1] for l in live.losses]); ax[1].set_title("final L_att per step"); ax[1].set_xlabel("step i")
plt.tight_layout(); plt.show()

# %% [markdown]
# The retrace error grows along the trajectory: each step starts where the previous one landed, so errors
# accumulate, and the schedule gives later steps fewer iterations. Now the full run: either computed here
# (`FULL_RUN = True`) or loaded.

# %%
ship_dir = zoo.default_root() / "stylediffusion-photo"
if FULL_RUN:
    import tempfile
    from pathlib import Path

    from diffnb.maint.stylediffusion_run import full_run      # the maintainers' recipe of the shipped run
    ship_dir = Path(tempfile.mkdtemp())
    full_run(ship_dir)                                        # about 40 minutes on 2 CPU cores
    shipped = lambda name: S.load(ship_dir / f"{name}.safetensors")
    shipped_null = lambda name: inversion.load(ship_dir / f"{name}.safetensors")
else:
    shipped = S.load_shipped
    shipped_null = S.load_shipped_null_text
full = shipped("film")
null = shipped_null("null-text")
print(f"StyleDiffusion (film form, official schedule): {full.cond.shape[0]} images, {full.seconds:.0f} s; "
      f"null-text (10 inner steps, lr 1e-2): {null.seconds:.0f} s")


# %% [markdown]
# ## 4. Table 3: reconstruction quality and the cost of a step
# Both methods reconstruct the same 16 held-out `photo` images (never seen in training) at the same settings:
# null-text inversion with Mokady et al.'s official settings (10 inner steps, learning rate $10^{-2}$), and
# StyleDiffusion with its official schedule. The time is one guided DDIM step at inference, measured here: null-text
# changes only what the unconditional branch is given; StyleDiffusion also runs $M_t$ and hands the layers a value
# input (`python -m diffnb.bench` reports the same ratio, `stylediffusion_over_null_text_per_step`).

# %%
def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, (time.perf_counter() - t0) / STEPS           # seconds per step for the 16 images

rec_null, s_null = timed(lambda: inversion.text_reconstruct(bundle, null))
rec_sd, s_sd = timed(lambda: S.reconstruct(bundle, full))
x0 = held_out.images
rows = [("Null-text", rec_null, s_null, "0.28 s / 31.314 / 0.730"),
        ("StyleDiffusion (ours)", rec_sd, s_sd, "0.30 s / 31.523 / 0.751")]
lines = ["| method | time per step (16 images) ↓ | PSNR ↑ | SSIM ↑ | paper: time / PSNR / SSIM |", "| --- | --- | --- | --- | --- |"]
for name, rec, s, paper in rows:
    lines.append(f"| {name} | {1000 * s:.1f} ms | {metrics.psnr(x0, rec).mean():.2f} | "
                 f"{metrics.ssim(x0, rec).mean():.3f} | {paper or '–'} |")
print(f"per-step time, StyleDiffusion / null-text: {s_sd / s_null:.2f}× (paper: 0.30 / 0.28 = 1.07×; one timing "
      f"here, best-of-3 in the benchmark)")
Markdown("\n".join(lines))

# %%
show.rows([("photo", x0[:8]), ("null-text", rec_null[:8]), ("StyleDiffusion", rec_sd[:8])], nrow=8, width=7)
plt.show()

# %% [markdown]
# **Reading Table 3.** The paper's numbers are 512-pixel Stable Diffusion reconstructions; ours are 32-pixel toy
# ones (PSNR depends on the image statistics, so compare the order of the rows). The order agrees with the paper:
# StyleDiffusion reconstructs at least as well as null-text. Two caveats, both measured: the comparison holds at
# each method's *official* learning rate; null-text with a five-times larger one (the fast setting of notebook 02)
# does better, shown in the next cell. And our per-step time ratio is measured at 32 pixels, where $M_t$ is
# not negligible against the UNet as it is at 512.

# %%
null_fast = shipped_null("null-text-lr5e-2")
rec_fast = inversion.text_reconstruct(bundle, null_fast)
print(f"null-text, lr 5e-2: PSNR {metrics.psnr(x0, rec_fast).mean():.2f} dB, SSIM {metrics.ssim(x0, rec_fast).mean():.3f}")

# %% [markdown]
# ## 5. Partial captions (Fig. 3)
# Null-text inversion learns the *unconditional* embedding; the caption stays as it is, so whatever the caption
# does not name has to be put back through the unconditional branch. StyleDiffusion learns the value input from
# the image itself, so a caption that names only the subject and the edited attribute is enough.
#
# The pairs below have such captions: "a cat on a blue background" → "a cat on a red background",
# "a person" → "a robot". Both methods invert the images under these captions (shipped, same settings as Table 3; 6 of the 12 pairs here,
# all 12 in `tests/test_stylediffusion_bars.py`),
# then edit: null-text + P2P (notebook 06), and StyleDiffusion + P2Plus with the learned value input until τ_v,
# both with local blending. NS-LPIPS is the perceptual change outside the edited word's region (notebook 06).

# %%
keep = [0, 1, 4, 5, 8, 9]                             # 2 pairs of each kind (tests/ measure all 12)
partial = [editbench.edit_pairs(4, seed=7, partial=True)[i] for i in keep]
p_imgs = torch.stack([p.image for p in partial])
sd_p = S.subset(shipped("partial-film"), keep)
null_p = shipped_null("partial-null-text")
null_p.x_T, null_p.null_embeddings = null_p.x_T[keep], [n[keep] for n in null_p.null_embeddings]
_, regions = editbench.word_regions(bundle, partial, STEPS)
sources, targets = [p.source for p in partial], [p.target for p in partial]
blend = attention.LocalBlend(tok, sources, targets, [[p.word, p.target_word] for p in partial])
p2p = attention.edit(bundle, attention.Replace(tok, sources, targets, tau_c=TAU_C, tau_s=TAU_S, tau_u=0.0,
                                               local_blend=blend),
                     x_T=null_p.x_T, guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                     null_embeddings=null_p.null_embeddings)
sd_edit = S.p2plus_edit(bundle, sd_p, partial, tau_v=TAU_V, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U)
ns = {m: editbench.ns_lpips(perceptual, p_imgs, e.target.clamp(-1, 1), regions) for m, e in (("p2p", p2p), ("sd", sd_edit))}
print(f"reconstruction PSNR with partial captions: null-text {metrics.psnr(p_imgs, p2p.source).mean():.1f} dB, "
      f"StyleDiffusion {metrics.psnr(p_imgs, sd_edit.source).mean():.1f} dB")
print(f"NS-LPIPS: null-text + P2P {ns['p2p'].mean():.3f}, StyleDiffusion + P2Plus {ns['sd'].mean():.3f}; "
      f"StyleDiffusion lower on {(ns['sd'] < ns['p2p']).float().mean():.0%} of the {len(partial)} pairs")
cs = {m: toyclip.clip_score(clip.model, clip.tokenizer, e.target.clamp(-1, 1), targets) for m, e in (("p2p", p2p), ("sd", sd_edit))}
print(f"CLIP score with the target caption: null-text + P2P {cs['p2p'].mean():.3f}, "
      f"StyleDiffusion + P2Plus {cs['sd'].mean():.3f}")
show.rows([("photo", p_imgs), ("null-text rec.", p2p.source), ("null-text + P2P", p2p.target),
           ("StyleDiff. rec.", sd_edit.source), ("StyleDiff. + P2Plus", sd_edit.target)], nrow=len(partial), width=9)
plt.show()
for p in partial[::2]:
    print(f"{p.kind:9s} {p.source!r} → {p.target!r}")

# %% [markdown]
# **Reading §5.** With captions that leave most of the image unnamed, null-text's reconstruction already loses
# detail (its PSNR above), and its edits change much of what lies outside the edited word's region; StyleDiffusion
# reconstructs from the image itself and its edits leave the rest alone (NS-LPIPS lower on most pairs). The CLIP
# score shows the price: at the official τ_v = 0.6 the edit acts only in the last 40% of the steps (§7 explains
# why), so StyleDiffusion follows the target caption a little less. The paper's Table 2 (full captions) has
# StyleDiffusion ahead on both, NS-LPIPS 0.117 vs 0.148 and CLIP 77.9% vs 75.2%; on the toy the CLIP score goes
# slightly the other way.

# %% [markdown]
# ## 6. Ablations (Figs. 14 right, 15, 16)
# On the first four Table 3 images, each variant trained with the same official schedule:
#
# * **learn the key input** instead of the value input, and **learn both** (Fig. 14, right);
# * **no $M_t$**: optimise the value embedding directly, one tensor per step (Fig. 16);
# * **the paper's form** of $M_t$ (output = value input) against the official scale-and-shift;
# * **no $\mathcal L_{att}$** ($\lambda_{att} = 0$; Fig. 15), and $\lambda_{att} = 1000$ besides the official 1:
#   toy-t2i's maps are so flat that at $\lambda_{att} = 1$ the term is about a thousandth of $\mathcal L_{rec}$.
#
# Besides PSNR/SSIM, the *attention error* is the mean squared difference between the reconstruction's
# cross-attention maps and the DDIM inversion's $\hat{\mathbf a}_t$, over all steps: what $\mathcal L_{att}$ keeps small.

# %%
n_ab = 4
variants = {"StyleDiffusion (film form, λ_att = 1)": S.subset(full, range(n_ab)), "paper's form (value)": shipped("value"),
            "no M_t (direct value embedding)": shipped("direct"), "learn key": shipped("key"),
            "learn key and value": shipped("both"), "no L_att": shipped("no-latt"),
            "L_att with λ_att = 1000": shipped("latt-1000")}
variants_maps = variants["StyleDiffusion (film form, λ_att = 1)"].target_maps     # â_t of these 4 images
lines = ["| variant | PSNR ↑ | SSIM ↑ | attention error ↓ |", "| --- | --- | --- | --- |"]
ab_rec = {}
for name, inv in variants.items():
    ab_rec[name], err = S.reconstruct_with_error(bundle, inv, target_maps=variants_maps)
    lines.append(f"| {name} | {metrics.psnr(x0[:n_ab], ab_rec[name]).mean():.2f} | "
                 f"{metrics.ssim(x0[:n_ab], ab_rec[name]).mean():.3f} | {err:.2e} |")
Markdown("\n".join(lines))

# %%
show.rows([("photo", x0[:n_ab])] + [(k, v) for k, v in ab_rec.items()], nrow=n_ab, width=4)
plt.show()

# %% [markdown]
# Fig. 15 as a picture: the subject word's cross-attention map of the first image, averaged over the steps, in the
# DDIM inversion ($\hat{\mathbf a}$) and in four reconstructions.

# %%
i = 0
idx = attention.token_index(tok, held_out.captions[i], held_out.attributes[i].subject)
word_map = lambda step_maps: torch.stack(step_maps).mean(0)[i, :, idx].sum(-1).reshape(16, 16)
cols = {"DDIM inversion â": word_map(variants_maps)}
for name in ("StyleDiffusion (film form, λ_att = 1)", "no L_att", "L_att with λ_att = 1000", "learn key"):
    cols[name] = word_map(S.cross_attention_maps(bundle, variants[name]))
fig, axes = plt.subplots(1, len(cols) + 1, figsize=(2 * (len(cols) + 1), 2.3))
axes[0].imshow(show.grid_array(x0[i:i + 1], nrow=1)); axes[0].set_title(held_out.attributes[i].subject, fontsize=8)
vmax = max(float(m.max()) for m in cols.values())
for ax, (name, m) in zip(axes[1:], cols.items()):
    ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax); ax.set_title(name, fontsize=7)
for ax in axes:
    ax.axis("off")
plt.tight_layout(); plt.show()

# %% [markdown]
# **Reading the ablations** (the numbers above are measured each run; the ranking is what this paragraph reads).
# Learning the *key* input alone reconstructs worst and moves the attention maps furthest from the inversion's: keys
# only change where attention goes, and toy-t2i's maps are nearly uniform (§1), so there is little to gain and the
# maps are what it costs (in the picture, its map of the subject is scattered, while the three value-learning maps
# look like the inversion's). Learning keys *and* values can reconstruct better still, but its maps drift far from the
# inversion's, and Prompt-to-Prompt editing works through those maps: the paper rejects it for editing (Fig. 14,
# right), not for reconstruction. The paper's form of $M_t$ (output = value input) trails the official
# scale-and-shift form. Optimising the value embedding directly, without $M_t$ (Fig. 16), comes close to ours here,
# where the paper finds it clearly worse: at 32 pixels one free (L × 96) tensor per step is not much harder to fit
# than $M_t$'s output. $\mathcal L_{att}$ (Fig. 15) at the official $\lambda_{att} = 1$ makes no measurable
# difference here: on toy-t2i's nearly uniform maps the term is about a thousandth of $\mathcal L_{rec}$. At
# $\lambda_{att} = 1000$, where the two terms are of one scale, the attention error falls below the no-$\mathcal L_{att}$
# row's, at a small cost in PSNR: the trade the paper describes, visible only once the term has weight.

# %% [markdown]
# ## 7. Editing: P2Plus with the value window τ_v
# For editing (§3.3, Fig. 6 III), the source branch uses the learned value input at every step (it reconstructs
# the image) and the target branch uses it from $T$ down to τ_v·T, then the target caption's own embedding; P2Plus
# (notebook 06) injects the attention maps with τ_c, τ_s, τ_u. Small τ_v lets the target caption act early, for
# edits that change the structure (the official README suggests 0.2-0.5 with τ_u = 0.5 then); large τ_v keeps more
# of the image.
#
# One consequence is worth seeing before moving the sliders. While a step is inside both τ_v and τ_c, the target
# branch has the source's value input *and* the source's cross-attention maps, so it computes exactly what the source
# branch computes: the two images are identical up to that point, and the edit happens in the remaining
# $1 - \min(\tau_v, \tau_c)$ of the steps (and τ_u acts only if it is longer than $\min(\tau_v, \tau_c)$). With the official defaults
# (τ_v = τ_c = 0.6) that is the last 40% of the steps: gentle edits that keep the image. Lower τ_v (and τ_c) for edits
# that must change the shape, such as a subject swap. The pairs are the partial-caption pairs of §5 (a colour, an
# attribute and a subject swap; about a second per new setting).

# %%
pick = [0, 2, 4]
sd_pick = S.subset(sd_p, pick)
pick_pairs = [partial[i] for i in pick]

def redraw(tau_v, tau_u, tau_c):
    out = S.p2plus_edit(bundle, sd_pick, pick_pairs, tau_v=tau_v, tau_c=tau_c, tau_s=TAU_S, tau_u=tau_u)
    return torch.cat([out.source, out.target])

widgets.interactive_grid(redraw, nrow=3, scale=5,
                         tau_v=widgets.slider(0.0, 1.0, 0.1, TAU_V, "τ_v"),
                         tau_u=widgets.slider(0.0, 1.0, 0.1, TAU_U, "τ_u"),
                         tau_c=widgets.slider(0.0, 1.0, 0.1, TAU_C, "τ_c"))

# %% [markdown]
# ## 8. StyleDiffusion + SDEdit (Fig. 18)
# SDEdit noises the image to $t_0 = sT$ with a random draw of $q(\mathbf x_{t_0}\mid\mathbf x_0)$ and denoises with
# the target caption; what the noise hides is redrawn. After a StyleDiffusion inversion the start can be the image's
# *own* trajectory instead: retrace it with the learned value input down to $t_0$, then denoise with the target
# caption (`S.sdedit`). Same strength, same target captions; NS-LPIPS outside the edited region:

# %%
strength = 0.6
plain = editbench.sdedit(bundle, p_imgs, targets, strength, GUIDANCE, STEPS, torch.Generator().manual_seed(SEED))
after = S.sdedit(bundle, sd_p, targets, strength)
for name, e in (("SDEdit", plain), ("StyleDiffusion + SDEdit", after), ("StyleDiffusion + P2Plus", sd_edit.target)):
    print(f"{name:24s} NS-LPIPS {editbench.ns_lpips(perceptual, p_imgs, e.clamp(-1, 1), regions).mean():.3f}")
show.rows([("photo", p_imgs[pick]), ("SDEdit", plain[pick]), ("StyleDiff. + SDEdit", after[pick]),
           ("StyleDiff. + P2Plus", sd_edit.target[pick])], nrow=3, width=4)
plt.show()

# %% [markdown]
# ## 9. Table 2: the StyleDiffusion row
# Notebook 06's Table 2 pairs (full captions; colour, attribute and subject swaps), StyleDiffusion + P2Plus from its
# shipped inversion (τ_v = 0.6, local blending). Notebook 06 puts this row beside the other four methods on the same
# pairs; here it stands with the paper's numbers.

# %%
pairs2 = editbench.edit_pairs(3, seed=SEED)
sd2 = shipped("table2-film")
run = editbench.run_methods(bundle, pairs2, methods=("stylediffusion",), guidance_scale=GUIDANCE,
                            num_inference_steps=STEPS, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U,
                            extra={"stylediffusion": lambda b, ps, _null: S.p2plus_edit(
                                b, sd2, ps, tau_v=TAU_V, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U).target})
table = editbench.summarise(run, editbench.score(run, attr, clip, perceptual))
Markdown(editbench.markdown_table(table, perceptual.name))

# %% [markdown]
# ## Real mode
# Set `MODE = "real"` on a GPU machine with network: toy-t2i becomes `CompVis/stable-diffusion-v1-4`, toy-clip
# becomes CLIP ViT-B/16 (its 197 × 768 image tokens feed $M_t$, 197 → 154 tokens as in the official code) and the
# perceptual metric LPIPS-alex. Set `FULL_RUN = True` (there are no shipped inversions for Stable Diffusion), use
# `STEPS = 50` and `GUIDANCE = 7.5`; the official schedule takes a few minutes per image on a GPU.
#
# ## Summary
# * In cross-attention the keys set the attention maps (where) and the values what is added there; in toy-t2i,
#   whose maps are nearly uniform, the values decide nearly everything.
# * StyleDiffusion maps the image through a frozen CLIP image encoder and a per-step mapping network $M_t$ to the
#   value input, keeps the caption as the key input, and trains $M_t$ along the DDIM-inversion trajectory with
#   $\mathcal L_{rec} + \lambda\mathcal L_{att}$ (Alg. 1).
# * It needs less from the caption than null-text inversion does, and its inversion combines with P2Plus (τ_v)
#   and with SDEdit.
#
# ## Exercises
# 1. Run §3 with `LIVE_ITERATIONS = 40` and then 100. How do PSNR and time grow? Where along the trajectory does the
#    extra work go?
# 2. Invert the §5 images with their *full* captions (`world.caption`) with both methods and compare the
#    reconstruction PSNR with the partial-caption one. Which method loses more?
# 3. Fig. 4 with a sharper model: in `S.swap_key_value`, what would you expect if the attention maps were one-hot?
#    Check it by scaling the queries (a temperature) in `attention.ControlledAttnProcessor`.
# 4. In §7, find for the subject swap the largest τ_v at which toy-attr reads the target subject.
