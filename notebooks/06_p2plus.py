# %% [markdown]
# # 06 · Attention control: Prompt-to-Prompt and P2Plus
#
# **After this notebook you can** read *where* a text-to-image model puts each word from its cross-attention maps,
# edit a generated or a real image by changing its caption while injecting the source's attention maps
# (Prompt-to-Prompt: replace, refine, re-weight), switch on P2Plus's extra injection into the *unconditional*
# branch and sweep its window τ_u, and measure edits the way StyleDiffusion's Table 2 does: structure distance,
# NS-LPIPS and CLIP score.
#
# This is the second contribution of Li et al., *StyleDiffusion: Prompt-Embedding Inversion for Text-Based
# Editing* (§3.4, Figs. 5, 7, 8, 11, Table 2), on Prompt-to-Prompt (Hertz et al. 2022), in miniature: toy-t2i
# (32 × 32 pixels, toy-clip's text tower) stands in for Stable Diffusion. Notebook 02 built null-text inversion,
# which §4 uses for real images; notebook 05 builds StyleDiffusion, whose row (from its shipped inversion of the
# same pairs) joins the table in §4.

# %%
import time

import matplotlib.pyplot as plt
import torch

from diffnb import attention, editbench, inversion, metrics, show, stylediffusion, t2i, toyclip, widgets, zoo

# %% [markdown]
# ## Settings
# `MODE = "real"` swaps toy-t2i for Stable Diffusion 1.4, toy-clip for CLIP ViT-B/16 and the toy perceptual metric
# for LPIPS-alex (a GPU and about 6 GB of downloads; see the last section).

# %%
MODE = "toy"                 # "toy" (offline, CPU) or "real" (GPU + network)
SEED = 0
STEPS = 20                   # DDIM steps (the paper: 50)
GUIDANCE = 5.0               # classifier-free guidance w (the paper: 7.5)
TAU_C, TAU_S = 0.6, 0.8      # P2P: inject cross-attention for the first 60% of steps, self-attention for 80%
TAU_U = 0.5                  # P2Plus: inject the unconditional branch's self-attention for the first 50%
                             # (all three are the official StyleDiffusion code's defaults)
N_PER_KIND = 3               # Table 2 pairs per edit kind (colour, attribute, subject); the fast default.
                             # 10 gives the 30 pairs (about 3 minutes; tests/test_p2plus_bars.py runs them)
NULL_INNER, NULL_LR = 4, 5e-2   # null-text inversion (notebook 02's fast setting)
DEVICE = zoo.get_device()
bundle = zoo.load({"toy": "toy-t2i", "real": "sd-1.4"}[MODE], device=DEVICE)
clip = zoo.load({"toy": "toy-clip", "real": "clip-vit-b16"}[MODE], device=DEVICE)
attr = zoo.load("toy-attr").model                         # the trunk of the structure distance (toy mode)
perceptual = metrics.toy_lpips(attr) if MODE == "toy" else metrics.real_lpips()
tok = bundle.tokenizer
print(bundle.source, "|", clip.source, "|", perceptual.name)

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
# but passes $\mathbf a$ through a *controller* first. `AttentionStore` is the controller that only records.

# %%
prompt = "a smiling cat with red fur and glasses on a blue background"
x_T = torch.randn(1, *t2i.latent_shape(bundle), generator=torch.Generator().manual_seed(SEED))
image, store = attention.record(bundle, [prompt], x_T=x_T, guidance_scale=GUIDANCE, num_inference_steps=STEPS)
maps = attention.cross_maps(store, res=16)                    # (1, 16, 16, tokens), averaged over layers and steps
print("sum over tokens: min", float(maps.sum(-1).min()), "max", float(maps.sum(-1).max()))
words = toyclip.words(tok, prompt)
fig, axes = plt.subplots(1, len(words) + 1, figsize=(1.3 * (len(words) + 1), 1.6))
axes[0].imshow(show.grid_array(image, nrow=1)); axes[0].set_title("image", fontsize=8)
for ax, (i, w) in zip(axes[1:], enumerate(words)):
    m = maps[0, :, :, i + 1]
    ax.imshow(m, cmap="magma"); ax.set_title(w, fontsize=8)
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# Each row of $\mathbf a$ sums to 1 over the tokens (the printout: a check that the processor records what the
# softmax made). toy-t2i's maps are much flatter than Stable Diffusion's: every token gets 3-5% of the attention
# almost everywhere, and the start token takes the most (as in Stable Diffusion). Still the subject and colour words
# are brighter where their part is drawn. The same maps over the steps, for three words, show that the layout is
# settled within the first third of sampling:

