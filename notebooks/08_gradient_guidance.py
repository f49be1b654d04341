# %% [markdown]
# # 08 · Gradient guidance: colour, segmentation and attribute edits
#
# **After this notebook you can** edit what a diffusion model draws by nudging $\mathbf x_t$ with the gradient of
# any differentiable score of the predicted clean image $\mathbf P_t$: a colour, the area of a segmentation class,
# or an attribute classifier's logit. You will confine an edit with a mask, try to hold or flip a correlated
# attribute with a regulariser, map the strength × time-range trade-off, measure how consistent many edits are, and
# edit images the model never drew, through DDIM and DDPM inversion.
#
# This is Lundberg's thesis in miniature, in its own order (§3.3-§4.5). The thesis writes $\alpha_t$ for the
# cumulative product; the code says `alpha_bar`. Notebook 01 introduced $\mathbf P_t$ (Eq. 4); notebook 02 introduced
# the two inversions used in §9.
#
# **References.**
# - J. Ø. Lundberg, *Image Editing with Denoising Diffusion Models and Gradient Guidance*, master's thesis,
#   IT University of Copenhagen, 2023 (no arXiv id; [itu.dk](https://en.itu.dk/)). Alg. 1, Eqs. 12-19, Figs. 4-18,
#   Tables 1-2.
# - A. Bansal et al., *Universal Guidance for Diffusion Models*, CVPR 2023,
#   [arXiv:2302.07121](https://arxiv.org/abs/2302.07121): guidance by any differentiable function of $\mathbf P_t$ (Eq. 13).
# - P. Dhariwal, A. Nichol, *Diffusion Models Beat GANs on Image Synthesis*, NeurIPS 2021,
#   [arXiv:2105.05233](https://arxiv.org/abs/2105.05233): classifier guidance (Eq. 12).
# - I. Huberman-Spiegelglas, V. Kulikov, T. Michaeli, *An Edit Friendly DDPM Noise Space: Inversion and
#   Manipulations*, CVPR 2024, [arXiv:2304.06140](https://arxiv.org/abs/2304.06140): DDPM inversion (Eqs. 8-9).
# - J. Song, C. Meng, S. Ermon, *Denoising Diffusion Implicit Models*, ICLR 2021,
#   [arXiv:2010.02502](https://arxiv.org/abs/2010.02502): DDIM sampling and inversion (Eq. 7).
#
# **Conventions.** Every sentence that reports a measured result is followed by a check cell that asserts it (its
# message names the claim, the measured value and the bound); numbers in the text are formatted from computed values.
# Every figure of edits says how its examples were chosen and gives the success rate over at least `N_RATE` pairs.

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
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from diffnb import guidance, inversion, metrics, show, widgets, world, zoo

# %% [markdown]
# ## Settings
# `MODE = "real"` swaps the three toy models for `google/ddpm-celebahq-256`, CLIP zero-shot attributes and a
# CelebAMask-HQ face parser (a GPU and about 1.4 GB of downloads; see the last section).

# %%
MODE = "toy"          # "toy" (offline, CPU) or "real" (GPU + network)
SEED = 0              # image i of a run is drawn from torch.Generator seeded SEED + i
STEPS = 25            # DDIM steps; the thesis uses 50-100 on CelebA-HQ (t1, t2 below are indices into these)
ETA = 1.0             # the thesis's default: DDPM-like sampling
N_TABLE = 40          # edits behind Tables 1-2 (the thesis uses 100); also the pool every section draws its examples
                      # from, so it must hold N_RATE samples lacking each attribute edited in §4 (first_lacking says if not)
N_RATE = 20           # pairs (original, edit) behind every success rate
N_SHOW = 6            # pairs shown in a figure: the first N_SHOW of the N_RATE
LAM_ATTR, T1_ATTR, T2_ATTR = 1.0, 12, 25     # attribute-classifier guidance (λ, [t1, t2))
DEVICE = zoo.get_device()
names = {"toy": ("toy-ddpm", "toy-attr", "toy-seg"),
         "real": ("ddpm-celebahq", "clip-attributes", "face-parsing")}[MODE]
ddpm = zoo.load(names[0], device=DEVICE)
attr = zoo.load(names[1], device=DEVICE).model
seg = zoo.load(names[2], device=DEVICE).model
perceptual = metrics.toy_lpips(zoo.load("toy-attr").model) if MODE == "toy" else metrics.real_lpips()
print(ddpm.source, "|", perceptual.name)


# %% [markdown]
# ## 1. Alg. 1: nudge $\mathbf x_{t-1}$ along $-\nabla f(\mathbf P_{t-1})$
# A guidance function $f$ scores the model's current guess of the clean image, $s = f(\mathbf P_{t-1})$. After each
# ordinary reverse step whose index lies in the conditioning range $[t_1, t_2)$, Alg. 1 moves the sample downhill:
#
# $$\mathbf x_{t-1} \leftarrow \mathbf x_{t-1} - \bar\alpha_{t}^2\,\mathbf M \odot \nabla_{\mathbf x_{t-1}}\big(\lambda\, f(\mathbf P_{t-1})\big)$$
#
# with strength $\lambda$ and an optional mask $\mathbf M$ (Eq. 16). The factor $\bar\alpha_t^2$ is tiny while
# $\mathbf x_t$ is mostly noise and near 1 at the end, so late steps are nudged hardest. $t_1, t_2$ are *indices*
# of the reverse process (0 is the first, noisiest step), as in the thesis. Each guided step costs one more UNet
# call, with gradients. Here every function is written so that $\lambda \ge 0$ is a strength and the function says
# which way it pushes (the thesis puts the direction in the sign of $\lambda$).
#
# First, the images we will edit: `N_TABLE` unguided samples, the pool that every section below draws its examples
# from by a fixed rule. Image $i$ always comes from generator seed `SEED + i`, and an edit re-draws it from the same
# $\mathbf x_T$ and the same per-step noise, so any difference is the guidance's.
#
# That also means the steps before $t_1$ are the same plain sampling in every edit of the same images. `draw` keeps
# the state at those steps (`guidance.PrefixCache`: the latent, and each generator's state for the noise that
# η = 1 draws later) and resumes from it; the images are a full run's, bit for bit (`tests/test_guidance.py`).

# %%
prefix = guidance.PrefixCache(at=(T1_ATTR,))     # the unguided draws keep their state at step T1_ATTR too


def draw(fn=None, lam=0.0, t1=0, t2=0, n=N_SHOW, seed=SEED, mask=None, mode="x", keep_pred_x0=False, seeds=None,
         reuse=True):
    """Alg. 1 on images seed, seed + 1, ... (or on the images of the given `seeds`), each with its own generator;
    reuse=False runs every step (no `prefix`)."""
    fn = fn if fn is not None else guidance.Colour(0, 0.0)
    gens = seed if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    return guidance.guided_sample(ddpm.unet, ddpm.scheduler, fn, lam, t1, t2, batch_size=n if seeds is None else len(seeds),
                                  num_inference_steps=STEPS, eta=ETA, mask=mask, generator=gens, mode=mode,
                                  keep_pred_x0=keep_pred_x0, device=DEVICE, prefix=prefix if reuse else None)

t0 = time.time()
pool = draw(n=N_TABLE).images
unguided_seconds = time.time() - t0
pool_binary = attr.predict(pool).binary > 0.5                    # (N_TABLE, 4): what toy-attr reads in each sample
base = pool[:N_RATE]                                             # §2-§3 edit the first N_RATE samples
labels = seg.predict(base[:N_SHOW])
show.rows([(f"unguided samples (seeds {SEED}-{SEED + N_SHOW - 1})", base[:N_SHOW]),
           ("toy-seg's reading (Eq. 16 masks come from it)", show.mask_to_rgb(labels))], nrow=N_SHOW);

