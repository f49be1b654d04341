# %% [markdown]
# # 06 · Attention control: Prompt-to-Prompt and P2Plus
#
# **After this notebook you can** read *where* a text-to-image model puts each word from its cross-attention maps,
# edit a generated or a real image by changing its caption while injecting the source's attention maps
# (Prompt-to-Prompt: replace, refine, re-weight), switch on P2Plus's extra injection into the *unconditional*
# branch and sweep its window τ_u, and measure edits the way StyleDiffusion's Table 2 does: structure distance,
# NS-LPIPS and CLIP score, always beside the rate at which the edit happened at all.
#
# This is the second contribution of StyleDiffusion (§3.4, Figs. 5, 7, 8, 11, Table 2), built on Prompt-to-Prompt,
# in miniature: toy-t2i (32 × 32 pixels, toy-clip's text tower) stands in for Stable Diffusion. Notebook 02 built
# null-text inversion, which §4 uses for real images; notebook 05 builds StyleDiffusion, whose row (from its shipped
# inversion of the same pairs) joins the table in §4.
#
# **References.**
# - S. Li, J. van de Weijer, T. Hu, F. S. Khan, Q. Hou, Y. Wang, J. Yang, *StyleDiffusion: Prompt-Embedding
#   Inversion for Text-Based Editing*, [arXiv:2303.15649](https://arxiv.org/abs/2303.15649): P2Plus (§3.4,
#   Figs. 5, 7, 8, 14), Table 2.
# - A. Hertz, R. Mokady, J. Tenenbaum, K. Aberman, Y. Pritch, D. Cohen-Or, *Prompt-to-Prompt Image Editing with
#   Cross Attention Control*, ICLR 2023, [arXiv:2208.01626](https://arxiv.org/abs/2208.01626): replace, refine,
#   re-weight, local blending.
# - R. Mokady, A. Hertz, K. Aberman, Y. Pritch, D. Cohen-Or, *Null-text Inversion for Editing Real Images using
#   Guided Diffusion Models*, CVPR 2023, [arXiv:2211.09794](https://arxiv.org/abs/2211.09794).
# - C. Meng et al., *SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations*, ICLR 2022,
#   [arXiv:2108.01073](https://arxiv.org/abs/2108.01073).
# - N. Tumanyan, O. Bar-Tal, S. Bagon, T. Dekel, *Splicing ViT Features for Semantic Appearance Transfer*,
#   CVPR 2022, [arXiv:2201.00424](https://arxiv.org/abs/2201.00424): the structure distance.
# - What StyleDiffusion's official code does that the paper does not say: `docs/official_code_notes.md`.
#
# **Conventions.** Every sentence that reports a measured result is followed by a check cell that asserts it (its
# message names the claim, the measured value and the bound); numbers in the text are formatted from computed values.
# Every figure of edits says how its examples were chosen and gives the success rate over at least 20 pairs, except
# where it says otherwise: an edit *succeeds* when toy-attr reads the target's value of the swapped attribute in the
# edit (and, for generated images, the source's value in the unedited sample).

# %%
# Running on Colab? This cell fetches the course and installs it; anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    from importlib.metadata import version

    REPO = "https://github.com/<owner>/<repo>"   # the course's repository (replace <owner>/<repo> with its own)
    CLONE = "/content/diffnb"                   # a clone, not a wheel: the toy models live in data/ beside diffnb
    if not os.path.isdir(CLONE):
        subprocess.run(["git", "clone", "--depth", "1", REPO, CLONE], check=True)
    # Colab's torch and torchvision are built for its GPU: naming their installed versions makes pip keep them
    # (pyproject.toml's loose ranges accept them, so pip installs only what is missing).
    keep = [f"{name}=={version(name)}" for name in ("torch", "torchvision")]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE, *keep], check=True)
    sys.path.insert(0, CLONE)        # so that `import diffnb` works in this kernel without a restart
    os.chdir(f"{CLONE}/notebooks")   # relative paths as in a local checkout

# %%
import dataclasses
import textwrap
import time
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

from diffnb import attention, editbench, metrics, show, stylediffusion, t2i, toyclip, widgets, world, zoo

# %% [markdown]
# ## Settings
# `MODE = "real"` swaps toy-t2i for Stable Diffusion 1.4, toy-clip for CLIP ViT-B/16 and the toy perceptual metric
# for LPIPS-alex (a GPU and about 6 GB of downloads; see the last section).
#
# The success rates are over many pairs (21 generated word swaps, 20 refinements, 20 re-weightings, Table 2's
# 9 photo pairs through five methods), which together cost several minutes on a CPU. So the notebook runs its edits
# live on a few pairs only, the ones its figures show (the first 2 generated pairs of each kind, the first 6
# refinements, the first 2 re-weightings, and Table 2's first pair of each kind), and loads every pair's numbers from
# `data/measured/06_p2plus.json`, which `notebooks/build/measure06.py` writes by running the same calls with the same
# settings on all the pairs, in the notebook's batches. Each section checks that the pairs it runs live give the
# stored numbers, so the stored file cannot go stale unnoticed.

# %%
MODE = "toy"                 # "toy" (offline, CPU) or "real" (GPU + network)
SEED = 0
STEPS = 20                   # DDIM steps (the paper: 50)
GUIDANCE = 5.0               # classifier-free guidance w (the paper: 7.5)
TAU_C, TAU_S = 0.6, 0.8      # P2P: inject cross-attention for the first 60% of steps, self-attention for 80%
TAU_U = 0.5                  # P2Plus: inject the unconditional branch's self-attention for the first 50%
                             # (all three are the official StyleDiffusion code's defaults)
N_GEN = 7                    # generated word-swap pairs per kind (colour, attribute, subject) in §2-§3: 21 pairs
N_EXTRA = 20                 # generated pairs behind the refine and the re-weight success rates
RW_SCALE = -2.0              # the re-weight factor whose success rate §2 measures
N_MAPS = 8                   # captions whose attention maps §1 measures
N_PER_KIND = 3               # Table 2 pairs per edit kind (photo images): 9 pairs, stored by measure06.py
                             # (tests/test_p2plus_bars.py runs 10 per kind, 30 pairs: several minutes)
NULL_INNER, NULL_LR = 4, 5e-2   # null-text inversion (notebook 02's fast setting)
DEVICE = zoo.get_device()
bundle = zoo.load({"toy": "toy-t2i", "real": "sd-1.4"}[MODE], device=DEVICE)
clip = zoo.load({"toy": "toy-clip", "real": "clip-vit-b16"}[MODE], device=DEVICE)
attr = zoo.load({"toy": "toy-attr", "real": "clip-attributes"}[MODE], device=DEVICE).model   # reads the edits
seg = zoo.load({"toy": "toy-seg", "real": "face-parsing"}[MODE], device=DEVICE).model        # the parts
trunk = zoo.load("toy-attr").model                          # the structure distance's features (toy mode)
perceptual = metrics.toy_lpips(trunk) if MODE == "toy" else metrics.real_lpips()
tok = bundle.tokenizer
print(bundle.source, "|", clip.source, "|", perceptual.name)
# every pair's numbers behind the success rates (toy mode; notebooks/build/measure06.py writes them)
stored = zoo.load_measured("06_p2plus")   # refused if measured on other models than the shipped ones
assert (stored["seed"], stored["steps"], stored["guidance"], stored["tau"], stored["n_gen"], stored["n_extra"],
        stored["rw_scale"], stored["n_per_kind"], stored["null_text"]) == (
    SEED, STEPS, GUIDANCE, [TAU_C, TAU_S, TAU_U], N_GEN, N_EXTRA, RW_SCALE, N_PER_KIND, [NULL_INNER, NULL_LR]), \
    "the stored rates were measured with other settings: rerun notebooks/build/measure06.py with these"


def per_pair(group, key):
    """The stored numbers of every pair of a group (replace, refine, reweight), as a tensor."""
    return torch.tensor(stored[group]["per_pair"][key])


def same(live, stored_values, what, tol=1e-4):
    """Assert that numbers measured live equal the stored ones (booleans exactly, numbers to `tol`)."""
    if MODE != "toy":                # the stored numbers are toy mode's
        return
    live, stored_values = torch.as_tensor(live), torch.as_tensor(stored_values)
    if live.dtype == torch.bool:
        assert torch.equal(live, stored_values.bool()), (
            f"{what}: live {live.tolist()} but stored {stored_values.tolist()}; rerun notebooks/build/measure06.py")
    else:
        diff = float((live.double() - stored_values.double()).abs().max())
        assert diff < tol, (f"{what}: live and stored differ by {diff:.2e} (bound {tol}); "
                            "rerun notebooks/build/measure06.py")

# %% [markdown]
# ## 1. Where the words live: cross-attention maps
# In every cross-attention layer the image features $\mathbf f$ make the queries $\mathbf q$, the caption's
# embedding $\mathbf c$ makes the keys $\mathbf k = \Psi_K(\mathbf c)$ and the values $\mathbf v = \Psi_V(\mathbf c)$,
# and
#
# $$\mathbf a = \mathrm{Softmax}\big(\mathbf q\mathbf k^\top/\sqrt{d}\big), \qquad \hat{\mathbf f} = \mathbf a\mathbf v \qquad \text{(Eq. 4)}$$
#
# Row $i$ of $\mathbf a$ says how much pixel $i$ takes from each token: a probability distribution over the tokens.
# Prompt-to-Prompt's observation is that the column of a word, seen as an image, is *where* that word is drawn,
# and that it is fixed early in sampling.
#
# `diffnb.attention` reaches these maps through diffusers' extension point: `unet.set_attn_processor` gives every
# attention layer a `ControlledAttnProcessor`, which computes attention exactly as diffusers' `AttnProcessor` does
# but passes $\mathbf a$ through a *controller* first. `AttentionStore` is the controller that only records. Below:
# one hand-written caption and `N_MAPS - 1` captions of random world attributes, generated together; the figure shows
# the first.