# %%
steps = [0, STEPS // 4, STEPS // 2, STEPS - 1]
fig, axes = plt.subplots(3, len(steps), figsize=(1.5 * len(steps), 4.6))
for r, w in enumerate(["cat", "red", "blue"]):
    i = attention.token_index(tok, prompt, w)[0]
    for c, s in enumerate(steps):
        axes[r, c].imshow(attention.cross_maps(store, 16, steps=[s])[0, :, :, i], cmap="magma")
        axes[r, c].set_title(f"{w}, step {s}", fontsize=8); axes[r, c].axis("off")
plt.tight_layout(); plt.show()

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

# %%
g = torch.Generator().manual_seed(SEED + 1)
x_T = torch.randn(3, *t2i.latent_shape(bundle), generator=g)
src = ["a smiling person with black hair on a blue background"] * 3
tgt = ["a smiling person with red hair on a blue background",
       "a smiling person with black hair on a pink background",
       "a serious person with black hair on a blue background"]
rep = attention.edit(bundle, attention.Replace(tok, src, tgt, tau_c=TAU_C, tau_s=TAU_S), x_T=x_T,
                     guidance_scale=GUIDANCE, num_inference_steps=STEPS)
plain, _ = attention.record(bundle, tgt, x_T=x_T, guidance_scale=GUIDANCE, num_inference_steps=STEPS)
show.rows([("source", rep.source), ("target prompt alone", plain), ("P2P replace", rep.target)], nrow=3)
plt.show()
print(" | ".join(t.split(" with ")[1] for t in tgt))

# %% [markdown]
# The target prompt alone (middle row) redraws the whole picture: same noise, different face. With the source's
# maps injected (bottom row) the layout stays and only the swapped word's content changes. Refinement adds words;
# re-weighting turns one word up or down:

# %%
x1 = x_T[:1].repeat(2, 1, 1, 1)
ref = attention.edit(bundle, attention.Refine(tok, ["a smiling cat on a pink background"] * 2,
                                              ["a smiling cat with glasses on a pink background",
                                               "a smiling cat with a hat on a pink background"],
                                              tau_c=TAU_C, tau_s=TAU_S), x_T=x1, guidance_scale=GUIDANCE,
                     num_inference_steps=STEPS)
rw = [attention.edit(bundle, attention.Reweight(tok, ["a smiling cat on a pink background"],
                                                ["a smiling cat on a pink background"], word="smiling", scale=s,
                                                tau_c=1.0, tau_s=TAU_S), x_T=x_T[:1], guidance_scale=GUIDANCE,
                     num_inference_steps=STEPS).target for s in (-2.0, 0.0, 1.0, 3.0)]
show.rows([("refine: source, + glasses, + a hat", torch.cat([ref.source[:1], ref.target])),
           ("re-weight 'smiling' x -2, 0, 1, 3", torch.cat(rw))], nrow=4)
plt.show()

# %% [markdown]
# ## 3. A structural edit: P2P fails, P2Plus helps (Figs. 5, 7, 8)
# Swapping the subject (person → cat, person → robot: the toy "tent → tiger") asks for a *different shape*. P2P
# copies the source's self-attention maps, and those hold the source's shape, so the edit fights the layout it
# is told to keep.
#
# Classifier-free guidance computes $\tilde\epsilon = \epsilon_\theta(\mathbf z_t, \varnothing) +
# w\,(\epsilon_\theta(\mathbf z_t, \mathbf c) - \epsilon_\theta(\mathbf z_t, \varnothing))$. P2P edits only the
# conditional term. P2Plus (§3.4, Fig. 7) also replaces the self-attention maps of the *unconditional* term by the
# source's, for the first τ_u of the steps. The unconditional prediction then carries the source's structure, and
# guidance pushes *away* from it, towards the target's: "reduce the dependence of the structure on the source
# prompt".
#
# The official code applies τ_u only when the two branches are separate UNet calls; with both in one batch, as
# diffusers runs them, its τ_u does nothing (`OFFICIAL-CODE-NOTES.md`). Here the processor sees the whole batch, so
# τ_u acts (a test checks that it changes the output).

# %%
g = torch.Generator().manual_seed(SEED + 2)
x_T = torch.randn(4, *t2i.latent_shape(bundle), generator=g)
src = ["a smiling person with brown hair, pale skin and open eyes on a green background"] * 4
tgt = ["a smiling cat with brown fur, pale face and open eyes on a green background"] * 2 + \
      ["a smiling robot with brown crest, pale face and open eyes on a green background"] * 2
p2p = attention.edit(bundle, attention.Replace(tok, src, tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=0.0), x_T=x_T,
                     guidance_scale=GUIDANCE, num_inference_steps=STEPS)
p2plus = attention.edit(bundle, attention.Replace(tok, src, tgt, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U), x_T=x_T,
                        guidance_scale=GUIDANCE, num_inference_steps=STEPS)
score = lambda im: toyclip.clip_score(clip.model, clip.tokenizer, im, tgt).detach()
show.rows([("source", p2p.source), ("P2P", p2p.target), (f"P2Plus (τ_u = {TAU_U})", p2plus.target)], nrow=4)
plt.show()
print("CLIP score vs target  P2P:", [f"{v:.3f}" for v in score(p2p.target)],
      "\n                   P2Plus:", [f"{v:.3f}" for v in score(p2plus.target)])

# %% [markdown]
# Fig. 8 sweeps τ_u: 0 is P2P; the larger τ_u, the longer the unconditional branch carries the source's structure
# and the more freedom the target's shape gets.

# %%
TAU_US = (0.0, 0.25, 0.5, 0.75, 1.0)
sweep = [attention.edit(bundle, attention.Replace(tok, src[::2], tgt[::2], tau_c=TAU_C, tau_s=TAU_S, tau_u=tu),
                        x_T=x_T[::2], guidance_scale=GUIDANCE, num_inference_steps=STEPS) for tu in TAU_US]
show.grid(torch.stack([s.target for s in sweep], 1).reshape(-1, 3, 32, 32), nrow=len(TAU_US),
          title="τ_u = " + ", ".join(map(str, TAU_US)) + "   (rows: → cat, → robot)")
plt.show()
clip_tu = [score_.mean().item() for score_ in
           (toyclip.clip_score(clip.model, clip.tokenizer, s.target, tgt[::2]).detach() for s in sweep)]
print("mean CLIP score vs target:", dict(zip(TAU_US, [round(c, 3) for c in clip_tu])))

# %% [markdown]
# ## 4. Real images and Table 2 in miniature
# For a real image there is no $\mathbf x_T$ to share: invert it first. Null-text inversion (notebook 02) gives
# $\mathbf x_T$ and a per-step unconditional embedding $\varnothing_t$ that make guided DDIM retrace the image; the
# edit then runs source and target from that $\mathbf x_T$ with the same $\varnothing_t$.
#
# `editbench` builds pairs from fresh `photo` images (held out from every model's training): colour swaps
# (hair or background), attribute swaps (smiling ↔ serious, open ↔ closed eyes) and subject swaps, `N_PER_KIND`
# of each (3 by default, to keep the notebook within its two minutes; the tests run 10 of each). It runs four
# methods on the same pairs, sharing the inversions:
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
# and scores each edit against its source image:
#
# * **structure distance** (Tumanyan et al.): mean squared difference of the self-similarity matrices of deep
#   features. The paper uses DINO-ViT keys; here toy-attr's 16 × 16 features. Lower keeps the layout.
# * **NS-LPIPS**: perceptual distance *outside* the edited region; the region is the edited word's
#   cross-attention map recorded during DDIM inversion, min-max normalised and binarised at 0.5. Lower leaves the
#   rest alone.
# * **CLIP score** against the target caption (toy-clip's cosine). Higher follows the text.

# %%
pairs = editbench.edit_pairs(N_PER_KIND, seed=SEED)
# notebook 05's row: StyleDiffusion + P2Plus from its shipped inversion of exactly these pairs (when they match)
extra, methods = {}, editbench.METHODS
if MODE == "toy" and (N_PER_KIND, SEED, STEPS) == (3, 0, 20):
    sd_inv = stylediffusion.load_shipped("table2-film")
    extra = {"stylediffusion": lambda b, ps, _null: stylediffusion.p2plus_edit(
        b, sd_inv, ps, tau_v=0.6, tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U).target}
    methods = editbench.METHODS + ("stylediffusion",)
t0 = time.perf_counter()
run = editbench.run_methods(bundle, pairs, methods=methods, guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                            tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U, null_inner_steps=NULL_INNER, null_lr=NULL_LR,
                            seed=SEED, extra=extra)
scores = editbench.score(run, attr, clip, perceptual)
print(f"{len(pairs)} pairs, {len(run.results)} methods: {time.perf_counter() - t0:.0f} s; "
      f"null-text reconstruction PSNR {metrics.psnr(torch.stack([p.image for p in pairs]), run.results['p2p'].reconstruction).mean():.1f} dB")

# %%
pick = [0, 1, N_PER_KIND, N_PER_KIND + 1, 2 * N_PER_KIND, 2 * N_PER_KIND + 1]
src_imgs = torch.stack([pairs[i].image for i in pick])
show.rows([("photo", src_imgs), ("edited region", run.regions[pick].repeat(1, 3, 1, 1) * 2 - 1)] +
          [(editbench.METHOD_NAMES[m], run.results[m].edited[pick]) for m in run.results], nrow=6)
plt.show()
for i in pick:
    print(f"{pairs[i].kind:9s} {pairs[i].word:>8s} → {pairs[i].target}")

# %%
table = editbench.summarise(run, scores)
from IPython.display import Markdown
Markdown(editbench.markdown_table(table, perceptual.name))

# %% [markdown]
# **Reading the table.** The paper's numbers (right) come from Stable Diffusion on 512-pixel photographs with
# LPIPS-alex, DINO and CLIP ViT-B; ours from 32-pixel toy images with toy networks, so compare the *order* of the
# rows, not the values. With 30 pairs (`N_PER_KIND = 10`, as `tests/test_p2plus_bars.py` measures) the toy
# world agrees with the paper on the first point and disagrees on the second:
#
# * **DDIM word swap redraws, P2P keeps.** DDIM inversion under the source caption and sampling under the target
#   caption follows the text but changes everything; null-text + P2P with local blending keeps the image outside
#   the edited region (on colour swaps its NS-LPIPS is about half of DDIM's).
# * **P2Plus: the paper's direction on generated images, not on inverted ones.** On the generated subject swaps
#   of §3 the mean CLIP score is higher with any τ_u > 0 than with P2P (τ_u = 0), the direction of the paper's
#   Figs. 5 and 8. On inverted `photo`
#   pairs with local blending it does not: over 30 pairs (`tests/test_p2plus_bars.py`) P2Plus's CLIP score beats
#   P2P's on only 4 of the 10 subject swaps, where the paper's claim asks for 7. Our reading (a hypothesis, not a
#   measurement): the blend confines both methods to the same region, and null-text's per-step ∅_t were optimised
#   for the *uninjected* unconditional branch, so injecting its self-attention moves the unconditional prediction
#   off the path the inversion tuned. The printout below shows the pair-by-pair comparison for this run's pairs.
# * **StyleDiffusion + P2Plus** (notebook 05's row, from its shipped inversion of these 9 pairs): the lowest structure
#   distance and NS-LPIPS of all rows, as in the paper, with a CLIP score close to null-text + P2P's. At the official
#   τ_v = 0.6 its edits act only in the last 40% of the steps (notebook 05, §7), which is much of why it keeps so much.

# %%
import numpy as np
kinds = np.array([p.kind for p in pairs])
for kind in editbench.KINDS:
    sel = torch.from_numpy(kinds == kind)
    win = (scores["p2plus"].clip[sel] > scores["p2p"].clip[sel]).float().mean()
    ratio = scores["p2plus"].structure[sel].mean() / scores["p2p"].structure[sel].mean()
    print(f"{kind:9s}: P2Plus CLIP > P2P on {win:.0%} of pairs; structure distance P2Plus / P2P = {ratio:.2f}")
subj = [i for i, p in enumerate(pairs) if p.kind == "subject"]
for m in ("p2p", "p2plus"):
    read = [a.subject for a in attr.predict(run.results[m].edited[subj]).attributes()]
    right = sum(r == pairs[i].target.split()[1] or r == pairs[i].target.split()[2] for r, i in zip(read, subj))
    print(f"{editbench.METHOD_NAMES[m]}: toy-attr reads the target subject in {right} of {len(subj)} subject swaps")
col = torch.from_numpy(kinds == "colour")
print(f"colour swaps: NS-LPIPS P2P / DDIM word swap = "
      f"{scores['p2p'].ns_lpips[col].mean() / scores['ddim'].ns_lpips[col].mean():.2f}")

# %% [markdown]
# ## 5. Try it: the windows, the weight and the guidance
# Move the sliders: τ_c and τ_s (how long P2P injects), τ_u (P2Plus; 0 is P2P), the re-weight factor of the edited
# word, and the guidance scale. The picture shows source, then target, for a colour swap and a subject swap of
# generated images (about a second per new setting).

# %%
g = torch.Generator().manual_seed(SEED + 3)
x_T_s = torch.randn(2, *t2i.latent_shape(bundle), generator=g)
s_src = ["a serious person with black hair on a yellow background", "a serious person with black hair on a yellow background"]
s_tgt = ["a serious person with red hair on a yellow background", "a serious cat with black fur on a yellow background"]

def redraw(tau_c, tau_s, tau_u, weight, w):
    ctrl = attention.Reweight(tok, s_src, s_tgt, word="serious", scale=weight, tau_c=tau_c, tau_s=tau_s, tau_u=tau_u)
    out = attention.edit(bundle, ctrl, x_T=x_T_s, guidance_scale=w, num_inference_steps=STEPS)
    return torch.stack([out.source, out.target], 1).reshape(-1, 3, 32, 32)

widgets.interactive_grid(redraw, nrow=4, scale=5,
                         tau_c=widgets.slider(0.0, 1.0, 0.1, TAU_C, "τ_c"),
                         tau_s=widgets.slider(0.0, 1.0, 0.1, TAU_S, "τ_s"),
                         tau_u=widgets.slider(0.0, 1.0, 0.1, TAU_U, "τ_u"),
                         weight=widgets.slider(-2.0, 4.0, 0.5, 1.0, "'serious' ×"),
                         w=widgets.slider(1.0, 10.0, 0.5, GUIDANCE, "guidance"))

# %% [markdown]
# ## Real mode
# Set `MODE = "real"` on a GPU machine with network: toy-t2i becomes `CompVis/stable-diffusion-v1-4` (latent space,
# 64 × 64 latents; the same `attention` processors hook its 16 attention layers), toy-clip becomes CLIP ViT-B/16
# and the perceptual metric LPIPS-alex. The `photo` pairs stay toy images upsampled to 512 pixels; put your own
# images and captions into `editbench.EditPair`s for real photographs. Use `STEPS = 50`, `GUIDANCE = 7.5` and the
# official τ defaults (τ_c = 0.6, τ_s = 0.8, τ_u = 0.5). Nothing else changes.
#
# ## Summary
# * Cross-attention maps (Eq. 4) say where each word is drawn; each row is a distribution over tokens.
# * Prompt-to-Prompt edits by generating source and target together and injecting the source's maps for the first
#   τ_c (cross) and τ_s (self) of the steps; replace, refine and re-weight differ only in how the cross-attention
#   maps are carried over.
# * P2Plus also injects the unconditional branch's self-attention for the first τ_u of the steps; guidance then
#   pushes away from the source's structure. It needs an attention processor that sees the whole guided batch.
# * Table 2's three numbers pull against each other: following the text (CLIP) and keeping the image (structure,
#   NS-LPIPS) trade off, and each method sits somewhere on that line.
#
# ## Exercises
# 1. Set τ_s = 1 and τ_u = 1 in the slider cell. What does the subject swap look like, and why?
# 2. Local blending: pass `local_blend=attention.LocalBlend(tok, s_src, s_tgt, words=["black", "red"])` to the
#    colour swap. Does NS-LPIPS of the colour pairs fall? (Hint: `editbench.ns_lpips`.)
# 3. Table 2 uses one τ_u for every pair. Find, for the subject pairs, the τ_u with the highest mean CLIP score,
#    and report its structure distance. Is there a τ_u that wins on both?
# 4. Replace null-text inversion by negative-prompt inversion (`inversion.negative_prompt_invert`) for the P2P row.
#    What happens to the time and to the three numbers?