# %% [markdown]
# ## 2. Colour guidance (§3.3.1, Fig. 4)
# $f(\mathbf P_t, c, w) = \frac1N\sum_i |\mathbf P_{t,i,c} - w|$: the mean distance of colour channel $c$ from a
# target $w$. With the hair mask $\mathbf M$ from toy-seg (Eq. 16) the score is the mean over the mask's pixels, so
# each hair pixel's gradient is $\lambda/|\mathbf M|$. Without a mask the mean runs over all $HW$ pixels and each
# pixel's gradient is only $\lambda/HW$: at the same $\lambda$ the unmasked edit is $|\mathbf M|/HW$ times weaker per
# pixel. To push every pixel towards red, the unmasked run below scales $\lambda$ by
# $HW/|\mathbf M|$ (the mean hair area of these samples), which gives every pixel the push a hair pixel gets.

# %%
LAM_COLOUR = 10.0
hair = guidance.region_mask(seg, base, ("hair",), dilate=0)
lam_all = LAM_COLOUR / float(hair.mean())          # HW / |M|: the same push per pixel as the masked edit
red = guidance.Colour(channel=0, target=1.0)
red_all = draw(red, lam_all, 0, STEPS, n=N_RATE).images
red_hair = draw(red, LAM_COLOUR, 0, STEPS, n=N_RATE, mask=hair).images


def red_gain(edited, mask):
    """Per image: the mean increase of the red channel inside `mask` (pixel values in [-1, 1])."""
    return ((edited - base)[:, 0:1] * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1)


def mean_colour_change(edited, mask):
    """Mean over images of the length of the mean RGB change inside and outside `mask`."""
    change = edited - base
    inside = ((change * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)).norm(dim=1).mean()
    outside = ((change * (1 - mask)).sum((2, 3)) / (1 - mask).sum((2, 3))).norm(dim=1).mean()
    return float(inside), float(outside)

everywhere = torch.ones_like(hair)
ok_all = (red_gain(red_all, everywhere) >= 0.1).float().mean()
ok_hair = ((red_gain(red_hair, hair) >= 0.1) & (hair.sum((1, 2, 3)) > 0)).float().mean()
show.rows([(f"original (seeds {SEED}-{SEED + N_SHOW - 1}: the first {N_SHOW} of the {N_RATE} edited)", base[:N_SHOW]),
           ("hair mask M", hair[:N_SHOW].expand(-1, 3, -1, -1) * 2 - 1),
           (f"red, no mask, λ = {lam_all:.0f}: red gain ≥ 0.1 over the image in {ok_all:.0%} of {N_RATE}", red_all[:N_SHOW]),
           (f"red, masked to the hair, λ = {LAM_COLOUR:g}: red gain ≥ 0.1 in the hair in {ok_hair:.0%} of {N_RATE}",
            red_hair[:N_SHOW])], nrow=N_SHOW);

# %%
colour = {label: mean_colour_change(edited, hair) for label, edited in [("no mask", red_all), ("hair mask", red_hair)]}
# what else changed: the share of images in which toy-attr reads any binary attribute differently after the edit
content = {label: float(((attr.predict(edited).binary > 0.5) != pool_binary[:N_RATE]).any(1).float().mean())
           for label, edited in [("no mask", red_all), ("hair mask", red_hair)]}
for label, (inside, outside) in colour.items():
    print(f"{label:10s} mean colour change inside the hair {inside:.3f}, outside {outside:.3f} (ratio "
          f"{inside / max(outside, 1e-6):.1f}x); an attribute reads differently in {content[label]:.0%} of {N_RATE}")
display(Markdown(
    f"Unmasked (λ = {lam_all:.0f}), the colour changes about as much outside the hair as inside it "
    f"({colour['no mask'][1]:.3f} against {colour['no mask'][0]:.3f}): everything shifts towards red (blue "
    f"backgrounds turn violet), {ok_all:.0%} of {N_RATE} images gaining at least 0.1 of red on average. It also "
    f"changes what is drawn, not only its colour (in the figure the last face loses its glasses and the fourth its "
    f"whiskers): toy-attr reads at least one of smiling, eyes open, glasses and hat differently in {content['no mask']:.0%} of the {N_RATE} (masked: "
    f"{content['hair mask']:.0%}). Masked (λ = {LAM_COLOUR:g}), the change inside the hair is "
    f"{colour['hair mask'][0] / colour['hair mask'][1]:.0f} times the change outside it, and mild: the hair's red "
    f"channel rises by {float(red_gain(red_hair, hair).mean()):.2f} on average (pixel values span 2)."))

# %%
(in_all, out_all), (in_hair, out_hair) = colour["no mask"], colour["hair mask"]
assert out_all >= 0.5 * in_all and ok_all >= 0.8, (
    f"claim 'unmasked, the whole picture turns red': change outside {out_all:.3f} vs inside {in_all:.3f} (bound: "
    f"outside >= half of inside), images with red gain >= 0.1: {ok_all:.0%} (bound >= 80%)")
assert in_hair >= 4 * out_hair and ok_hair >= 0.8, (
    f"claim 'the mask confines the edit to the hair': inside {in_hair:.3f} vs outside {out_hair:.3f} (bound: "
    f"inside >= 4x outside), hair red gain >= 0.1 in {ok_hair:.0%} (bound >= 80%)")
assert content["no mask"] >= 0.15 and content["hair mask"] <= 0.05, (
    f"claim 'unmasked, the edit also changes what is drawn; masked, it does not': an attribute reads differently in "
    f"{content['no mask']:.0%} unmasked (bound >= 15%) vs {content['hair mask']:.0%} masked (bound <= 5%)")

# %% [markdown]
# ## 3. Segmentation guidance (§3.3.2, Eqs. 14-15, Figs. 8-9)
# $s_i = \frac{1}{HW}\sum_{h,w}\mathrm{softmax}(E_S(\mathbf P_t))_{i,h,w}$: the share of the picture that the
# segmenter gives to class $i$ (summed over classes of interest, e.g. both eyes). Growing it grows the eyes or the
# mouth; shrinking it shrinks them. The score is a small fraction of the image, so $\lambda$ is large (the thesis
# uses ±5000 at 256²). The masks are the eye or mouth regions grown by 2 pixels. Each row edits the first `N_RATE`
# samples and shows the first `N_SHOW`; its label gives the share of the `N_RATE` whose area moved as asked.

# %%
LAM_SEG, T1_SEG = 1000.0, 10      # segmentation guidance (λ, t1; t2 = STEPS)
LAM_CLOSE = 3.0                    # toy-attr's eyes-open logit, turned off over [T1_ATTR, T2_ATTR)
eyes, mouth = ("left_eye", "right_eye"), ("mouth",)
eye_mask = guidance.region_mask(seg, base, eyes)
mouth_mask = guidance.region_mask(seg, base, mouth)
opened = draw(guidance.SegmentationMass(seg, eyes, more=True), LAM_SEG, T1_SEG, STEPS, n=N_RATE, mask=eye_mask).images
closed = draw(guidance.SegmentationMass(seg, eyes, more=False), LAM_SEG, T1_SEG, STEPS, n=N_RATE, mask=eye_mask).images
wide = draw(guidance.SegmentationMass(seg, mouth, more=True), LAM_SEG, T1_SEG, STEPS, n=N_RATE, mask=mouth_mask).images
shut = draw(guidance.AttributeLogit(attr, "eyes_open", False), LAM_CLOSE, T1_ATTR, T2_ATTR, n=N_RATE, mask=eye_mask).images


def area(images, classes):
    lab = seg.predict(images)
    return sum((lab == world.MASK_CLASSES.index(c)).sum((1, 2)) for c in classes).float()

a_eyes, a_mouth = area(base, eyes), area(base, mouth)
moved = {"open": (area(opened, eyes) > a_eyes).float().mean(), "close": (area(closed, eyes) < a_eyes).float().mean(),
         "mouth": (area(wide, mouth) > a_mouth).float().mean()}