# %%
prompt = "a smiling cat with red fur and glasses on a blue background"
map_prompts = [prompt] + [world.caption(a) for a in world.sample_attributes(N_MAPS - 1, seed=SEED)]
x_T_maps = torch.randn(N_MAPS, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED))
map_images, store = attention.record(bundle, map_prompts, x_T=x_T_maps, guidance_scale=GUIDANCE,
                                     num_inference_steps=STEPS)
maps = attention.cross_maps(store, res=16)                    # (N_MAPS, 16, 16, tokens), over layers and steps
row_sums = maps.sum(-1)
words = toyclip.words(tok, prompt)
word_max = float(maps[0, :, :, 1:len(words) + 1].max())
ncol = (len(words) + 2) // 2
fig, axes = plt.subplots(2, ncol, figsize=(1.0 * ncol + 0.8, 2.7), dpi=show.DPI)
axes = axes.ravel()
axes[0].imshow(show.grid_array(map_images[:1], nrow=1)); axes[0].set_title("image", fontsize=8)
for ax, (i, w) in zip(axes[1:], enumerate(words)):
    im = ax.imshow(maps[0, :, :, i + 1], cmap="magma", vmin=0, vmax=word_max); ax.set_title(f"{i + 1}: {w}", fontsize=8)
for ax in axes:
    ax.axis("off")
fig.colorbar(im, ax=axes.tolist(), fraction=0.03, pad=0.02, label="attention (one scale)")
fig.suptitle(f"'{prompt}': each word's map (token i), averaged over layers and steps", fontsize=8)
plt.show()

# %%
# how flat are the maps, and are the words brighter where toy-seg finds their part?
FUNCTION_WORDS = ("a", "with", "and", "on", ",")
content = lambda p: [(i + 1, w) for i, w in enumerate(toyclip.words(tok, p)) if w not in FUNCTION_WORDS]  # noqa: E731
start_share = float(maps[..., 0].mean())
word_share = torch.tensor([float(maps[b, :, :, i].mean()) for b, p in enumerate(map_prompts) for i, _ in content(p)])
after_share = torch.tensor([float(maps[b, :, :, len(toyclip.words(tok, p)) + 1:].sum(-1).mean())
                            for b, p in enumerate(map_prompts)])       # the end token and the padding after it
labels = seg.predict(map_images)


def brighter_inside(b, word, classes):
    """A word's map (upsampled to 32 x 32) inside toy-seg's part / outside it, for caption b."""
    i = attention.token_index(tok, map_prompts[b], word)[0]
    m = F.interpolate(maps[b:b + 1, :, :, i][:, None], size=32, mode="bilinear", align_corners=False)[0, 0]
    part = torch.isin(labels[b], torch.tensor([world.MASK_CLASSES.index(c) for c in classes]))
    return float(m[part].mean() / m[~part].mean()) if part.any() and (~part).any() else float("nan")


ratios = {"subject": [], "hair colour": [], "background colour": []}
for b, p in enumerate(map_prompts):
    said = world.parse_caption(p)
    ratios["subject"].append(brighter_inside(b, said["subject"], editbench.ATTRIBUTE_CLASSES["subject"]))
    if "hair" in said:
        ratios["hair colour"].append(brighter_inside(b, said["hair"], ("hair",)))
    if "background" in said:
        ratios["background colour"].append(brighter_inside(b, said["background"], ("background",)))
brighter = {k: float(np.mean(np.array(v) > 1)) for k, v in ratios.items()}
median_ratio = {k: float(np.nanmedian(v)) for k, v in ratios.items()}
print("row sums over tokens: min", f"{float(row_sums.min()):.5f}", "max", f"{float(row_sums.max()):.5f}")
for k in ratios:
    print(f"{k:18s}: map inside its toy-seg part / outside, median {median_ratio[k]:.2f}; > 1 in "
          f"{brighter[k]:.0%} of {len(ratios[k])}")
display(Markdown(
    f"Each row of $\\mathbf a$ sums to 1 over the tokens (min {float(row_sums.min()):.4f}, max "
    f"{float(row_sums.max()):.4f}: the processor records what the softmax made). toy-t2i's maps are much flatter "
    f"than Stable Diffusion's. Over the {N_MAPS} captions the start token takes {start_share:.0%} of the attention on "
    f"average, each content word between {float(word_share.min()):.1%} and {float(word_share.max()):.1%}, and the "
    f"tokens after the caption (the end token and the padding) {float(after_share.mean()):.0%} together. Those last "
    f"tokens matter: toy-clip's text tower is causal, so each of them has read the whole caption. Still, a word's map "
    f"is brighter on its own part of the image, as toy-seg finds it: the median ratio of the map inside the part to "
    f"outside it is {median_ratio['subject']:.2f} for the subject word (the figure against the background; above 1 "
    f"for {brighter['subject']:.0%} of the captions) and {median_ratio['background colour']:.2f} for the background "
    f"colour ({brighter['background colour']:.0%}), but only {median_ratio['hair colour']:.2f} for the hair colour: "
    f"the hair is a few pixels at 16 × 16."))

# %%
assert (row_sums - 1).abs().max() < 1e-4, (
    f"claim 'rows sum to 1': max deviation {float((row_sums - 1).abs().max()):.2e} (bound 1e-4)")
assert float(word_share.max()) < 0.15 and float(after_share.mean()) > 0.18, (
    f"claim 'the maps are flat and the tokens after the caption take much of the attention': largest word "
    f"{float(word_share.max()):.3f} (bound < 0.15), after the caption {float(after_share.mean()):.3f} (bound > 0.18)")
assert median_ratio["subject"] > 1.15 and median_ratio["background colour"] > 1.02, (
    f"claim 'the subject and background words are brighter on their parts': medians {median_ratio} "
    f"(bounds > 1.15 and > 1.02)")
assert median_ratio["hair colour"] < 1.1, (
    f"claim 'the hair colour is barely brighter on the hair': median {median_ratio['hair colour']:.2f} (bound < 1.1)")

# %% [markdown]
# When is the layout fixed? Compare each step's map of a content word with its map at the last step (the Pearson
# correlation over the 16 × 16 positions), for every content word of the `N_MAPS` captions:

# %%
per_step = torch.stack([attention.cross_maps(store, 16, steps=[s]) for s in range(STEPS)])   # (STEPS, B, 16, 16, T)
def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))
curves = np.array([[corr(per_step[s, b, :, :, i], per_step[-1, b, :, :, i]) for s in range(STEPS)]
                   for b, p in enumerate(map_prompts) for i, _ in content(p)])            # (words, STEPS)
median_curve = np.median(curves, 0)
settled = int(np.argmax(np.minimum.accumulate(median_curve[::-1])[::-1] >= 0.9))   # first step from which it stays >= 0.9
show_steps = [0, 3, 6, 9, 12, STEPS - 1]
fig = plt.figure(figsize=(8.0, 3.6), dpi=show.DPI)
left = fig.add_gridspec(3, len(show_steps) + 1, left=0.06, right=0.6, width_ratios=[1] * len(show_steps) + [0.1],
                        wspace=0.08, hspace=0.25)
for r, w in enumerate(["cat", "red", "blue"]):
    i = attention.token_index(tok, prompt, w)[0]
    vmax = float(per_step[:, 0, :, :, i].max())
    for c, s_ in enumerate(show_steps):
        ax = fig.add_subplot(left[r, c])
        im = ax.imshow(per_step[s_, 0, :, :, i], cmap="magma", vmin=0, vmax=vmax)
        ax.set_xticks([]); ax.set_yticks([])
        if r == 0:
            ax.set_title(f"step {s_}", fontsize=8)
        if c == 0:
            ax.set_ylabel(f"'{w}'", fontsize=8)
    fig.colorbar(im, cax=fig.add_subplot(left[r, len(show_steps)]))
ax = fig.add_axes([0.72, 0.14, 0.26, 0.74])
ax.fill_between(range(STEPS), *np.percentile(curves, [25, 75], 0), alpha=0.3, label="25-75% of words")
ax.plot(median_curve, label="median"); ax.axhline(0.9, color="grey", ls=":")
ax.set_xlabel("step (0 = noisiest)", fontsize=8); ax.set_ylabel("correlation with the last step's map", fontsize=8)
ax.set_title(f"{len(curves)} content words, {N_MAPS} captions", fontsize=8); ax.legend(fontsize=7)
ax.tick_params(labelsize=7)
plt.show()
display(Markdown(
    f"The maps do not settle early on toy-t2i. The median correlation with the final map is {median_curve[0]:.2f} "
    f"at step 0, {median_curve[6]:.2f} at step 6, {median_curve[9]:.2f} at step 9 and {median_curve[12]:.2f} at "
    f"step 12; it reaches 0.9 at step {settled} of {STEPS} and stays there ({settled / STEPS:.0%} of the way "
    f"through sampling). In the first steps a word's map is mostly the noise's blur; the figure's outline forms "
    f"in the middle third. So on toy-t2i the layout is *not* fixed in the first few steps, as Prompt-to-Prompt "
    f"observes for Stable Diffusion, and the injection windows (τ_c = {TAU_C}, τ_s = {TAU_S}: the first "
    f"{int(TAU_C * STEPS)} and {int(TAU_S * STEPS)} steps) reach well into the steps in which it forms."))