j_open = world.BINARY.index("eyes_open")
p_open = {k: attr.predict(v).binary[:, j_open] for k, v in [("original", base), ("less eye", closed), ("classifier", shut)]}
was_open = p_open["original"] > 0.5
closed_now = {k: float((p_open[k][was_open] < 0.5).float().mean()) for k in ("less eye", "classifier")}
show.rows([(f"original (seeds {SEED}-{SEED + N_SHOW - 1})", base[:N_SHOW]),
           (f"more eye: eye area grew in {moved['open']:.0%} of {N_RATE}", opened[:N_SHOW]),
           (f"less eye: eye area shrank in {moved['close']:.0%} of {N_RATE}; closed (toy-attr) in "
            f"{closed_now['less eye']:.0%} of the {int(was_open.sum())} open", closed[:N_SHOW]),
           (f"more mouth: mouth area grew in {moved['mouth']:.0%} of {N_RATE}", wide[:N_SHOW]),
           (f"for contrast, toy-attr's eyes-open logit, turned off (λ = {LAM_CLOSE:g}, [{T1_ATTR}, {T2_ATTR})): read as "
            f"closed in {closed_now['classifier']:.0%} of the {int(was_open.sum())} open", shut[:N_SHOW])], nrow=N_SHOW);

# %%
world_open = world.sample(N_RATE, seed=SEED + 7, eyes_open=True)
world_closed = world.with_attributes(world_open, eyes_open=False)
a_world_open, a_world_closed = area(world_open.images, eyes).mean(), area(world_closed.images, eyes).mean()
print(f"eye pixels:   original {a_eyes.mean():.1f}, more eye {area(opened, eyes).mean():.1f}, less eye {area(closed, eyes).mean():.1f}")
print(f"mouth pixels: original {a_mouth.mean():.1f}, more mouth {area(wide, mouth).mean():.1f}")
print(f"toy-attr P(eyes open) of the {int(was_open.sum())} open-eyed originals after 'less eye': "
      f"min {p_open['less eye'][was_open].min():.2f}, mean {p_open['less eye'][was_open].mean():.2f}")
print(f"toy world: open eyes cover {a_world_open:.1f} eye pixels, the same faces with closed eyes {a_world_closed:.1f}")


def red_change(edited, original, mask):
    """Mean change of the red channel over the pixels of `mask` (all images together)."""
    return float(((edited - original)[:, 0:1] * mask).sum() / mask.sum())

red_shut = red_change(shut, base, eye_mask)
red_world = red_change(world_closed.images, world_open.images, guidance.region_mask(seg, world_open.images, eyes))
print(f"red channel in the eye regions: {red_shut:+.3f} after turning off the eyes-open logit; {red_world:+.3f} when "
      f"the toy world closes the eyes")
display(Markdown(
    f"Growing the eye or mouth mass works: the area grows in {moved['open']:.0%} (eyes) and {moved['mouth']:.0%} "
    f"(mouth) of {N_RATE} samples. Shrinking the eye mass shrinks the eyes ({a_eyes.mean():.1f} → "
    f"{area(closed, eyes).mean():.1f} eye pixels on average) but does **not close them**: toy-attr still reads "
    f"{1 - closed_now['less eye']:.0%} of the open eyes as open. The thesis closes eyes this way (Figs. 8-10); here "
    f"it does not, for two reasons. A closed eye in the toy world is still eye-class, a thin lid line of "
    f"{a_world_closed:.1f} pixels where an open eye has {a_world_open:.1f}, so the score asks for less eye, not for a "
    f"lid; and at λ = {LAM_SEG:g} the eyes lose only a fraction of that difference (what a much larger λ does, you "
    f"can try with the sliders in §10).\n\n"
    f"toy-attr's *eyes open* logit names the attribute itself, and turning it off makes toy-attr read "
    f"{closed_now['classifier']:.0%} of the open eyes as closed. The last row shows that this is not closing either: "
    f"the eyes are covered by red and orange smears, not lids. The red channel over the eyes rises by "
    f"{red_shut:.2f}, where closing the eyes of toy-world faces changes it by {red_world:+.2f}. The guidance found "
    f"pixels that fool the classifier (an adversarial edit) instead of a lid: a score that names the attribute is "
    f"still only as good as the network behind it."))

# %%
assert moved["open"] >= 0.8 and moved["mouth"] >= 0.8, (
    f"claim 'growing the eye or mouth mass grows them': eyes {moved['open']:.0%}, mouth {moved['mouth']:.0%} "
    f"(bound >= 80% of {N_RATE})")
assert moved["close"] >= 0.8 and closed_now["less eye"] <= 0.3, (
    f"claim 'shrinking the eye mass shrinks the eyes but does not close them' (a disagreement with the thesis): "
    f"area shrank in {moved['close']:.0%} (bound >= 80%), closed by toy-attr's reading in "
    f"{closed_now['less eye']:.0%} of the open (bound <= 30%)")
assert a_world_closed < a_world_open / 2, (
    f"claim 'a closed eye is a thin lid line, still eye-class': {a_world_closed:.1f} vs {a_world_open:.1f} pixels")
assert closed_now["classifier"] >= 0.8, (
    f"claim 'turning off the eyes-open logit makes toy-attr read the open eyes as closed': {closed_now['classifier']:.0%} "
    f"of the open (bound >= 80%)")
assert red_shut > 0.05 and red_shut > 5 * abs(red_world), (
    f"claim 'red smears, not lids': red change over the eyes {red_shut:+.3f} (bound > 0.05 and > 5x the toy world's "
    f"closing, {red_world:+.3f})")

# %% [markdown]
# ## 4. Attribute-classifier guidance (§3.3.3, Figs. 11-12)
# The score is toy-attr's logit for a binary attribute (negated to turn it on). A classifier can change what a
# segmenter cannot name. Each edit is masked to where its attribute lives (`guidance.ATTRIBUTE_REGIONS`): without a
# mask, other attributes can change with it (§5 measures this for glasses and the eyes; try others with the sliders
# in §10). For each attribute the examples are the first `N_RATE` samples of the pool (seed order) that toy-attr
# reads as *lacking* it; the figure shows the first `N_SHOW` of them, and its labels give the success rate over all
# `N_RATE`: the share that toy-attr reads as having the attribute after the edit. The smiling edits are taken from
# the table of §8, which edits every sample of the pool towards smiling with the same settings (so they are run once).

# %%
print(guidance.ATTRIBUTE_REGIONS)


def first_lacking(edit, n):
    """The first n edits of `edit` whose source lacked the attribute: the ones attribute_edits(only_lacking=True) picks."""
    j = world.BINARY.index(edit.attribute)
    idx = torch.nonzero((edit.logits_before["binary"][:, j] > 0) != edit.target).flatten()[:n]
    assert len(idx) == n, f"only {len(idx)} of {len(edit.seeds)} samples lack {edit.attribute}; raise N_TABLE"
    pick = lambda logits: {k: v[idx] for k, v in logits.items()}
    return dataclasses.replace(edit, seeds=[edit.seeds[i] for i in idx], before=edit.before[idx],
                               after=edit.after[idx], logits_before=pick(edit.logits_before),
                               logits_after=pick(edit.logits_after))

t0 = time.time()
consistency = guidance.attribute_edits(ddpm.unet, ddpm.scheduler, attr, "smiling", True, LAM_ATTR, T1_ATTR, T2_ATTR,
                                       n=N_TABLE, num_inference_steps=STEPS, eta=ETA, seg_net=seg, seed=SEED,
                                       only_lacking=False, samples=pool,      # every sample of the pool: §8's table
                                       prefix=prefix)
table_seconds = time.time() - t0
attr_edits = {name: guidance.attribute_edits(ddpm.unet, ddpm.scheduler, attr, name, True, LAM_ATTR, T1_ATTR, T2_ATTR,
                                             n=N_RATE, num_inference_steps=STEPS, eta=ETA, seg_net=seg, seed=SEED,
                                             samples=pool, prefix=prefix)
              if name != "smiling" else first_lacking(consistency, N_RATE)
              for name in ("glasses", "smiling", "hat")}
success = {name: float(e.changed.float().mean()) for name, e in attr_edits.items()}
show.rows([row for name, e in attr_edits.items() for row in
           [(f"lacking {name}: seeds {', '.join(map(str, e.seeds[:N_SHOW]))}", e.before[:N_SHOW]),
            (f"+ {name} (λ = {LAM_ATTR:g}, [{T1_ATTR}, {T2_ATTR})): {success[name]:.0%} of {N_RATE} now have it",
             e.after[:N_SHOW])]], nrow=N_SHOW);

# %%
for name, e in attr_edits.items():
    j = world.BINARY.index(name)
    p0, p1 = e.logits_before["binary"][:, j].sigmoid(), e.logits_after["binary"][:, j].sigmoid()
    print(f"{name:8s} P before {[round(p, 2) for p in p0[:N_SHOW].tolist()]}\n{'':8s} P after  {[round(p, 2) for p in p1[:N_SHOW].tolist()]}")
display(Markdown(
    f"Over {N_RATE} samples that lacked each attribute, the edit succeeds for glasses in {success['glasses']:.0%} and "
    f"for smiling in {success['smiling']:.0%}, but for a hat in only {success['hat']:.0%}. *Hat* is the hard one here. A likely "
    f"reason, which we have not tested: a hat sits above the head, where the mask from the hair and hat classes "
    f"leaves little room, and drawing it means repainting background. Exercise 2 asks you to find a range "
    f"that works. `tests/test_guidance_bars.py` measures every attribute on 40 fresh samples."))

# %%
assert success["smiling"] >= 0.8 and success["glasses"] >= 0.6, (
    f"claim 'the edit succeeds for glasses and smiling': success glasses {success['glasses']:.0%} (bound >= 60%), "
    f"smiling {success['smiling']:.0%} (bound >= 80%) over {N_RATE} samples lacking each")
assert success["hat"] < min(success["smiling"], success["glasses"]), (
    f"claim 'hat is the hard one': hat success {success['hat']:.0%} should be below glasses {success['glasses']:.0%} "
    f"and smiling {success['smiling']:.0%}")

# %% [markdown]
# ### Eq. 13: the universal-guidance form
# Universal guidance (Bansal et al.) shifts the *noise prediction* instead of the sample,
# $\hat\epsilon = \epsilon_\theta(\mathbf x_t) + s(t)\,\nabla_{\mathbf x_t}\lambda f(\mathbf P_t)$ (Eq. 13), here with
# $s(t) = \sqrt{1-\bar\alpha_t}$ as in classifier guidance (Eq. 12). It needs no second UNet call: the step's own
# call is made with gradients and gives both $\epsilon_\theta(\mathbf x_t)$ and the gradient (one forward and one
# backward pass per guided step, where Alg. 1 makes a second forward call on $\mathbf x_{t-1}$). The cell below
# counts the calls. The shift acts through the step's $\mathbf P_t$ and $\mathbf D_t$ weights, so it needs a much
# larger $\lambda$ for a similar effect (Exercise 3 asks how much). Both edit the same `N_RATE` samples that lacked a
# smile in the rows above.

# %%
smile = guidance.AttributeLogit(attr, "smiling", True)
calls, counts = [], {}
hook = ddpm.unet.register_forward_hook(lambda *_: calls.append(1))     # counts UNet forward calls
for mode in ("x", "eps"):
    calls.clear()
    draw(smile, LAM_ATTR, T1_ATTR, T2_ATTR, n=1, mode=mode, reuse=False)     # every step, to count them
    counts[mode] = len(calls)
hook.remove()
smile_edit = attr_edits["smiling"]
smile_mask = guidance.region_mask(seg, smile_edit.before, guidance.ATTRIBUTE_REGIONS["smiling"])
LAM_EQ13 = 20 * LAM_ATTR
eq13 = draw(smile, LAM_EQ13, T1_ATTR, T2_ATTR, mask=smile_mask, mode="eps", seeds=smile_edit.seeds).images
eq13_success = float((attr.predict(eq13).binary[:, 0] > 0.5).float().mean())
show.rows([(f"lacking a smile (seeds {', '.join(map(str, smile_edit.seeds[:N_SHOW]))})", smile_edit.before[:N_SHOW]),
           (f"Alg. 1 (nudge x), λ = {LAM_ATTR:g}: {success['smiling']:.0%} of {N_RATE} smile", smile_edit.after[:N_SHOW]),
           (f"Eq. 13 (shift ε), λ = {LAM_EQ13:g}: {eq13_success:.0%} of {N_RATE} smile", eq13[:N_SHOW])], nrow=N_SHOW);
n_guided = T2_ATTR - T1_ATTR
drift13 = {"Alg. 1": float(perceptual(smile_edit.after, smile_edit.before).mean()),
           "Eq. 13": float(perceptual(eq13, smile_edit.before).mean())}
display(Markdown(
    f"One image, {STEPS} steps, {n_guided} of them guided: Alg. 1 makes {counts['x']} UNet forward calls, Eq. 13 "
    f"{counts['eps']}, one per step. With {LAM_EQ13 / LAM_ATTR:.0f} times the λ, Eq. 13 makes {eq13_success:.0%} of the "
    f"{N_RATE} smile, where Alg. 1 makes {success['smiling']:.0%}, and it changes much more besides, although its "
    f"gradient is masked to the mouth too: in the figure faces, hats and glasses are redrawn. The mean {perceptual.name} "
    f"distance to the originals is {drift13['Eq. 13']:.2f} for Eq. 13 against {drift13['Alg. 1']:.2f} for Alg. 1."))

# %%
assert counts["eps"] == STEPS and counts["x"] > STEPS, (
    f"claim 'Eq. 13 needs no extra UNet call': {counts['eps']} forward calls for {STEPS} steps (bound: exactly "
    f"{STEPS}); Alg. 1 {counts['x']} (bound: more than {STEPS})")
assert drift13["Eq. 13"] > 1.5 * drift13["Alg. 1"], (
    f"claim 'Eq. 13 changes much more besides': {perceptual.name} to the originals {drift13['Eq. 13']:.3f} vs Alg. 1 "
    f"{drift13['Alg. 1']:.3f} (bound: more than 1.5x)")
assert eq13_success <= success["smiling"], (
    f"claim 'Eq. 13 needs a much larger λ for a similar effect': at {LAM_EQ13 / LAM_ATTR:.0f}x the λ it edits "
    f"{eq13_success:.0%}, Alg. 1 {success['smiling']:.0%} (bound: Eq. 13 <= Alg. 1)")

# %% [markdown]
# ## 5. Entangle or disentangle a second attribute (Eqs. 17-18, Fig. 13)
# Edits drag correlated attributes along. In the toy world the attributes are drawn independently, but *pixels*
# are shared: glasses sit on the eyes, so guiding towards glasses without a mask can change how open the eyes
# look. The thesis adds a regulariser $g$ on the original image $\mathbf x_0$:
#
# $$s = s_f + \big(s_g(\mathbf P_t) - s_g(\mathbf x_0)\big)^2 \quad (17)\qquad\qquad s = s_f + \big(s_g(\mathbf P_t) + s_g(\mathbf x_0)\big)^2 \quad (18)$$
#
# Eq. 17 holds $g$'s logit where it was (disentangle); Eq. 18 pushes it to the opposite sign (entangle). The
# gradient of the squared term is $2\,w\,(s_g(\mathbf P_t) \mp s_g(\mathbf x_0))\,\nabla s_g$: it only pulls once $g$
# has drifted, and with toy-attr's large logits (±10 on clear images) the weight $w$ (`REG_WEIGHT`) sets how hard
# it pulls. The examples are the first `N_RATE` samples of the pool (seeds `SEED`, `SEED + 1`,
# ...), guided towards glasses without a mask; the figure shows the first `N_SHOW` of them.