# %%
assert median_curve[0] < 0.5 and median_curve[6] < 0.75 and settled >= STEPS // 2, (
    f"claim 'the maps do not settle early': correlation {median_curve[0]:.2f} at step 0 (bound < 0.5), "
    f"{median_curve[6]:.2f} at step 6 (bound < 0.75), 0.9 from step {settled} (bound >= {STEPS // 2})")
assert median_curve[-2] >= 0.9, f"claim 'the maps settle before the end': correlation {median_curve[-2]:.2f} at step {STEPS - 2}"

# %% [markdown]
# ## 2. Prompt-to-Prompt on generated images
# Generate the source and the target from the same $\mathbf x_T$, as one batch, and overwrite the target's
# attention maps with the source's while the step index is below a window (counted from the noisiest step):
#
# * **replace** (word swap): all cross-attention maps for the first τ_c of the steps, the conditional branch's
#   self-attention maps for the first τ_s;
# * **refine** (added words): the maps of the words the prompts share, aligned token by token; new words keep their
#   own;
# * **re-weight**: the source's maps with one word's column scaled by a factor.
#
# `attention.edit` runs all of it in one classifier-free-guidance call per step; the processor sees the batch as
# [uncond source, uncond target, cond source, cond target] for each pair.
#
# The word swaps are `editbench.edit_pairs(N_GEN, domain="toy")`: full captions of fresh world attributes, with one
# colour (hair or background), one binary attribute (smiling, open eyes) or the subject swapped, `N_GEN` of each.
# The figure shows the first two pairs of each kind, run live; the rates are over all of them (stored).

# %%
gen_pairs = editbench.edit_pairs(N_GEN, seed=SEED, domain="toy")
n_gen = len(gen_pairs)
assert stored["replace"]["pairs"] == [[p.kind, p.source, p.target] for p in gen_pairs], \
    "the stored pairs are not these pairs: rerun notebooks/build/measure06.py"
live = [0, 1, N_GEN, N_GEN + 1] + [2 * N_GEN + k for k in range(4)]   # run live: 2 colour, 2 attribute, 4 subject
pick = live[:6]                                                  # shown here: the first 2 of each kind
g_src, g_tgt = [gen_pairs[i].source for i in live], [gen_pairs[i].target for i in live]
x_T_gen = torch.randn(n_gen, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 1))
x_T = x_T_gen[live]
rep = attention.edit(bundle, attention.Replace(tok, g_src, g_tgt, tau_c=TAU_C, tau_s=TAU_S), x_T=x_T,
                     guidance_scale=GUIDANCE, num_inference_steps=STEPS)
with torch.no_grad():                                            # the target prompt alone, same x_T
    plain = t2i.decode(bundle, t2i.denoise(bundle, x_T, t2i.encode_prompt(bundle, g_tgt),
                                           t2i.null_embedding(bundle, len(g_tgt)), GUIDANCE, STEPS)).cpu()
src_ok = editbench.reads(attr, rep.source, g_src, g_tgt)           # the unedited sample shows the source's value
live_ok = {"P2P replace": editbench.reads(attr, rep.target, g_tgt, g_src) & src_ok,
           "target prompt alone": editbench.reads(attr, plain, g_tgt, g_src) & src_ok}
# how much changes outside the swapped attribute's part (toy-seg on the source, grown by one pixel)?
gen_view = [dataclasses.replace(gen_pairs[i], image=img) for i, img in zip(live, rep.source)]
part = F.max_pool2d(editbench.attribute_regions(seg, gen_view), 3, stride=1, padding=1)
def outside_change(edited):
    keep = 1 - part
    return ((edited - rep.source).abs().mean(1, keepdim=True) * keep).flatten(1).sum(1) / keep.flatten(1).sum(1).clamp_min(1)
live_out = {"p2p": outside_change(rep.target), "plain": outside_change(plain)}
# all n_gen pairs, stored (the live ones are checked against them below)
ok = {"P2P replace": per_pair("replace", "p2p_ok"), "target prompt alone": per_pair("replace", "plain_ok")}
rate = {k: editbench.success_by_kind(gen_pairs, v) for k, v in ok.items()}
out_p2p, out_plain = per_pair("replace", "out_p2p"), per_pair("replace", "out_plain")
label = lambda k: f"{k}: succeeds on {int(ok[k].sum())} of {n_gen} pairs ({rate[k]['all']:.0%})"  # noqa: E731
show.rows([(f"source (the first 2 of each kind of {n_gen}; the unedited sample shows the source in "
            f"{int(per_pair('replace', 'src_ok').sum())} of {n_gen})", rep.source[:6]),
           (label("target prompt alone"), plain[:6]), (label("P2P replace"), rep.target[:6])], nrow=6)
plt.show()
for i in pick:
    print(f"{gen_pairs[i].kind:9s} {gen_pairs[i].word:>7s} → {gen_pairs[i].target_word}")

# %%
fewer = float((out_p2p < out_plain).float().mean())
both_fail = [i for i in pick if not ok["P2P replace"][i] and not ok["target prompt alone"][i]]
display(Markdown(
    f"On toy-t2i the target prompt alone (middle row) does *not* redraw the whole picture, as it does on Stable "
    f"Diffusion: deterministic DDIM from the same $\\mathbf x_T$ already keeps most of the layout. Outside the "
    f"swapped attribute's part (toy-seg's region on the source, grown by a pixel) its pixels move by "
    f"{float(out_plain.mean()):.3f} on average (pixel values span 2). Injecting the source's maps (bottom row) brings "
    f"this down to {float(out_p2p.mean()):.3f}, less than the prompt alone on {fewer:.0%} of the {n_gen} pairs. "
    f"The swap happens as often either way: P2P succeeds on {rate['P2P replace']['all']:.0%} of the pairs (colour "
    f"{rate['P2P replace']['colour']:.0%}, attribute {rate['P2P replace']['attribute']:.0%}, subject "
    f"{rate['P2P replace']['subject']:.0%}), the prompt alone on {rate['target prompt alone']['all']:.0%}. The "
    f"examples are the first of each kind, not the best: in {len(both_fail)} of the {len(pick)} shown (" +
    ", ".join(f"{gen_pairs[i].word} → {gen_pairs[i].target_word}" for i in both_fail) +
    ") neither method makes the swap."))

# %%
assert float(out_p2p.mean()) < 0.8 * float(out_plain.mean()) and fewer >= 0.7, (
    f"claim 'P2P changes less outside the swapped part than the prompt alone': {float(out_p2p.mean()):.3f} vs "
    f"{float(out_plain.mean()):.3f} (bound < 0.8x), less on {fewer:.0%} of pairs (bound >= 70%)")
assert float(out_plain.mean()) < 0.2, (
    f"claim 'the prompt alone keeps most of the layout': change outside the part {float(out_plain.mean()):.3f} (bound < 0.2)")
assert rate["P2P replace"]["all"] >= 0.7 and abs(rate["P2P replace"]["all"] - rate["target prompt alone"]["all"]) <= 0.15, (
    f"claim 'the swap happens, as often as with the prompt alone': P2P {rate['P2P replace']['all']:.0%} (bound >= 70%), "
    f"prompt alone {rate['target prompt alone']['all']:.0%} (bound: within 15 points)")
assert both_fail, "claim 'in some shown pairs neither method makes the swap': every shown pair succeeds; rewrite the sentence"
same(src_ok, per_pair("replace", "src_ok")[live], "the live unedited samples' readings")
for k, key in (("P2P replace", "p2p_ok"), ("target prompt alone", "plain_ok")):
    same(live_ok[k], per_pair("replace", key)[live], f"the live {k} successes")
same(live_out["p2p"], out_p2p[live], "the live P2P change outside the part")
same(live_out["plain"], out_plain[live], "the live prompt-alone change outside the part")

# %% [markdown]
# Refinement adds words: "… open eyes and glasses …". The target's tokens that the source also has take the source's
# maps (aligned word by word); the new words keep their own. `N_EXTRA` captions of random world attributes without
# glasses or a hat get glasses (even pairs) or a hat (odd pairs); the figure shows the first three of each (the
# first 6 pairs, run live; the rates are over all `N_EXTRA`, stored).

# %%
ref_attrs = world.sample_attributes(N_EXTRA, seed=SEED + 10, glasses=False, hat=False)
ref_src = [world.caption(a) for a in ref_attrs]
ref_tgt = [world.caption(world.Attributes(**{**a.as_dict(), ("glasses" if k % 2 == 0 else "hat"): True}))
           for k, a in enumerate(ref_attrs)]
assert stored["refine"]["pairs"] == [[s_, t_] for s_, t_ in zip(ref_src, ref_tgt)], \
    "the stored refinement pairs are not these: rerun notebooks/build/measure06.py"