# %%
N_REG = N_RATE
base_reg = pool[:N_REG]
glasses = guidance.AttributeLogit(attr, "glasses", True)
eyes_open = guidance.AttributeLogit(attr, "eyes_open")
g_x0 = eyes_open.logit(base_reg.to(DEVICE)).detach()
REG_WEIGHT = 0.2      # w of Eqs. 17-18 (the thesis's classifier needs 1; toy-attr's logits are larger)
runs = {"glasses only": glasses,
        f"+ Eq. 17, w = {REG_WEIGHT:g} (hold eyes)": guidance.Regularised(glasses, eyes_open, g_x0, keep=True, weight=REG_WEIGHT),
        f"+ Eq. 18, w = {REG_WEIGHT:g} (flip eyes)": guidance.Regularised(glasses, eyes_open, g_x0, keep=False, weight=REG_WEIGHT)}
reg_out = {k: draw(fn, LAM_ATTR, T1_ATTR, T2_ATTR, n=N_REG).images for k, fn in runs.items()}
before = pool_binary[:N_REG]
lacking_glasses = ~before[:, 2]
reg_stats = {}
for k, v in reg_out.items():
    after = attr.predict(v).binary > 0.5
    reg_stats[k] = {"glasses": float(after[lacking_glasses, 2].float().mean()),
                    "eyes_kept": float((after[:, 1] == before[:, 1]).float().mean()),
                    "closed_kept": float((~after[~before[:, 1], 1]).float().mean()) if (~before[:, 1]).any() else float("nan"),
                    "lpips": float(perceptual(v, base_reg).mean()),
                    "drift": float((eyes_open.logit(v.to(DEVICE)).detach() - g_x0).abs().mean())}   # mean |Δ eyes-open logit|
show.rows([(f"original (seeds {SEED}-{SEED + N_SHOW - 1})", base_reg[:N_SHOW])]
          + [(f"{k}: glasses on {s['glasses']:.0%} of those without, eyes as before in {s['eyes_kept']:.0%} of {N_REG}",
              reg_out[k][:N_SHOW]) for k, s in reg_stats.items()], nrow=N_SHOW);

# %%
n_closed = int((~before[:, 1]).sum())
print(f"{N_REG} samples, {int(lacking_glasses.sum())} without glasses, {n_closed} with closed eyes")
for k, s in reg_stats.items():
    print(f"{k:32s} glasses on {s['glasses']:4.0%}  eyes as before {s['eyes_kept']:4.0%}  "
          f"closed eyes kept closed {s['closed_kept']:4.0%}  mean |eyes-open logit drift| {s['drift']:4.1f}  "
          f"{perceptual.name} {s['lpips']:.2f}")


# %%
# Is the weight too weak? The two gradients at the end of the glasses-only run, per image.
x_end = reg_out["glasses only"].clone().requires_grad_(True)
grad_f, = torch.autograd.grad(glasses(x_end).sum(), x_end)
drift = (eyes_open.logit(x_end) - g_x0).detach()
grad_g, = torch.autograd.grad(eyes_open.logit(x_end).sum(), x_end)
ratio = 2 * REG_WEIGHT * drift.abs() * grad_g.flatten(1).norm(dim=1) / grad_f.flatten(1).norm(dim=1)
worst = int(drift.abs().argmax())
print(f"largest eyes-open logit drift of the glasses-only edit: {drift[worst]:+.1f} (image {worst}); there the Eq. 17 "
      f"gradient at w = {REG_WEIGHT:g} is {ratio[worst]:.1f}x the glasses gradient")

# %%
b, e17 = reg_stats["glasses only"], reg_stats[f"+ Eq. 17, w = {REG_WEIGHT:g} (hold eyes)"]
e18 = reg_stats[f"+ Eq. 18, w = {REG_WEIGHT:g} (flip eyes)"]
n_kept = {k: round(s["eyes_kept"] * N_REG) for k, s in reg_stats.items()}
n_closed_kept = {k: round(s["closed_kept"] * n_closed) for k, s in reg_stats.items()}
k17 = f"+ Eq. 17, w = {REG_WEIGHT:g} (hold eyes)"
display(Markdown(
    f"Guided towards glasses alone, the eyes read as before in {b['eyes_kept']:.0%} of the {N_REG} samples, and "
    f"closed eyes stay closed in only {n_closed_kept['glasses only']} of the {n_closed}: glasses drawn over closed "
    f"eyes read as open ones. **Eq. 17 does not hold the eyes here**, unlike the thesis's Fig. 13: with it the eyes "
    f"read as before in {n_kept[k17]} of {N_REG} (alone: {n_kept['glasses only']}) and closed eyes stay closed in "
    f"{n_closed_kept[k17]} of {n_closed} (alone: {n_closed_kept['glasses only']}), and the eyes-open logit drifts as "
    f"far as without it (mean |drift| {e17['drift']:.1f} against {b['drift']:.1f}). The glasses still come "
    f"({e17['glasses']:.0%} of those without, alone {b['glasses']:.0%}). The weight is not too weak: at the end of the "
    f"glasses-only run, on the image whose eyes-open logit drifted most ({drift[worst]:+.1f}), the Eq. 17 term's "
    f"gradient at w = {REG_WEIGHT:g} is {ratio[worst]:.0f} times the glasses gradient. Why the pull does not hold "
    f"the logit we have not pinned down (Exercises 6 and 7 try another reference and other weights). Eq. 18, by "
    f"contrast, acts as the thesis describes: it keeps the eyes in only {e18['eyes_kept']:.0%} of the {N_REG}, so it "
    f"entangles them with the glasses (in the figure, some open eyes become lid-like lines and the last face's "
    f"closed eyes open), at a cost to the rest of the face: {perceptual.name} to the originals {e18['lpips']:.2f}, "
    f"against {b['lpips']:.2f} for glasses alone."))

# %%
assert abs(n_kept[k17] - n_kept["glasses only"]) <= 1 and abs(n_closed_kept[k17] - n_closed_kept["glasses only"]) <= 1, (
    f"claim 'Eq. 17 does not hold the eyes here': eyes as before {n_kept[k17]} vs {n_kept['glasses only']} of {N_REG}, "
    f"closed kept {n_closed_kept[k17]} vs {n_closed_kept['glasses only']} of {n_closed} (bound: within one image)")
assert abs(e17["drift"] - b["drift"]) < 0.25 * b["drift"], (
    f"claim 'the eyes-open logit drifts as far as without it': mean |drift| {e17['drift']:.2f} vs {b['drift']:.2f} "
    f"(bound: within 25%)")
assert e17["glasses"] >= b["glasses"] - 0.15, (
    f"claim 'the glasses still come': {e17['glasses']:.0%} with Eq. 17 vs {b['glasses']:.0%} alone (bound: at most "
    f"15 points fewer)")
assert ratio[worst] > 1, (
    f"claim 'the weight is not too weak': Eq. 17 gradient {ratio[worst]:.2f}x the glasses gradient (bound > 1)")
assert e18["eyes_kept"] <= 0.2 and e18["eyes_kept"] < b["eyes_kept"], (
    f"claim 'Eq. 18 entangles': eyes kept {e18['eyes_kept']:.0%} vs {b['eyes_kept']:.0%} alone (bound <= 20%)")
assert e18["lpips"] > 1.5 * b["lpips"], (
    f"claim 'Eq. 18 at a cost to the rest of the face': {perceptual.name} {e18['lpips']:.2f} vs {b['lpips']:.2f} "
    f"alone (bound: more than 1.5x)")

# %% [markdown]
# ## 6. When does the edit happen? The average $\mathbf P_t$ (Fig. 14)
# Averaging $\mathbf P_t$ over blocks of five steps shows when the guided image departs from the unguided one. As in
# the thesis's Fig. 14, the guidance runs over the whole process, here $[0, 25)$ with λ = 3, on one image (as in the
# thesis): sample `SEED + 2`, fixed in advance. The printed numbers are the difference between the two rows inside
# the glasses region of the edited image.

# %%
plain = draw(n=1, seed=SEED + 2, keep_pred_x0=True)
edited = draw(guidance.AttributeLogit(attr, "glasses", True), 3.0, 0, STEPS, n=1, seed=SEED + 2, keep_pred_x0=True)
blocks = lambda r: torch.cat([torch.stack(r.pred_x0s[i:i + 5]).mean(0) for i in range(0, STEPS, 5)])
b_plain, b_edit = torch.cat([blocks(plain), plain.images]), torch.cat([blocks(edited), edited.images])
show.rows([("unguided: mean P_t over steps 0-4, 5-9, ... 20-24, then x_0", b_plain),
           ("glasses, λ = 3 over [0, 25)", b_edit)], nrow=6);
glasses_region = guidance.region_mask(seg, edited.images, ("glasses",))
departure = ((b_edit - b_plain).abs() * glasses_region).sum((1, 2, 3)) / (3 * glasses_region.sum()).clamp_min(1)
print("mean |edited - unguided| in the glasses region, per block:", [round(d, 3) for d in departure.tolist()])
display(Markdown(
    f"The guidance acts from step 0, yet in the glasses region the averaged $\\mathbf P_t$ of the edited run departs "
    f"from the unguided one by only {departure[0]:.3f} over steps 0-4 and {departure[2]:.3f} over steps 10-14, against "
    f"{departure[3]:.3f} over steps 15-19 and {departure[4]:.3f} over steps 20-24: the edit appears in the last ten of "
    f"the {STEPS} steps (the glasses are visible from the block of steps 15-19 on), where $\\bar\\alpha_t^2$ is "
    f"largest. The "
    f"thesis found the same with its 100-step DDPM (guidance over [0, 95] had no effect until the final stage; the "
    f"sample's own larger semantic changes begin after step 30, and the details, with the edit, come last)."))

# %%
assert min(departure[3], departure[4]) > 3 * max(departure[0], departure[1], departure[2]), (
    f"claim 'the edit appears in the last ten steps': departure in steps 15-19 {departure[3]:.3f} and 20-24 "
    f"{departure[4]:.3f} should both exceed 3x the largest of steps 0-14 {max(departure[:3]):.3f}")

# %% [markdown]
# ## 7. Strength × range (Fig. 15)
# `N_GRID` images per cell (the thesis uses ten), four strengths and two conditioning ranges; each cell's numbers
# are the mean perceptual distance between the edits and the originals (toy-LPIPS in toy mode) and the share of
# images that now wear glasses. The images are samples `SEED + 100`, `SEED + 101`, ... (a fixed rule, outside the
# pool), and the picture in each cell is the first of them. One batched call per range: $\lambda$ may be given per
# image.

# %%
LAMS, RANGES, N_GRID = (0.1, 0.5, 2.0, 8.0), ((12, STEPS), (20, STEPS)), 3
glasses = guidance.AttributeLogit(attr, "glasses", True)
grid_base = draw(n=N_GRID, seed=SEED + 100).images
cells = {}
for t1, t2 in RANGES:
    lam = torch.tensor(LAMS).repeat_interleave(N_GRID)
    seeds = [SEED + 100 + i % N_GRID for i in range(len(LAMS) * N_GRID)]
    out = draw(glasses, lam, t1, t2, seeds=seeds).images
    for k, l in enumerate(LAMS):
        imgs = out[k * N_GRID:(k + 1) * N_GRID]
        cells[(l, t1, t2)] = (imgs, float(perceptual(imgs, grid_base).mean()), float((attr.predict(imgs).binary[:, 2] > 0.5).float().mean()))
fig, axes = plt.subplots(len(RANGES), len(LAMS), figsize=(8, 2.3 * len(RANGES)), dpi=100, squeeze=False)
for r, (t1, t2) in enumerate(RANGES):
    for c, l in enumerate(LAMS):
        imgs, d, g = cells[(l, t1, t2)]
        show.grid(imgs[:1], ax=axes[r, c])
        axes[r, c].text(0.5, -0.06, f"d = {d:.2f}, glasses {g:.0%}", transform=axes[r, c].transAxes, ha="center",
                        va="top", fontsize=9)
        if r == 0:
            axes[r, c].set_title(f"λ = {l:g}", fontsize=10)
    axes[r, 0].text(-0.08, 0.5, f"[{t1}, {t2})", transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=10)
fig.suptitle(f"glasses guidance: {perceptual.name} distance d and share with glasses over {N_GRID} images", fontsize=10)
fig.tight_layout()

# %%
print(f"{perceptual.name}: mean distance to the original / share wearing glasses, {N_GRID} images per cell")
print("range      " + "".join(f"λ = {l:<10g}" for l in LAMS))
for t1, t2 in RANGES:
    print(f"[{t1:2d}, {t2}) " + "".join(f"  {cells[(l, t1, t2)][1]:.2f} / {cells[(l, t1, t2)][2]:.0%} " for l in LAMS))
dist = {rng: [cells[(l, *rng)][1] for l in LAMS] for rng in RANGES}
share = {rng: [cells[(l, *rng)][2] for l in LAMS] for rng in RANGES}
range_gap = max(abs(a - b) for a, b in zip(dist[RANGES[0]], dist[RANGES[1]]))
lam_spread = min(d[-1] - d[0] for d in dist.values())
display(Markdown(
    f"The thesis finds successful edits near LPIPS 0.4 (AlexNet LPIPS at 256², not comparable in scale with toy-LPIPS "
    f"at 32²) and noisy images above it, with larger $\\lambda$ moving further from the original. Here too the distance "
    f"grows along each row, from {min(d[0] for d in dist.values()):.2f} at λ = {LAMS[0]:g} to "
    f"{max(d[-1] for d in dist.values()):.2f} at λ = {LAMS[-1]:g}, and once every image wears glasses a larger λ only "
    f"adds damage. The two ranges differ by at most {range_gap:.2f} in any column, small beside the λ effect "
    f"({lam_spread:.2f}): as in the thesis, which found that extending the conditioning range has little effect. "
    f"$\\bar\\alpha_t^2$ gives the early steps of a 25-step run almost no weight, so starting at 12 instead of 20 adds "
    f"little (Exercise 5). With {N_GRID} images per cell, differences of a few hundredths are noise."))

# %%
for rng in RANGES:
    assert all(a < b for a, b in zip(dist[rng], dist[rng][1:])), (
        f"claim 'the distance grows along each row': range {rng} distances {[round(d, 3) for d in dist[rng]]}")
    full = [k for k, s in enumerate(share[rng]) if s == 1.0]
    assert full and full[-1] == len(LAMS) - 1 and dist[rng][-1] > dist[rng][full[0]], (
        f"claim 'once every image wears glasses a larger λ only adds damage': range {rng}, shares {share[rng]}, "
        f"distances {[round(d, 3) for d in dist[rng]]}")
assert range_gap < lam_spread / 3, (
    f"claim 'the range has little effect (as the thesis found)': largest gap between ranges {range_gap:.3f} should be "
    f"under a third of the λ spread {lam_spread:.3f}")

# %% [markdown]
# ## 8. Attribute consistency (§4.4, Tables 1-2)
# The thesis edits 100 DDPM samples towards *old* and asks its classifier how often every *other* attribute kept its
# label. Here, as in the thesis, the `N_TABLE` samples of the pool, each edited towards *smiling* with the settings of
# §4 (masked to the mouth; the edits were made once, in §4); those already smiling show how an edit leaves an attribute that is already there. The
# table has the **unedited source** as its first row (the "do nothing" baseline: perfect consistency, no edit) and an
# **edit success** column (the share of samples that lacked a smile and now have one) beside the fidelity measures,
# because an edit that did not happen would score perfectly on every fidelity column. The quality bars in
# `tests/test_guidance_bars.py` make the same edit on samples that were *not* smiling.

# %%
# the edits were made in §4 (`consistency`): every sample of the pool, guided towards smiling
lacking = consistency.logits_before["binary"][:, 0] <= 0
kept = consistency.kept()
edit_success = float(consistency.changed[lacking].float().mean())
lpips_edit = float(perceptual(consistency.after, consistency.before).mean())
show.rows([(f"samples {SEED}-{SEED + N_SHOW - 1} of the {N_TABLE}", consistency.before[:N_SHOW]),
           (f"guided towards smiling: {edit_success:.0%} of the {int(lacking.sum())} not smiling now smile",
            consistency.after[:N_SHOW])], nrow=N_SHOW);