x_T_ref = torch.randn(N_EXTRA, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 4))
N_REF_LIVE = 6                                                 # run live and shown: the first 6 pairs
ref = attention.edit(bundle, attention.Refine(tok, ref_src[:N_REF_LIVE], ref_tgt[:N_REF_LIVE], tau_c=TAU_C,
                                              tau_s=TAU_S), x_T=x_T_ref[:N_REF_LIVE],
                     guidance_scale=GUIDANCE, num_inference_steps=STEPS)
live_ref_src_ok = editbench.reads(attr, ref.source, ref_src[:N_REF_LIVE], ref_tgt[:N_REF_LIVE])
live_ref_ok = editbench.reads(attr, ref.target, ref_tgt[:N_REF_LIVE], ref_src[:N_REF_LIVE]) & live_ref_src_ok
# all N_EXTRA pairs, stored
ref_src_ok, ref_ok = per_pair("refine", "src_ok"), per_pair("refine", "ok")
ref_glasses, ref_hat = float(ref_ok[0::2].float().mean()), float(ref_ok[1::2].float().mean())
pick_ref = [0, 2, 4, 1, 3, 5]
show.rows([(f"source (the first 3 of {N_EXTRA // 2} per kind; no glasses or hat read in {int(ref_src_ok.sum())} "
            f"of {N_EXTRA})", ref.source[pick_ref]),
           (f"refine: + glasses (left 3), + a hat (right 3); succeeds on {int(ref_ok.sum())} of {N_EXTRA}",
            ref.target[pick_ref])], nrow=6)
plt.show()
# the new object's part: toy-seg's glasses or hat region on the edit (the source has none), grown by a pixel
ref_view = [editbench.EditPair("refine", img, s_, t_, "") for img, s_, t_ in zip(ref.target, ref_src, ref_tgt)]
ref_part = F.max_pool2d(editbench.attribute_regions(seg, ref_view), 3, stride=1, padding=1)
live_ref_out = (((ref.target - ref.source).abs().mean(1, keepdim=True) * (1 - ref_part)).flatten(1).sum(1)
                / (1 - ref_part).flatten(1).sum(1).clamp_min(1))
ref_out = per_pair("refine", "out")
display(Markdown(
    f"Refinement succeeds on {int(ref_ok.sum())} of the {N_EXTRA} pairs: glasses appear in {ref_glasses:.0%} and a "
    f"hat in {ref_hat:.0%} of the {N_EXTRA // 2} of each kind (success also needs the source to be read without "
    f"them, which holds for {int(ref_src_ok.sum())} of {N_EXTRA}). Outside the new object's part (toy-seg's region "
    f"on the edit, grown by a pixel) the pixels move by {float(ref_out.mean()):.3f} on average, in line with P2P's "
    f"word swaps above ({float(out_p2p.mean()):.3f})."))

# %%
assert float(ref_ok.float().mean()) >= 0.45 and min(ref_glasses, ref_hat) >= 0.3, (
    f"claim 'refinement adds the new object in about half the pairs or more': {float(ref_ok.float().mean()):.0%} "
    f"(bound >= 45%), glasses {ref_glasses:.0%}, hat {ref_hat:.0%} (bound >= 30% each)")
assert float(ref_out.mean()) < 1.6 * float(out_p2p.mean()), (
    f"claim 'refine changes the outside about as much as P2P's word swaps': {float(ref_out.mean()):.3f} vs "
    f"{float(out_p2p.mean()):.3f} (bound < 1.6x)")
same(live_ref_src_ok, ref_src_ok[:N_REF_LIVE], "the live refinement sources' readings")
same(live_ref_ok, ref_ok[:N_REF_LIVE], "the live refinement successes")
same(live_ref_out, ref_out[:N_REF_LIVE], "the live refinement change outside the part")

# %% [markdown]
# Re-weighting scales one word's column of the cross-attention maps by a factor, while i < τ_c·T (here τ_c = 1, all
# steps). Prompt-to-Prompt uses it to turn a word up or down. `N_EXTRA` short captions of random smiling world
# attributes ("a smiling cat on a blue background") are generated with 'smiling' re-weighted by `RW_SCALE` (stored);
# the figure shows the first two at several factors, run live, with toy-attr's P(smiling) over each.

# %%
rw_attrs = world.sample_attributes(N_EXTRA, seed=SEED + 20, smiling=True)
rw_prompts = [world.caption(a, drop=("hair", "skin", "eyes_open", "glasses", "hat")) for a in rw_attrs]
rw_serious = [p.replace("smiling", "serious") for p in rw_prompts]
x_T_rw = torch.randn(N_EXTRA, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 5))
def reweight(scale, n):
    ctrl = attention.Reweight(tok, rw_prompts[:n], rw_prompts[:n], word="smiling", scale=scale, tau_c=1.0, tau_s=TAU_S)
    return attention.edit(bundle, ctrl, x_T=x_T_rw[:n], guidance_scale=GUIDANCE, num_inference_steps=STEPS)
assert stored["reweight"]["prompts"] == rw_prompts, "the stored re-weighting captions are not these: rerun measure06.py"
rw = reweight(RW_SCALE, 2)                                      # run live: the first 2 (all N_EXTRA are stored)
live_rw_src_ok = editbench.reads(attr, rw.source, rw_prompts[:2], rw_serious[:2])
live_rw_ok = editbench.reads(attr, rw.target, rw_serious[:2], rw_prompts[:2]) & live_rw_src_ok
rw_src_ok, rw_ok = per_pair("reweight", "src_ok"), per_pair("reweight", "ok")
FACTORS = (-2.0, 0.0, 1.0, 3.0)
by_factor = {RW_SCALE: rw.target[:2], 1.0: rw.source[:2]}
for f_ in FACTORS:
    if f_ not in by_factor:
        by_factor[f_] = reweight(f_, 2).target
p_smile = {f_: attr.predict(by_factor[f_]).binary[:, world.BINARY.index("smiling")] for f_ in FACTORS}
fig, axes = plt.subplots(2, len(FACTORS), figsize=(1.3 * len(FACTORS) + 0.4, 3.5), dpi=show.DPI)
for c, f_ in enumerate(FACTORS):
    for r in range(2):
        axes[r, c].imshow(show.grid_array(by_factor[f_][r:r + 1], nrow=1), interpolation="nearest")
        axes[r, c].set_title(f"×{f_:g}: P(smiling) {float(p_smile[f_][r]):.2f}", fontsize=7); axes[r, c].axis("off")
fig.suptitle(f"re-weight 'smiling' (first 2 of {N_EXTRA}); at ×{RW_SCALE:g} the smile goes in "
             f"{int(rw_ok.sum())} of {N_EXTRA}", fontsize=9)
plt.tight_layout(); plt.show()
mono = all(bool((p_smile[a] <= p_smile[b] + 0.02).all()) for a, b in zip(FACTORS, FACTORS[1:]))
rw_rate = float(rw_ok.float().mean())
display(Markdown(
    f"Re-weighting is weak on toy-t2i. Over the {N_EXTRA} pairs, ×{RW_SCALE:g} turns the smile off in "
    f"{int(rw_ok.sum())} ({rw_rate:.0%}; {int(rw_src_ok.sum())} unedited samples smile). In the two examples P(smiling) "
    f"stays between {float(min(v.min() for v in p_smile.values())):.2f} and 1 at every factor, so the four "
    f"pictures look alike: ×0 removes the word's own map, yet the smile stays. Is the code at fault? No: "
    f"`tests/test_attention.py` checks that the factor reaches the target's conditional cross-attention at the "
    f"word's token, that the word's attention mass rises with the factor, and that on a sample where it works "
    f"(\"a smiling cat on a pink background\", seed 1) P(smiling) rises with it too, from below 0.5 at ×−2. The "
    f"model is the reason. A reading (a hypothesis, not measured here): toy-clip's text tower is causal, so every "
    f"token after 'smiling' (the rest of the caption, the end token and the padding, which take "
    f"{float(after_share.mean()):.0%} of the attention in §1) also carries it, and their maps are not scaled."))

# %%
assert mono, f"claim 'P(smiling) does not fall as the factor rises': {[[round(float(v), 3) for v in p_smile[f_]] for f_ in FACTORS]}"
assert float(min(v.min() for v in p_smile.values())) > 0.5, (
    f"claim 'in the two examples the smile stays at every factor': min P(smiling) "
    f"{float(min(v.min() for v in p_smile.values())):.3f} (bound > 0.5)")
assert 0.1 <= rw_rate <= 0.5, f"claim 'x{RW_SCALE:g} turns the smile off only sometimes': {rw_rate:.0%} of {N_EXTRA} (bounds 10%-50%)"
same(live_rw_src_ok, rw_src_ok[:2], "the live re-weighting sources' readings")
same(live_rw_ok, rw_ok[:2], f"the live x{RW_SCALE:g} re-weighting successes")

# %% [markdown]
# ## 3. A structural edit: does P2Plus help? (Figs. 5, 7, 8)
# Swapping the subject (person → cat, person → robot: the toy "tent → tiger") asks for a *different shape*. By the
# paper's argument, P2P copies the source's self-attention maps, and those hold the source's shape, so the edit
# fights the layout it is told to keep.
#
# Classifier-free guidance computes $\tilde\epsilon = \epsilon_\theta(\mathbf z_t, \varnothing) +
# w\,(\epsilon_\theta(\mathbf z_t, \mathbf c) - \epsilon_\theta(\mathbf z_t, \varnothing))$. P2P edits only the
# conditional term. P2Plus (§3.4, Fig. 7) also replaces the self-attention maps of the *unconditional* term by the
# source's, for the first τ_u of the steps. The unconditional prediction then carries the source's structure, and
# guidance pushes *away* from it, towards the target's: "reduce the dependence of the structure on the source
# prompt".
#
# StyleDiffusion's official code applies τ_u only when the two branches are separate UNet calls; with both in one
# batch, as diffusers runs them, its τ_u does nothing (`docs/official_code_notes.md`). Here the processor sees the
# whole batch, so τ_u acts (`tests/test_attention.py` checks that it changes the output).
#
# P2Plus on the same generated pairs as §2's P2P, from the same $\mathbf x_T$ (the rates over all of them are
# stored; the 8 pairs of §2's live batch run live); the figure shows the first four subject swaps.

# %%
p2plus = attention.edit(bundle, attention.Replace(tok, g_src, g_tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U), x_T=x_T,
                        guidance_scale=GUIDANCE, num_inference_steps=STEPS)
live_ok["P2Plus"] = editbench.reads(attr, p2plus.target, g_tgt, g_src) & src_ok
clip_score = lambda im, prompts: toyclip.clip_score(clip.model, clip.tokenizer, im, prompts).detach()  # noqa: E731
live_clip = {"p2p": clip_score(rep.target, g_tgt), "p2plus": clip_score(p2plus.target, g_tgt)}
live_plus_diff = (p2plus.target - rep.target).abs().flatten(1).mean(1)
# all n_gen pairs, stored
ok["P2Plus"] = per_pair("replace", "p2plus_ok")
rate["P2Plus"] = editbench.success_by_kind(gen_pairs, ok["P2Plus"])
subj = [i for i, p in enumerate(gen_pairs) if p.kind == "subject"]
clip_p2p, clip_plus = per_pair("replace", "clip_p2p")[subj], per_pair("replace", "clip_p2plus")[subj]
pick_s = [j for j, i in enumerate(live) if gen_pairs[i].kind == "subject"]   # positions in the live batch
show.rows([(f"source (the first {len(pick_s)} of the {len(subj)} subject swaps)", rep.source[pick_s]),
           (f"P2P: succeeds on {rate['P2P replace']['subject']:.0%} of {len(subj)} subject swaps, "
            f"{rate['P2P replace']['all']:.0%} of all {n_gen}", rep.target[pick_s]),
           (f"P2Plus (τ_u = {TAU_U}): {rate['P2Plus']['subject']:.0%} of {len(subj)} subject swaps, "
            f"{rate['P2Plus']['all']:.0%} of all {n_gen}", p2plus.target[pick_s])], nrow=len(pick_s))
plt.show()
plus_wins = float((clip_plus > clip_p2p).float().mean())
plus_diff = float(per_pair("replace", "plus_diff").mean())      # over all n_gen pairs
display(Markdown(
    f"On toy-t2i P2P does not fail the subject swaps the way Fig. 5 shows P2P failing on Stable Diffusion: it draws "
    f"the new subject in {rate['P2P replace']['subject']:.0%} of the {len(subj)} generated subject swaps, P2Plus in "
    f"{rate['P2Plus']['subject']:.0%}. With nothing to fix, P2Plus changes almost nothing: its edits differ from "
    f"P2P's by {plus_diff:.4f} per pixel on average (pixel values span 2), and its CLIP score against the target "
    f"caption beats P2P's on {plus_wins:.0%} of the subject swaps (mean {float(clip_plus.mean()):.3f} against "
    f"{float(clip_p2p.mean()):.3f}). Over all {n_gen} pairs P2Plus succeeds on {rate['P2Plus']['all']:.0%}, P2P on "
    f"{rate['P2P replace']['all']:.0%}."))

# %%
assert rate["P2P replace"]["subject"] >= 0.7 and rate["P2Plus"]["subject"] >= 0.7, (
    f"claim 'P2P and P2Plus draw the new subject on toy-t2i': {rate['P2P replace']['subject']:.0%} and "
    f"{rate['P2Plus']['subject']:.0%} of {len(subj)} (bound >= 70%)")
assert plus_diff < 0.02 and abs(float(clip_plus.mean()) - float(clip_p2p.mean())) < 0.01, (
    f"claim 'P2Plus at tau_u = {TAU_U} changes almost nothing on generated images': mean pixel difference "
    f"{plus_diff:.4f} (bound < 0.02), CLIP {float(clip_plus.mean()):.3f} vs {float(clip_p2p.mean()):.3f} (bound: within 0.01)")
assert plus_wins < 0.7, f"claim 'P2Plus does not beat P2P on subject swaps': wins {plus_wins:.0%} (the paper's direction needs >= 70%)"
same(live_ok["P2Plus"], ok["P2Plus"][live], "the live P2Plus successes")
same(live_clip["p2p"], per_pair("replace", "clip_p2p")[live], "the live P2P CLIP scores")
same(live_clip["p2plus"], per_pair("replace", "clip_p2plus")[live], "the live P2Plus CLIP scores")
same(live_plus_diff, per_pair("replace", "plus_diff")[live], "the live P2Plus-P2P pixel differences")

# %% [markdown]
# Fig. 8 sweeps τ_u: 0 is P2P; the larger τ_u, the longer the unconditional branch carries the source's structure
# and, by the paper's argument, the more freedom the target's shape gets. Here on the first two generated subject
# swaps (the measured sweep, with success rates, is on real images in §4).

# %%
TAU_US = (0.0, 0.25, 0.5, 0.75, 1.0)
two = pick_s[:2]                                                 # positions in the live batch
sweep = {0.0: rep.target[two], TAU_U: p2plus.target[two]}
for tu in TAU_US:
    if tu not in sweep:
        sweep[tu] = attention.edit(bundle, attention.Replace(tok, [g_src[i] for i in two], [g_tgt[i] for i in two],
                                                             tau_c=TAU_C, tau_s=TAU_S, tau_u=tu), x_T=x_T[two],
                                   guidance_scale=GUIDANCE, num_inference_steps=STEPS).target
sweep_change = {tu: float((sweep[tu] - sweep[0.0]).abs().mean()) for tu in TAU_US}
sweep_clip = {tu: float(clip_score(sweep[tu], [g_tgt[i] for i in two]).mean()) for tu in TAU_US}
show.grid(torch.stack([sweep[tu] for tu in TAU_US], 1).reshape(-1, 3, 32, 32), nrow=len(TAU_US), width=7.5,
          title=f"τ_u = {', '.join(map(str, TAU_US))}   (rows: the first 2 of {len(subj)} subject swaps)")
plt.show()
display(Markdown(
    "Up to τ_u = 0.75 the edits are almost the same as P2P's: the mean pixel change from P2P's edit is " +
    ", ".join(f"{sweep_change[tu]:.3f} at τ_u = {tu:g}" for tu in TAU_US[1:]) + ". Only τ_u = 1 changes the "
    f"picture ({sweep_change[1.0]:.3f}), and not towards the target: the mean CLIP score of these two is "
    f"{sweep_clip[1.0]:.3f} at τ_u = 1 against {sweep_clip[0.0]:.3f} for P2P. A reading of "
    f"why (a hypothesis): source and target start from the same $\\mathbf x_T$, so for most of sampling their "
    f"latents, and hence their unconditional self-attention maps, are nearly the same, and replacing one by the other "
    f"changes little; the maps differ enough to matter only in the last steps, which only τ_u = 1 reaches."))

# %%
assert max(sweep_change[tu] for tu in TAU_US if 0 < tu <= 0.75) < 0.02 and sweep_change[1.0] > 2 * max(
    sweep_change[tu] for tu in TAU_US if 0 < tu <= 0.75), (
    f"claim 'only tau_u = 1 changes the picture': mean change from P2P {sweep_change} (bounds: < 0.02 up to 0.75, "
    f"and tau_u = 1 more than twice the largest of those)")
assert sweep_clip[1.0] <= sweep_clip[0.0], (
    f"claim 'tau_u = 1 does not move the edit towards the target': CLIP {sweep_clip[1.0]:.3f} vs P2P {sweep_clip[0.0]:.3f}")

# %% [markdown]
# ## 4. Real images and Table 2 in miniature
# For a real image there is no $\mathbf x_T$ to share: invert it first. Null-text inversion (notebook 02) gives
# $\mathbf x_T$ and a per-step unconditional embedding $\varnothing_t$ that make guided DDIM retrace the image; the
# edit then runs source and target from that $\mathbf x_T$ with the same $\varnothing_t$.
#
# `editbench` builds pairs from fresh `photo` images (held out from every model's training): colour swaps
# (hair or background), attribute swaps (smiling ↔ serious, open ↔ closed eyes) and subject swaps, `N_PER_KIND`
# of each (3; `tests/test_p2plus_bars.py` runs 10 of each). It runs four methods on the same pairs, sharing the
# inversions, in batches of one pair per kind (null-text inversion's optimiser reads the batch's mean loss, so a
# pair's inversion depends on its batch); SDEdit, which draws one batch of noise, runs on all the pairs at once
# (seconds). The notebook runs the first batch live, the first pair of each kind, and loads the table's numbers for
# all `3 * N_PER_KIND` pairs from the stored file:
#
# | method | what it does |
# | --- | --- |
# | DDIM inversion + word swap | DDIM-invert under the source caption (w = 1), sample with the target caption |
# | SDEdit | noise the image to 60% of T, denoise with the target caption |
# | Null-text + P2P | null-text inversion, then Prompt-to-Prompt replace with local blending on the edited word |
# | Null-text + P2Plus | the same with τ_u |
#
# Local blending (Prompt-to-Prompt §3.2) keeps the source's latent outside the region where the edited word and
# its replacement attend; toy-t2i's flat maps need a min-max normalisation before the threshold.
#
# Each edit is scored against its source image:
#
# * **edit success**: toy-attr reads the target's value of the swapped attribute in the edit.
# * **structure distance** (Tumanyan et al.): mean squared difference of the self-similarity matrices of deep
#   features. The paper uses DINO-ViT keys; here toy-attr's 16 × 16 features. Lower keeps the layout.
# * **NS-LPIPS**: perceptual distance *outside* the edited region; the region is the edited word's
#   cross-attention map recorded during DDIM inversion, min-max normalised and binarised at 0.5. Lower leaves the
#   rest alone.
# * **CLIP score** against the target caption (toy-clip's cosine). Higher follows the text.
#
# The *unedited source* row scores the photo itself: it keeps everything and edits nothing, so structure distance
# and NS-LPIPS are 0, and only the success column tells it apart from a good edit.