# %%
others = [k for k in kept if k != "smiling"]
header = "| | edit success (smiling, of those not) | " + " | ".join(others) + f" | {perceptual.name} to the source |"
table = [header, "|" + " --- |" * (len(others) + 3),
         "| unedited source | 0% | " + " | ".join("1.00" for _ in others) + " | 0.000 |",
         f"| guided towards smiling | {edit_success:.0%} | " + " | ".join(f"{kept[k]:.2f}" for k in others)
         + f" | {lpips_edit:.3f} |"]
display(Markdown(f"**Table 1 (ours)**: toy-attr accuracy on {N_TABLE} edits against the sources' labels, per attribute "
                 f"other than the target; {int(lacking.sum())} of the {N_TABLE} were not smiling "
                 f"({table_seconds:.0f} s for the edits, their first {T1_ATTR} steps reused from the pool's draw)."
                 f"\n\n" + "\n".join(table)))
print("Table 1 (thesis, 100 CelebA-HQ DDPM edits towards old, λ = 5, [0, 95]):")
print("↓ Young: 0.08  Attractive: 0.21  Bags under eyes: 0.43  Heavy makeup: 0.58  Gray hair: 0.71")

# %%
changes = consistency.logit_change()
print(f"Table 2 (ours): mean logit change per attribute, {N_TABLE} edits towards smiling, largest first")
for name, change in changes:
    print(f"  {name:10s} {change:+.2f}")
print("Table 2 (thesis, towards old; its classifier has a negative and a positive logit per attribute):")
print("  Young +5.06 / -5.15, Attractive +3.13 / -3.36, Heavy makeup +2.46 / -2.57 ... Gray hair -3.34 / +3.26")
target_change = dict(changes)["smiling"]
next_change = max(abs(c) for n, c in changes if n != "smiling")
flipped = sorted((k for k in others if kept[k] < 1.0), key=lambda k: kept[k])
display(Markdown(
    f"**What agrees, what does not.** As in the thesis, the target attribute moves most, by a wide margin (smiling's "
    f"logit {target_change:+.2f}, the next {next_change:.2f}). The thesis's edits drag correlated attributes along "
    f"(*gray hair*, *attractive*), because age really is entangled with them in CelebA and in its classifier. The toy "
    f"world draws its attributes independently, so the remaining changes here are not correlations but collateral: "
    f"with the mouth mask, toy-attr's accuracy is {min(kept[k] for k in others):.2f} or more on every other "
    f"attribute (lowest: {flipped[0] if flipped else 'none'}), so only a few samples change their reading of "
    f"anything but the smile. toy-attr has one "
    f"logit per binary attribute, so the thesis's *negative* column would be our column with its sign flipped."))

# %%
assert abs(target_change) > 5 * next_change, (
    f"claim 'the target attribute moves most, by a wide margin': smiling {target_change:+.2f} vs next "
    f"{next_change:.2f} (bound: more than 5x)")
assert round(min(kept[k] for k in others), 6) >= 0.95 and edit_success >= 0.8, (     # round: shares are float32
    f"claim 'with the mask, accuracy 0.95 or more on every other attribute while the edit succeeds': kept {kept} "
    f"(bound >= 0.95), "
    f"edit success {edit_success:.0%} (bound >= 80%)")

# %% [markdown]
# ## 9. Real images (§4.5, Figs. 17-18)
# `photo` images are ones no model has seen. Two ways in:
# - **DDIM inversion** (Eq. 7, notebook 02): deterministic $\mathbf x_0 \to \mathbf x_T$, then Alg. 1 on the way back
#   with η = 0. Reconstruction is approximate.
# - **DDPM inversion** (edit-friendly, Eqs. 8-9): noise maps $\mathbf z_t$ that make η = 1 sampling return the image
#   exactly; the edit nudges the noise maps instead of $\mathbf x_t$ (Eq. 19):
#   $\mathbf z_t^{edited} = \mathbf z_t - \bar\alpha_t^2\,\mathbf M\odot\nabla_{\mathbf x_t}\lambda f(\mathbf P_t)$.
#
# The photos are the first `N_RATE` non-smiling `photo` images of world seed `SEED + 300`; the figure shows the first
# `N_SHOW`, and its labels give the success rate over all `N_RATE`.

# %%
photos = world.sample(N_RATE, seed=SEED + 300, domain="photo", smiling=False).images.to(DEVICE)
photo_mask = guidance.region_mask(seg, photos, guidance.ATTRIBUTE_REGIONS["smiling"])
ddim_inv = inversion.ddim_invert(ddpm.unet, ddpm.scheduler, photos, num_inference_steps=STEPS)
ddim_edit = guidance.edit_ddim_inverted(ddpm.unet, ddpm.scheduler, ddim_inv, smile, LAM_ATTR, T1_ATTR, T2_ATTR, mask=photo_mask,
                                       prefix=prefix).images
ddim_rec = guidance.edit_ddim_inverted(ddpm.unet, ddpm.scheduler, ddim_inv, smile, 0.0, 0, 0, prefix=prefix).images  # from the edit's step T1_ATTR
ef_inv = inversion.edit_friendly_invert(ddpm.unet, ddpm.scheduler, photos, STEPS, generator=torch.Generator().manual_seed(SEED))
ef_rec = guidance.edit_ddpm_inverted(ddpm.unet, ddpm.scheduler, ef_inv, smile, 0.0, 0, 0)
ef_edit = guidance.edit_ddpm_inverted(ddpm.unet, ddpm.scheduler, ef_inv, smile, LAM_ATTR, T1_ATTR, T2_ATTR, mask=photo_mask)
real = {}
for label, rec, edit in [("DDIM", ddim_rec, ddim_edit), ("DDPM", ef_rec, ef_edit)]:
    real[label] = {"psnr": float(metrics.psnr(rec, photos.cpu()).mean().clamp(max=99)),
                   "max_err": float((rec - photos.cpu()).abs().max()),
                   "success": float((attr.predict(edit).binary[:, 0] > 0.5).float().mean()),
                   "outside": float(((edit - rec).abs() * (1 - photo_mask)).sum() / (1 - photo_mask).sum() / 3)}
show.rows([("photo (not smiling)", photos[:N_SHOW]), ("DDIM inversion, reconstructed", ddim_rec[:N_SHOW]),
           (f"DDIM inversion + smile: {real['DDIM']['success']:.0%} of {N_RATE} smile", ddim_edit[:N_SHOW]),
           ("DDPM inversion, reconstructed", ef_rec[:N_SHOW]),
           (f"DDPM inversion + smile (Eq. 19): {real['DDPM']['success']:.0%} of {N_RATE} smile", ef_edit[:N_SHOW])],
          nrow=N_SHOW);

# %%
for label, r in real.items():
    print(f"{label} inversion: reconstruction PSNR {r['psnr']:.1f} dB, max error {r['max_err']:.1e}; smiling after the "
          f"edit {r['success']:.0%} of {N_RATE}; mean change outside the mask {r['outside']:.3f}")
display(Markdown(
    f"As in the thesis, DDPM inversion is the better way in: it reconstructs exactly (largest error "
    f"{real['DDPM']['max_err']:.0e}), so every change is the edit's, while DDIM inversion at {STEPS} steps already "
    f"alters the photo before any guidance (PSNR {real['DDIM']['psnr']:.1f} dB). The thesis used 1000 DDIM steps for "
    f"its inversions (DDPM: 100); notebook 02 measures how the error falls with steps. Unlike the thesis, which found "
    f"its real-image edits minuscule, the toy edits succeed on real photos about as often as on samples "
    f"(DDPM inversion: {real['DDPM']['success']:.0%} of {N_RATE} now smile): the toy photos differ from the training "
    f"world only by lighting, noise and blur, far less than real faces differ from CelebA-HQ."))

# %%
assert real["DDPM"]["max_err"] < 1e-4 and real["DDIM"]["psnr"] < 30, (
    f"claim 'DDPM inversion reconstructs exactly, DDIM inversion at {STEPS} steps does not': DDPM max error "
    f"{real['DDPM']['max_err']:.1e} (bound < 1e-4), DDIM PSNR {real['DDIM']['psnr']:.1f} dB (bound < 30)")
assert real["DDPM"]["success"] >= 0.7, (
    f"claim 'unlike the thesis, the toy real-image edits succeed': DDPM-inversion smile rate {real['DDPM']['success']:.0%} "
    f"(bound >= 70%)")

# %% [markdown]
# ## 10. Try it
# Pick what to guide, its strength, the range and whether to mask; the picture shows the original and the edit of
# one image, sample `SEED` (each redraw is one guided run of 25 steps, less the unguided steps before t1 that `draw`
# kept from an earlier redraw; `python -m diffnb.bench` measures a full redraw; settings you revisit are cached). The
# cell first shows a static picture of the default position, for readers of the saved notebook.

# %%
# NBVAL_IGNORE_OUTPUT
one = base[:1]
targets = {"glasses": lambda: guidance.AttributeLogit(attr, "glasses", True),
           "smiling": lambda: guidance.AttributeLogit(attr, "smiling", True),
           "hat": lambda: guidance.AttributeLogit(attr, "hat", True),
           "less eye (segmentation)": lambda: guidance.SegmentationMass(seg, eyes, more=False),
           "close eyes (classifier)": lambda: guidance.AttributeLogit(attr, "eyes_open", False),
           "red hair (colour)": lambda: guidance.Colour(0, 1.0)}
regions = {"glasses": guidance.ATTRIBUTE_REGIONS["glasses"], "smiling": ("mouth",), "hat": ("hat", "hair"),
           "less eye (segmentation)": eyes, "close eyes (classifier)": eyes, "red hair (colour)": ("hair",)}
scale = {"less eye (segmentation)": LAM_SEG, "close eyes (classifier)": LAM_CLOSE, "red hair (colour)": LAM_COLOUR}

def redraw(target, lam, t1, t2, masked):
    mask = guidance.region_mask(seg, one, regions[target]) if masked else None
    out = draw(targets[target](), lam * scale.get(target, 1.0), min(t1, t2), max(t1, t2), n=1, mask=mask).images
    return torch.cat([one, out])

widgets.interactive_grid(redraw, nrow=2, scale=6,
                         target=widgets.dropdown(targets, "glasses", "guide"),
                         lam=widgets.slider(0.0, 8.0, 0.5, 1.0, "λ (× scale)"),
                         t1=widgets.int_slider(0, STEPS, 1, T1_ATTR, "t1"),
                         t2=widgets.int_slider(0, STEPS, 1, STEPS, "t2"),
                         masked=widgets.checkbox(True, "mask"))

# %% [markdown]
# ## 11. The thesis's findings beside ours
#
# | finding (thesis) | thesis, CelebA-HQ DDPM 256² | here, toy-ddpm 32² |
# | --- | --- | --- |
# | colour edits are easy and a mask confines them (Fig. 4) | qualitative | §2: the whole picture shifts towards red only with λ scaled by $HW/\lvert\mathbf M\rvert$, and what is drawn can change with it; masked, the change stays in the hair |
# | segmentation guidance opens / closes eyes (Figs. 8-10) | qualitative | §3: eye and mouth areas move as asked, but less eye mass does not close the eyes; toy-attr's eyes-open logit, turned off, fools toy-attr with red smears instead of drawing lids |
# | classifier guidance edits attributes a segmenter cannot (Figs. 11-12) | λ = 5, [0, 95] of 100 steps | §4: λ = 1, [12, 25) of 25 steps, masked; glasses and smiling succeed, hat mostly fails |
# | the regulariser disentangles / entangles a second attribute (Eqs. 17-18, Fig. 13) | qualitative | §5: Eq. 18 entangles the eyes with glasses; Eq. 17 does not hold them |
# | guidance over [0, 95] has no effect until the final stage; the sample's semantic changes begin after step 30 (Fig. 14) | 100 DDPM steps | §6: the edit appears in the last ten of 25 steps |
# | good edits near LPIPS 0.4, noisier above; extending the range has little effect (Fig. 15, §4.3) | AlexNet LPIPS, ten images | §7 (toy-LPIPS): distance grows with λ; the two ranges differ little |
# | the target attribute changes most (Tables 1-2) | Young accuracy 0.08, Δlogit 5.1 | §8: smiling moves most; the other attributes hardly move (the toy world draws them independently) |
# | DDPM inversion beats DDIM inversion for real images; real edits are minuscule (§4.5) | 100 vs 1000 steps | §9: exact vs approximate at 25 steps; the toy edits of photos succeed |
#
# ## Summary
# - Alg. 1 edits by nudging $\mathbf x_{t-1}$ with $-\bar\alpha_t^2\nabla\lambda f(\mathbf P_{t-1})$ over a range of steps; any
#   differentiable score of the predicted clean image can steer: a colour, a segmenter's class mass, a classifier's logit.
# - Masks from a segmenter (Eq. 16) keep the edit where it belongs; without them a colour score needs a λ scaled to
#   the whole picture, and it changes what else is drawn (§2).
# - A score is only as good as what it names and the network behind it: shrinking the eye *mass* makes eyes
#   smaller, not closed, and turning off the classifier's *eyes open* logit fools the classifier with red smears
#   instead of drawing lids.
# - The regulariser (Eqs. 17-18) acts only once the second attribute has drifted. Eq. 18 entangles the eyes with
#   glasses as the thesis describes; Eq. 17 did not hold them on the toy models (§5).
# - λ and $[t_1, t_2)$ trade edit strength against faithfulness (Fig. 15); late steps matter most, and the range
#   matters little.
# - Real images enter through inversion; DDPM inversion's noise maps (Eq. 19) keep everything the edit does not touch.
#
# ## Exercises
# 1. Run §8 without the mask (`seg_net=None`). Which attributes lose consistency, and why those?
# 2. Find a conditioning range and λ for which *hat* guidance succeeds on most of the `N_RATE` images of §4. What
#    does the average $\mathbf P_t$ of §6 tell you about when a hat must be drawn?
# 3. Compare Alg. 1 and Eq. 13 at equal *effect* (the share of images edited) rather than equal λ: which keeps the
#    other attributes better, and which is faster?
# 4. Set `ETA = 0.0` and re-run §8. Does deterministic sampling make edits more or less consistent?
# 5. Add the range $[0, 25)$ to the grid of §7 and compare it with $[12, 25)$. Plot $\bar\alpha_t^2$ over the 25 steps to
#    explain what you see.
# 6. In §5, replace $s_g(\mathbf x_0)$ by $g$'s score on the *unguided* $\mathbf P_t$ of the same step (run the
#    unguided sampler alongside). Does Eq. 17 then hold the eyes at a weight that does not spoil the glasses?
# 7. In §5, try `REG_WEIGHT` = 1 and 3. Does a stronger Eq. 17 hold the eyes-open logit, or does it overshoot? Record
#    the eyes-open logit of $\mathbf P_t$ at every guided step (a guidance function sees each $\mathbf P_t$) to see.
#
# ## Run it on the real models
# Set `MODE = "real"` on a machine with a GPU and network: `google/ddpm-celebahq-256` (455 MB), CLIP ViT-B/16
# zero-shot prompts for the attributes (599 MB; `diffnb.zeroshot.REAL_PROMPTS`) and a CelebAMask-HQ SegFormer
# face parser (about 340 MB) load in place of the toy models, and every cell runs unchanged at 256×256 (the mask
# class names are mapped to the parser's). Expect λ to need re-tuning: the thesis's λ = 5 over [0, 95] of 100
# steps is a starting point; perceptual distances use LPIPS-alex.