# %%
pairs = editbench.edit_pairs(N_PER_KIND, seed=SEED)
n_pairs = len(pairs)
st2 = stored["table2"]
assert st2["pairs"] == [[p.kind, p.source, p.target] for p in pairs], \
    "the stored Table 2 pairs are not these: rerun notebooks/build/measure06.py"
live2 = st2["chunks"][0]                                       # run live: the first pair of each kind
lp = [pairs[i] for i in live2]
l_sources, l_targets = [p.source for p in lp], [p.target for p in lp]
# notebook 05's row: StyleDiffusion + P2Plus from its shipped inversion of exactly these pairs (when they match)
extra, methods, sd_missing = {}, editbench.METHODS, "it exists only for the default pairs (N_PER_KIND = 3, SEED = 0)"
if MODE == "toy" and (N_PER_KIND, SEED, STEPS) == (3, 0, 20):
    try:
        sd_inv = stylediffusion.subset(stylediffusion.load_shipped("table2-film"), live2)
        extra = {"stylediffusion": lambda b, ps, _null: stylediffusion.p2plus_edit(
            b, sd_inv, ps, tau_v=0.6, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U).target}
        methods, sd_missing = editbench.METHODS + ("stylediffusion",), None
    except zoo.ManifestError as err:                 # shipped for an earlier toy-t2i: refused, not used
        sd_missing = str(err).split(":")[0]
t0 = time.perf_counter()
sdedit_all = editbench.sdedit(bundle, torch.stack([p.image for p in pairs]), [p.target for p in pairs], 0.6,
                              GUIDANCE, STEPS, torch.Generator().manual_seed(SEED))     # noise to 60% of T
run = editbench.run_methods(bundle, lp, methods=tuple(m for m in methods if m != "sdedit"), guidance_scale=GUIDANCE,
                            num_inference_steps=STEPS, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U, sdedit_strength=0.6,
                            null_inner_steps=NULL_INNER, null_lr=NULL_LR, seed=SEED, extra=extra)
run.results["sdedit"] = editbench.MethodResult("sdedit", sdedit_all[live2])
run.results = {m: run.results[m] for m in methods}                # the table's order
live_scores = editbench.score(run, trunk, clip, perceptual, with_source=True)
l_photos = torch.stack([p.image for p in lp])
l_edited = {"source": l_photos, **{m: r.edited for m, r in run.results.items()}}
live_success = {m: editbench.reads(attr, e, l_targets, l_sources) for m, e in l_edited.items()}
print(f"{len(lp)} pairs live, {len(run.results)} methods: {time.perf_counter() - t0:.0f} s; null-text reconstruction "
      f"PSNR {metrics.psnr(l_photos, run.results['p2p'].reconstruction).mean():.1f} dB (all {n_pairs} pairs: "
      f"{np.mean([r['psnr'] for r in st2['per_pair']]):.1f} dB)")
# every pair's numbers, stored: the table's rows are the methods run here
T2 = st2["per_pair"]
stored_col = lambda m, key: torch.tensor([r[m][key] for r in T2])  # noqa: E731
scores = {m: editbench.Scores(stored_col(m, "structure"), stored_col(m, "ns_lpips"), stored_col(m, "clip"))
          for m in l_edited}
success_ok = {m: stored_col(m, "ok") for m in l_edited}
success = {m: editbench.success_by_kind(pairs, v) for m, v in success_ok.items()}

# %%
seg_part = editbench.attribute_regions(seg, lp)
cols = [("photo", l_photos), ("edited region\n(attention,\nfor NS-LPIPS)", run.regions.repeat(1, 3, 1, 1) * 2 - 1),
        ("toy-seg's part\nof the swapped\nattribute", seg_part.repeat(1, 3, 1, 1) * 2 - 1)]
cols += [(textwrap.fill(editbench.METHOD_NAMES[m], 14) + f"\nsucceeds on\n{int(success_ok[m].sum())} of {n_pairs}",
          run.results[m].edited) for m in run.results]
fig, axes = plt.subplots(len(lp), len(cols), figsize=(1.05 * len(cols) + 0.6, 1.1 * len(lp) + 1.0), dpi=show.DPI,
                         squeeze=False)
for c, (title, imgs) in enumerate(cols):
    axes[0, c].set_title(title, fontsize=7)
    for r in range(len(lp)):
        axes[r, c].imshow(show.grid_array(imgs[r:r + 1], nrow=1), interpolation="nearest")
        axes[r, c].set_xticks([]); axes[r, c].set_yticks([])
for r, p in enumerate(lp):
    axes[r, 0].set_ylabel(f"{p.kind}\n{p.word} → {p.target_word}", fontsize=7)
fig.suptitle(f"Table 2's first pair of each kind (run live); success counts over all {n_pairs} pairs", fontsize=8)
plt.tight_layout(); plt.show()
for p in lp:
    print(f"{p.kind:9s} {p.word:>8s} → {p.target_word}")

# %%
table = editbench.summarise(SimpleNamespace(pairs=pairs), scores)
display(Markdown(editbench.markdown_table(table, perceptual.name, success)))

# %%
for m in l_edited:                                   # the live batch gives the stored numbers
    same(live_success[m], success_ok[m][live2], f"the live {m} successes")
    for key in ("structure", "ns_lpips", "clip"):
        same(getattr(live_scores[m], key), stored_col(m, key)[live2], f"the live {m} {key}")

# %% [markdown]
# Does the edited region behind NS-LPIPS cover the edited word's part of the image? Compare it with toy-seg's
# region of the swapped attribute on the source photo (hair, background, mouth, eyes, or the whole figure for a
# subject swap): *coverage* is the share of toy-seg's part inside the region, *precision* the share of the region
# on the part.

# %%
live_ov = editbench.region_overlap(run.regions, seg_part)           # the live batch
ov = {k: torch.tensor([r[k] for r in T2]) for k in live_ov}       # all n_pairs, stored
kinds = np.array([p.kind for p in pairs])
ov_kind = {k: {m: float(v[torch.from_numpy(kinds == k)].mean()) for m, v in ov.items()} for k in editbench.KINDS}
display(Markdown("| kind | coverage | precision | IoU |\n| --- | --- | --- | --- |\n" + "\n".join(
    f"| {k} | {o['coverage']:.0%} | {o['precision']:.0%} | {o['iou']:.2f} |" for k, o in ov_kind.items()) +
    f"\n| all | {float(ov['coverage'].mean()):.0%} | {float(ov['precision'].mean()):.0%} | {float(ov['iou'].mean()):.2f} |"))
live_ns_seg = {m: editbench.ns_lpips(perceptual, l_photos, e.clamp(-1, 1), seg_part) for m, e in l_edited.items()}
ns_seg = {m: float(stored_col(m, "ns_seg").mean()) for m in l_edited}
display(Markdown(
    f"The attention region covers {float(ov['coverage'].mean()):.0%} of toy-seg's part on average (colour "
    f"{ov_kind['colour']['coverage']:.0%}, attribute {ov_kind['attribute']['coverage']:.0%}, subject "
    f"{ov_kind['subject']['coverage']:.0%}), and {float(ov['precision'].mean()):.0%} of the region lies on the part. "
    f"So the region does contain the edited part, but for the attribute swaps (mouth, eyes: a few pixels) it is much "
    f"larger than the part ({ov_kind['attribute']['precision']:.0%} of it lies on the part), and NS-LPIPS then "
    f"ignores a wide area around the face. With toy-seg's part as the edited region instead, NS-LPIPS reads " +
    ", ".join(f"{editbench.METHOD_NAMES[m]} {v:.4f}" for m, v in ns_seg.items() if m != "source") +
    ": close to the table's values."))

# %%
assert float(ov["coverage"].mean()) >= 0.6, (
    f"claim 'the attention region covers most of the edited part': coverage {float(ov['coverage'].mean()):.0%} (bound >= 60%)")
assert ov_kind["attribute"]["precision"] < 0.3 < ov_kind["subject"]["precision"], (
    f"claim 'for attribute swaps the region is much larger than the mouth or eyes': precision "
    f"{ov_kind['attribute']['precision']:.0%} (bound < 30%), subject {ov_kind['subject']['precision']:.0%} (bound > 30%)")
assert all(abs(ns_seg[m] - table[m]["all"][1]) < 0.15 * max(table[m]["all"][1], 1e-3) for m in run.results), (
    f"claim 'NS-LPIPS with toy-seg's part is close to NS-LPIPS with the attention region': seg {ns_seg}, "
    f"attention { {m: table[m]['all'][1] for m in run.results} } (bound: within 15%)")
for k in live_ov:
    same(live_ov[k], ov[k][live2], f"the live region {k}")
for m in l_edited:
    same(live_ns_seg[m], stored_col(m, "ns_seg")[live2], f"the live {m} NS-LPIPS with toy-seg's part")

# %% [markdown]
# **Reading the table.** The paper's numbers (right) come from Stable Diffusion on 512-pixel photographs with
# LPIPS-alex, DINO and CLIP ViT-B; ours from 32-pixel toy images with toy networks, so compare the *order* of the
# rows, not the values.

# %%
has_sd = "stylediffusion" in table
edits = [m for m in table if m != "source"]
best = lambda i, key=min: key(edits, key=lambda m: table[m]["all"][i])  # noqa: E731
name = lambda m: editbench.METHOD_NAMES[m]  # noqa: E731
T = {m: table[m]["all"] for m in table}
display(Markdown(
    f"* **Edit success first.** The unedited source reads as the target in {success['source']['all']:.0%} of the "
    f"pairs, as it should; DDIM word swap succeeds on {success['ddim']['all']:.0%}, SDEdit on "
    f"{success['sdedit']['all']:.0%}, null-text + P2P on {success['p2p']['all']:.0%} and null-text + P2Plus on "
    f"{success['p2plus']['all']:.0%}" + (f", StyleDiffusion + P2Plus on {success['stylediffusion']['all']:.0%}" if has_sd
                                           else "") + ". So the fidelity columns compare edits that mostly happened.\n"
    f"* **Keeping the image: the paper's order.** Null-text + P2P keeps more than DDIM word swap and SDEdit: structure "
    f"distance {T['p2p'][0]:.4f} against {T['ddim'][0]:.4f} and {T['sdedit'][0]:.4f}, NS-LPIPS {T['p2p'][1]:.3f} "
    f"against {T['ddim'][1]:.3f} and {T['sdedit'][1]:.3f}. The gap is smaller than the paper's (NS-LPIPS "
    f"{T['p2p'][1] / T['ddim'][1]:.2f} of DDIM word swap's, the paper's 0.36): toy-LPIPS is not calibrated like "
    f"LPIPS-alex, and on 32-pixel images the edited word's region is a large share of the picture.\n"
    f"* **Following the text: not the paper's order.** The paper has DDIM word swap's CLIP score highest (81.9%, "
    f"SDEdit 78.0%). Here {name(best(2, max))} has the highest ({T[best(2, max)][2]:.3f}), and DDIM word swap "
    f"({T['ddim'][2]:.3f}) is below SDEdit ({T['sdedit'][2]:.3f}).\n"
    f"* **SDEdit's place differs from the paper's.** In the paper SDEdit sits between DDIM word swap and null-text on "
    f"both fidelity measures. Here its structure distance is between them ({T['sdedit'][0]:.4f}), but its NS-LPIPS "
    f"is the worst of all rows ({T['sdedit'][1]:.3f}, DDIM word swap {T['ddim'][1]:.3f}): noising to 60% of T and "
    f"denoising redraws the background and the textures outside the edited word, which is what NS-LPIPS measures, "
    f"while the self-similarity of toy-attr's features follows the coarse layout, which 60% of T keeps.\n" +
    (f"* **StyleDiffusion + P2Plus** (notebook 05's shipped inversion of these {n_pairs} pairs) keeps the most: the "
     f"lowest structure distance ({T['stylediffusion'][0]:.4f}) and NS-LPIPS ({T['stylediffusion'][1]:.3f}), as in the "
     f"paper, and, as in the paper, a higher CLIP score than null-text + P2P ({T['stylediffusion'][2]:.3f} against "
     f"{T['p2p'][2]:.3f}). It also succeeds least often ({success['stylediffusion']['all']:.0%}): at the official "
     f"τ_v = 0.6 its edits act only in the last 40% of the steps (notebook 05, §7), which is much of why it keeps so "
     f"much, and sometimes too much."
     if has_sd else
     f"* **StyleDiffusion + P2Plus** is missing from this run: {sd_missing}. Notebook 05 recomputes it.")))

# %%
assert success["source"]["all"] <= 0.15, (
    f"claim 'the unedited source does not read as the target': {success['source']['all']:.0%} (bound <= 15%)")
assert min(success[m]["all"] for m in ("ddim", "sdedit", "p2p", "p2plus")) >= 0.7, (
    f"claim 'the edits mostly happened': success { {m: round(success[m]['all'], 2) for m in edits} } (bound >= 70%)")
assert T["p2p"][0] < min(T["ddim"][0], T["sdedit"][0]) and T["p2p"][1] < min(T["ddim"][1], T["sdedit"][1]), (
    f"claim 'null-text + P2P keeps more than DDIM word swap and SDEdit': structure {T['p2p'][0]:.4f} vs "
    f"{T['ddim'][0]:.4f} / {T['sdedit'][0]:.4f}, NS-LPIPS {T['p2p'][1]:.3f} vs {T['ddim'][1]:.3f} / {T['sdedit'][1]:.3f}")
assert T["p2p"][1] / T["ddim"][1] > 0.5, (
    f"claim 'the NS-LPIPS gap is smaller than the paper's': P2P / DDIM = {T['p2p'][1] / T['ddim'][1]:.2f} (bound > 0.5)")
assert T["ddim"][2] < T["sdedit"][2] and best(2, max) != "ddim", (
    f"claim (disagreement with the paper) 'DDIM word swap's CLIP score is not the highest; SDEdit's is above it': "
    f"{ {m: round(T[m][2], 3) for m in edits} }")
assert T["ddim"][0] > T["sdedit"][0] > T["p2p"][0] and T["sdedit"][1] > T["ddim"][1], (
    f"claim 'SDEdit: structure between DDIM and null-text (as in the paper), NS-LPIPS the worst (not as in the paper)': "
    f"structure {T['ddim'][0]:.4f} / {T['sdedit'][0]:.4f} / {T['p2p'][0]:.4f}, NS-LPIPS SDEdit {T['sdedit'][1]:.3f} "
    f"vs DDIM {T['ddim'][1]:.3f}")
assert max(T[m][1] for m in edits) == T["sdedit"][1], f"claim 'SDEdit's NS-LPIPS is the worst': { {m: round(T[m][1], 3) for m in edits} }"
if has_sd:
    assert best(0) == "stylediffusion" and best(1) == "stylediffusion", (
        f"claim 'StyleDiffusion + P2Plus keeps the most': structure { {m: round(T[m][0], 4) for m in edits} }, "
        f"NS-LPIPS { {m: round(T[m][1], 3) for m in edits} }")
    assert T["stylediffusion"][2] > T["p2p"][2], (
        f"claim 'StyleDiffusion's CLIP score is above null-text + P2P's, as in the paper': {T['stylediffusion'][2]:.3f} "
        f"vs {T['p2p'][2]:.3f}")
    assert success["stylediffusion"]["all"] == min(success[m]["all"] for m in edits), (
        f"claim 'StyleDiffusion + P2Plus succeeds least often': { {m: round(success[m]['all'], 2) for m in edits} }")

# %% [markdown]
# ### P2Plus against P2P on real images: the τ_u sweep, with and without local blending
# The paper's claim (Figs. 5, 8, 14) is that P2Plus follows structural edits better than P2P. Here, on this run's
# photo subject swaps with the shared null-text inversion, τ_u is swept with local blending (as in Table 2) and
# without it.

# %%
subj_p = [j for j, p in enumerate(lp) if p.kind == "subject"]   # the live batch's subject swap
null = run.null_text
sp = [lp[j] for j in subj_p]
sp_src, sp_tgt = [p.source for p in sp], [p.target for p in sp]
def photo_edit(tu, blend):
    lb = attention.LocalBlend(tok, sp_src, sp_tgt, [[p.word, p.target_word] for p in sp]) if blend else None
    ctrl = attention.Replace(tok, sp_src, sp_tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=tu, local_blend=lb)
    return attention.edit(bundle, ctrl, x_T=null.x_T[subj_p], guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                          null_embeddings=[n[subj_p] for n in null.null_embeddings]).target
live_sweep = {(1.0, blend): photo_edit(1.0, blend) for blend in (True, False)}   # run live: tau_u = 1
# every subject swap of Table 2 (from its batch's null-text inversion), stored
sw = st2["sweep"]
sp_all = [pairs[i] for i in sw["pairs"]]
p_rows = {}
for key in sw["per_pair"][0]:
    tu, blend = float(key.split("|")[0]), key.endswith("|1")
    col = lambda k: torch.tensor([r[key][k] for r in sw["per_pair"]])  # noqa: E731
    p_rows[(tu, blend)] = (float(col("ok").float().mean()), float(col("clip").mean()), float(col("structure").mean()),
                           col("clip"))
base = {True: p_rows[(0.0, True)][3], False: p_rows[(0.0, False)][3]}
display(Markdown(f"| τ_u | local blending | success (of {len(sp_all)}) | CLIP score ↑ | beats P2P's CLIP on | structure dist. ↓ |\n"
                 "| --- | --- | --- | --- | --- | --- |\n" + "\n".join(
    f"| {tu:g}{' (P2P)' if tu == 0 else ''} | {'yes' if blend else 'no'} | {s:.0%} | {c:.3f} | "
    f"{'–' if tu == 0 else f'{float((cl > base[blend]).float().mean()):.0%}'} | {d:.4f} |"
    for (tu, blend), (s, c, d, cl) in sorted(p_rows.items(), key=lambda kv: (not kv[0][1], kv[0][0])))))

# %%
P = {k: v[:3] for k, v in p_rows.items()}
gain_half = P[(TAU_U, True)][1] - P[(0.0, True)][1]
gain_one = P[(1.0, True)][1] - P[(0.0, True)][1]
display(Markdown(
    f"On these {len(sp_all)} photo subject swaps, P2Plus at the default τ_u = {TAU_U} changes the CLIP score by "
    f"{gain_half:+.3f} with local blending ({P[(TAU_U, False)][1] - P[(0.0, False)][1]:+.3f} without): no gain, as "
    f"on the generated images of §3. The score rises only with the longest windows: {gain_one:+.3f} at τ_u = 1 with "
    f"blending, with a larger structure distance ({P[(1.0, True)][2]:.4f} against {P[(0.0, True)][2]:.4f}). Without "
    f"blending τ_u = 1 changes the structure more ({P[(1.0, False)][2]:.4f}) and succeeds on "
    f"{P[(1.0, False)][0]:.0%}. So few pairs prove little; `tests/test_p2plus_bars.py` measures the default τ_u on the 10 "
    f"subject swaps of its 30 pairs against a bar of its own: P2Plus's CLIP score should beat P2P's on at least 7 of "
    f"10. That 70% is this repository's bar, not the paper's: the paper shows P2Plus's CLIP score above P2P's on "
    f"each of Fig. 5's three examples (87.2% against 84.2%, 78.4% against 77.6%, 78.6% against 70.8%) and reports "
    f"no rate over many pairs. On toy-t2i the bar is not met (a strict expected failure; its reason gives the "
    f"measured numbers), and the paper's claim for P2Plus is not reproduced here: P2P already follows the subject "
    f"swaps, so there is no structural failure for P2Plus to fix."))

# %%
assert abs(gain_half) < 0.02, f"claim 'no gain at the default tau_u on photo subject swaps': {gain_half:+.3f} (bound |.| < 0.02)"
assert gain_one > 0.02 and P[(1.0, True)][2] > P[(0.0, True)][2], (
    f"claim 'tau_u = 1 with blending raises CLIP, at a larger structure distance': {gain_one:+.3f} (bound > 0.02), "
    f"structure {P[(1.0, True)][2]:.4f} vs {P[(0.0, True)][2]:.4f}")
assert P[(1.0, False)][2] > P[(1.0, True)][2], (
    f"claim 'without blending tau_u = 1 changes the structure more': {P[(1.0, False)][2]:.4f} vs {P[(1.0, True)][2]:.4f}")
k_live = [sw["pairs"].index(live2[j]) for j in subj_p]        # the live subject swap among the stored ones
for (tu, blend), e in live_sweep.items():
    r = [sw["per_pair"][k][f"{tu:g}|{int(blend)}"] for k in k_live]
    same(editbench.reads(attr, e, sp_tgt, sp_src), torch.tensor([x["ok"] for x in r]), f"live tau_u = {tu:g} success")
    same(clip_score(e, sp_tgt), torch.tensor([x["clip"] for x in r]), f"live tau_u = {tu:g} CLIP score")
    same(editbench.structure_distance(trunk, l_photos[subj_p], e.clamp(-1, 1)),
         torch.tensor([x["structure"] for x in r]), f"live tau_u = {tu:g} structure distance")

# %% [markdown]
# The rise at τ_u = 1 on three pairs does not hold up on more: on the 10 subject swaps of
# `tests/test_p2plus_bars.py`, swept the same way for issue 14 (the numbers are in that test's comment), no τ_u makes
# P2Plus's CLIP score beat P2P's on 7 of 10 with local blending, and τ_u = 1 lowers the mean CLIP score there.
# The finding held for both toy-t2i checkpoints the course has shipped: at the default τ_u, P2Plus beats P2P on 3 of
# the 10 with the 4,459-step model (mean CLIP 0.7267 against 0.7276) and did on 4 of 10 with the 2,000-step one
# (0.736 against 0.737), as that test's comment records; those runs are not repeated here, since each takes minutes.

# %% [markdown]
# ## 5. Try it: the windows, the weight and the guidance
# Move the sliders: τ_c and τ_s (how long P2P injects), τ_u (P2Plus; 0 is P2P), the re-weight factor of 'smiling'
# (a word both pairs share), and the guidance scale. The picture shows source, then target, for a colour swap and a
# subject swap of generated images. Moving a τ changes what happens only from step min(old, new)·T on, so the
# redraw resumes there from the last drawing's latents (`attention.EditCache`; the images are a full run's, bit for
# bit, as `tests/test_attention.py` checks). The re-weight factor and the guidance scale act from the first step,
# so they redraw everything. The status line under the picture gives each redraw's time.

# %%
x_T_s = torch.randn(2, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED + 3))
s_src = ["a smiling person with black hair on a yellow background"] * 2
s_tgt2 = ["a smiling person with red hair on a yellow background", "a smiling cat with black fur on a yellow background"]
reuse = attention.EditCache()          # the last drawing's latents, step by step

def redraw(tau_c, tau_s, tau_u, weight, w):
    ctrl = attention.Reweight(tok, s_src, s_tgt2, word="smiling", scale=weight, tau_c=tau_c, tau_s=tau_s, tau_u=tau_u)
    out = attention.edit(bundle, ctrl, x_T=x_T_s, guidance_scale=w, num_inference_steps=STEPS, cache=reuse)
    return torch.stack([out.source, out.target], 1).reshape(-1, 3, 32, 32)

widgets.interactive_grid(redraw, nrow=4, scale=5,
                         tau_c=widgets.slider(0.0, 1.0, 0.1, TAU_C, "τ_c"),
                         tau_s=widgets.slider(0.0, 1.0, 0.1, TAU_S, "τ_s"),
                         tau_u=widgets.slider(0.0, 1.0, 0.1, TAU_U, "τ_u"),
                         weight=widgets.slider(-2.0, 4.0, 0.5, 1.0, "'smiling' ×"),
                         w=widgets.slider(1.0, 10.0, 0.5, GUIDANCE, "guidance"))

# %% [markdown]
# ## Real mode
# Set `MODE = "real"` on a GPU machine with network: toy-t2i becomes `CompVis/stable-diffusion-v1-4` (latent space,
# 64 × 64 latents; the same `attention` processors hook its 16 attention layers), toy-clip becomes CLIP ViT-B/16,
# the perceptual metric LPIPS-alex, and toy-attr and toy-seg become CLIP zero-shot attributes and a face parser. The
# `photo` pairs stay toy images upsampled to 512 pixels; put your own images and captions into
# `editbench.EditPair`s for real photographs. Use `STEPS = 50`, `GUIDANCE = 7.5` and the official τ defaults
# (τ_c = 0.6, τ_s = 0.8, τ_u = 0.5). The check cells assert what toy-t2i does; on Stable Diffusion read them as
# questions. The stored rates (`data/measured/06_p2plus.json`) are toy mode's: in real mode, read the live cells'
# numbers instead, or run `notebooks/build/measure06.py`'s calls on the real models.
#
# ## Summary
# * Cross-attention maps (Eq. 4) say where each word is drawn; each row is a distribution over tokens. On toy-t2i
#   they are flat, and the layout forms in the middle of sampling, not in its first steps.
# * Prompt-to-Prompt edits by generating source and target together and injecting the source's maps for the first
#   τ_c (cross) and τ_s (self) of the steps; replace, refine and re-weight differ only in how the cross-attention
#   maps are carried over. On toy-t2i re-weighting is weak: a word's own map is a small part of how the model reads
#   it, so ×0 leaves it and even a negative factor removes it only sometimes.
# * P2Plus also injects the unconditional branch's self-attention for the first τ_u of the steps; guidance then
#   pushes away from the source's structure. It needs an attention processor that sees the whole guided batch. On
#   toy-t2i it changes little up to τ_u = 0.75, because P2P does not fail the subject swaps here.
# * Table 2's numbers pull against each other, and mean nothing without the success column: the unedited source
#   has perfect structure distance and NS-LPIPS.
#
# ## Exercises
# 1. Set τ_s = 1 and τ_u = 1 in the slider cell. What does the subject swap look like, and why?
# 2. Local blending: pass `local_blend=attention.LocalBlend(tok, s_src, s_tgt2, words=["black", "red"])` to the
#    colour swap of the slider cell. What changes outside the hair?
# 3. Re-weight 'smiling' by −2 in the full captions of `world.caption(a)` instead of the short ones of §2. Does the
#    smile go as often? (Think about the causal text encoder: how many tokens after 'smiling' carry it?)
# 4. Table 2 uses one τ_u for every pair. Find, for the photo subject pairs, the τ_u with the highest mean CLIP score,
#    and report its structure distance and success rate. Is there a τ_u that wins on all three?
# 5. Replace null-text inversion by negative-prompt inversion (`inversion.negative_prompt_invert`) for the P2P row.
#    What happens to the time and to the four numbers?
