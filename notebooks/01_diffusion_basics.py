# %% [markdown]
# # 01 · Diffusion basics
#
# **After this notebook you can** draw from the toy world that the whole course runs on, add noise to an image
# with the forward process, train a tiny diffusion model, sample with DDPM and DDIM (and anything between them
# through η), read the predicted clean image $\mathbf{P}_t$ and the direction $\mathbf{D}_t$ at every step, and
# check a hand-written step against the `diffusers` scheduler to the fifth decimal.
#
# The maths follows §3.1 of Lundberg's thesis, which writes $\alpha_t$ for the cumulative product that DDIM calls
# $\bar\alpha_t$; the code uses the unambiguous `alpha_bar`.
#
# **References.**
# - J. Ø. Lundberg, *Image Editing with Denoising Diffusion Models and Gradient Guidance*, master's thesis,
#   IT University of Copenhagen, 2023 (no arXiv id; [itu.dk](https://en.itu.dk/)). §3.1, Eqs. 1 and 3-6.
# - J. Ho, A. Jain, P. Abbeel, *Denoising Diffusion Probabilistic Models*, NeurIPS 2020,
#   [arXiv:2006.11239](https://arxiv.org/abs/2006.11239): the forward process and the training loss.
# - J. Song, C. Meng, S. Ermon, *Denoising Diffusion Implicit Models*, ICLR 2021,
#   [arXiv:2010.02502](https://arxiv.org/abs/2010.02502): the DDIM step and η (its Eq. 12).
#
# **Conventions.** Every sentence below that reports a measured result is followed by a check cell that asserts
# it (the assertion's message names the claim, the measured value and the bound), and numbers in the text are
# formatted from the values the code computed.

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
import re
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from IPython.display import Markdown, display
from transformers.utils import logging as transformers_logging

from diffnb import evaluate, metrics, sampling, show, t2i, widgets, world, zoo

transformers_logging.disable_progress_bar()   # no "Loading weights" bars in the saved outputs

# %% [markdown]
# ## Settings
# Every knob of this notebook, passed explicitly to the functions that use it. `MODE = "real"` swaps the toy
# DDPM for `google/ddpm-celebahq-256` (a GPU and a 455 MB download; see the last section).

# %%
MODE = "toy"                 # "toy" (offline, CPU) or "real" (google/ddpm-celebahq-256, GPU + network)
SEED = 0                     # every random draw below comes from a CPU torch.Generator seeded from this
NUM_INFERENCE_STEPS = 50     # DDIM / DDPM sampling steps
ETA = 0.0                    # 0 = DDIM (deterministic), 1 = DDPM-like (Eq. 6)
N_SAMPLES = 16               # images per sampling run
TRAIN_STEPS = 80             # optimiser steps of the live training demo (batch 32; a few seconds on a quiet CPU)
DEVICE = zoo.get_device()
MODEL = {"toy": "toy-ddpm", "real": "ddpm-celebahq"}[MODE]

# %% [markdown]
# ## 1. The toy world
# The stand-in for CelebA: 32×32 faces of people, cats and robots, drawn procedurally, so that every image comes
# with its attributes, a segmentation mask and a caption. It is deterministic (the same seed gives the same
# pixels) and endless.

# %%
batch = world.sample(16, seed=SEED)
show.rows([("images", batch.images), ("masks", show.mask_to_rgb(batch.masks))], nrow=8);

# %%
for c in batch.captions[:4]:
    print(c)
print("mask classes:", ", ".join(world.MASK_CLASSES))

# %% [markdown]
# Attributes can be fixed or changed on the same geometry, and the same faces exist in two more *domains*:
# `photo` (lighting, colour cast, blur and sensor noise: the "real photograph" no model is trained on) and
# `painting` (shifted palette and brush strokes: out of domain, like METFACES is for FFHQ).

# %%
cats = world.sample(8, seed=SEED + 1, subject="cat", eyes_open=True)
show.rows([("cats", cats.images),
           ("same cats, eyes closed and a hat", world.with_attributes(cats, eyes_open=False, hat=True).images),
           ("photo", world.render(cats.attributes, seed=cats.seed, domain="photo").images),
           ("painting", world.render(cats.attributes, seed=cats.seed, domain="painting").images)], nrow=8);

# %%
# NBVAL_CHECK_OUTPUT
again = world.sample(16, seed=SEED)
same_pixels = torch.equal(again.images, batch.images)
parsed = world.parse_caption(batch.captions[0])
caption_agrees = parsed == {k: v for k, v in batch.attributes[0].as_dict().items() if k in parsed}
print("same seed, same pixels:", same_pixels)
print("parsed caption:", caption_agrees)
assert same_pixels, "claim 'the world is deterministic (same seed, same pixels)': two draws with seed SEED differ"
assert caption_agrees, f"claim 'each image comes with its caption': caption {batch.captions[0]!r} parses to {parsed}"

# %% [markdown]
# ## 2. The forward process
# A noise schedule $\beta_1 < \dots < \beta_T$ with $\bar\alpha_t = \prod_{s\le t}(1-\beta_s)$ gives the noisy image
# in one jump (thesis Eq. 1):
#
# $$\mathbf{x}_t = \sqrt{\bar\alpha_t}\,\mathbf{x}_0 + \sqrt{1-\bar\alpha_t}\,\mathbf{n},\qquad \mathbf{n}\sim\mathcal N(\mathbf 0, \mathbf I).$$
#
# We use the linear schedule of DDPM ($\beta$ from $10^{-4}$ to $0.02$, $T = 1000$), as the CelebA-HQ DDPM does.

# %%
scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
alpha_bar = scheduler.alphas_cumprod
x0 = batch.images[:1]
n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(SEED))
ts = [0, 50, 100, 200, 300, 500, 700, 999]
x_ts = torch.cat([alpha_bar[t] ** 0.5 * x0 + (1 - alpha_bar[t]) ** 0.5 * n for t in ts])
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 2.2), dpi=72, gridspec_kw={"width_ratios": [1, 2.6]})
a.plot(alpha_bar); a.set_xlabel("t"); a.set_title(r"$\bar\alpha_t$", fontsize=10)
show.grid(x_ts, nrow=8, ax=b, title="x_t at t = " + ", ".join(map(str, ts)));

# %%
# NBVAL_CHECK_OUTPUT
t = torch.tensor(ts)
ours = alpha_bar[t].view(-1, 1, 1, 1) ** 0.5 * x0 + (1 - alpha_bar[t]).view(-1, 1, 1, 1) ** 0.5 * n
print("Eq. 1 equals scheduler.add_noise:", torch.allclose(ours, scheduler.add_noise(x0.repeat(8, 1, 1, 1), n.repeat(8, 1, 1, 1), t), atol=1e-6))
print(f"alpha_bar at t = 0, 500, 999: {alpha_bar[0]:.4f}, {alpha_bar[500]:.4f}, {alpha_bar[999]:.6f}")
assert torch.allclose(ours, scheduler.add_noise(x0.repeat(8, 1, 1, 1), n.repeat(8, 1, 1, 1), t), atol=1e-6), \
    "claim 'Eq. 1 is what scheduler.add_noise computes': they differ by more than 1e-6"

# %% [markdown]
# ## 3. Training a tiny DDPM, live
# The network $\epsilon_\theta(\mathbf{x}_t, t)$ learns to predict the noise $\mathbf n$ that made $\mathbf x_t$:
# minimise $\lVert \mathbf n - \epsilon_\theta(\sqrt{\bar\alpha_t}\mathbf x_0 + \sqrt{1-\bar\alpha_t}\mathbf n, t)\rVert^2$
# over random images, timesteps and noise. Here a very small `UNet2DModel` trains for `TRAIN_STEPS` steps on this
# CPU: enough to watch the loss fall, far from enough for good pictures.

# %%
gen = torch.Generator().manual_seed(SEED)
torch.manual_seed(SEED)
tiny = UNet2DModel(sample_size=32, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                   down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
opt = torch.optim.AdamW(tiny.parameters(), lr=1e-3)
losses, start = [], time.time()
for step, data in zip(range(TRAIN_STEPS), world.stream(32, seed=SEED)):
    noise = torch.randn(data.images.shape, generator=gen)
    t = torch.randint(0, 1000, (32,), generator=gen)
    loss = F.mse_loss(tiny(scheduler.add_noise(data.images, noise, t), t).sample, noise)
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(loss.item())
train_seconds = time.time() - start
plt.figure(figsize=(6, 2.2), dpi=100); plt.plot(losses); plt.yscale("log"); plt.xlabel("step"); plt.ylabel("loss")
plt.title(f"{sum(p.numel() for p in tiny.parameters()) / 1e3:.0f}k parameters, {len(losses)} steps", fontsize=10);

# %%
quick = sampling.sample(tiny, DDIMScheduler.from_config(scheduler.config), batch_size=8, num_inference_steps=25,
                        generator=torch.Generator().manual_seed(SEED))
show.grid(quick.images, nrow=8, title=f"after {len(losses)} steps ({train_seconds:.0f} s) of training");


# %%
def roughness(images):
    """Mean |difference| between horizontally neighbouring pixels: high for noise, low for the flat toy world."""
    return float((images[..., 1:] - images[..., :-1]).abs().mean())

loss_start, loss_end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
rough_quick, rough_world = roughness(quick.images), roughness(batch.images)
display(Markdown(
    f"In {len(losses)} steps the loss has fallen {loss_start / loss_end:.0f}-fold (from {loss_start:.2f} over the "
    f"first 5 steps to {loss_end:.3f} over the last 5), yet the samples are still noise: neighbouring pixels differ by "
    f"{rough_quick:.2f} on average, against {rough_world:.2f} in the toy world's images. A small loss averaged over "
    f"all $t$ is easy to reach on the nearly clean timesteps, while turning pure noise into a face needs the model to "
    f"be right at *every* step of the chain. `toy-ddpm` is the same recipe with a 2.7M-parameter UNet trained for "
    f"thousands of steps (its model card, printed below, gives the exact command, steps and minutes)."))

# %%
assert loss_start / loss_end >= 3, (
    f"claim 'the loss has fallen {loss_start / loss_end:.0f}-fold': first-5 mean {loss_start:.3f} / last-5 mean "
    f"{loss_end:.3f} = {loss_start / loss_end:.1f}, bound >= 3")
assert rough_quick > 2 * rough_world, (
    f"claim 'the samples are still noise': their roughness {rough_quick:.3f} should exceed twice the world's "
    f"{rough_world:.3f}")

# %%
ddpm = zoo.load(MODEL, device=DEVICE)
print(ddpm.card.split("## Measured")[0] if ddpm.card else ddpm.source)
print(f"parameters: {sum(p.numel() for p in ddpm.unet.parameters()) / 1e6:.2f}M")


# %% [markdown]
# ## 4. The reverse process: DDPM and DDIM
# One reverse step (thesis Eqs. 3-6, DDIM paper Eq. 12):
#
# $$\mathbf{x}_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\mathbf{P}_t + \mathbf{D}_t + \sigma_t \mathbf{z}_t \qquad (3)$$
# $$\mathbf{P}_t = \frac{\mathbf{x}_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(\mathbf{x}_t)}{\sqrt{\bar\alpha_t}} \qquad (4)
# \qquad\qquad \mathbf{D}_t = \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\epsilon_\theta(\mathbf{x}_t) \qquad (5)$$
# $$\sigma_t = \eta\,\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}} \qquad (6)$$
#
# $\mathbf P_t$ is the model's guess of the clean image, $\mathbf D_t$ points back towards $\mathbf x_t$. With
# $\eta = 0$ the step is deterministic (DDIM); with $\eta = 1$ it is the DDPM posterior.

# %%
def draw(eta, steps, n=N_SAMPLES, seed=SEED):
    return sampling.sample(ddpm.unet, ddpm.scheduler, batch_size=n, num_inference_steps=steps, eta=eta,
                           generator=torch.Generator().manual_seed(seed), device=DEVICE).images

t0 = time.time()
ddim = draw(0.0, NUM_INFERENCE_STEPS)
seconds = time.time() - t0
ddpm_like = draw(1.0, NUM_INFERENCE_STEPS)
ancestral = sampling.sample(ddpm.unet, ddpm.ddpm_scheduler, batch_size=N_SAMPLES, num_inference_steps=NUM_INFERENCE_STEPS,
                            generator=torch.Generator().manual_seed(SEED), device=DEVICE).images
show.rows([(f"DDIM, η = 0, {NUM_INFERENCE_STEPS} steps ({seconds:.1f} s)", ddim), ("DDIM, η = 1", ddpm_like),
           ("DDPMScheduler (ancestral)", ancestral)], nrow=8);

# %%
# The same x_T at 10 and 20 steps: how far apart are the two pictures, with and without fresh noise?
drift = {eta: float((draw(eta, 10, n=4) - draw(eta, 20, n=4)).abs().mean()) for eta in (0.0, 1.0)}
card_rows = {m[0]: tuple(map(float, m[1:])) for m in
             re.findall(r"^\| ([a-z_]+=?[a-z]*) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", ddpm.card or "", re.M)}
gap = {e: max(abs(v[i] - v[2]) for v in card_rows.values()) for i, e in ((0, 1), (1, 0))}
(white1, white0, white_w), (yellow1, yellow0, yellow_w) = card_rows["background=white"], card_rows["background=yellow"]
display(Markdown(
    f"Move the sliders: η blends DDIM into DDPM, and fewer steps trade quality for speed. The same seed starts every "
    f"picture from the same $\\mathbf x_T$, so at η = 0 the faces stay the same people as the step count changes "
    f"(10 and 20 steps differ by {drift[0.0]:.3f} per pixel on average), while η > 0 injects fresh noise at every step "
    f"and they drift (η = 1: {drift[1.0]:.3f}). The cell draws all 30 settings of the two sliders when it runs "
    f"(four images each, at most 30 steps; the status line under the picture gives the time it took), so a move "
    f"only swaps pictures.\n\n"
    f"η changes more than sharpness. Over 256 samples (toy-ddpm's card, written by `python -m diffnb.zoo install`), "
    f"deterministic DDIM draws a white background for {white0:.1%} of the images and a yellow one for {yellow0:.1%}, "
    f"where the world has {white_w:.0%} each; with η = 1 the same model draws {white1:.1%} and {yellow1:.1%}, and every "
    f"attribute frequency comes within {gap[1]:.3f} of the world's (η = 0: {gap[0]:.3f}). A likely cause, which "
    f"Exercise 5 tests: the scheduler clips $\\mathbf P_t$ to $[-1, 1]$, and at high noise that pulls a deterministic "
    f"trajectory toward the middle of the palette, while fresh noise at every step lets it recover."))

# %%
assert drift[0.0] < drift[1.0] / 2, (
    f"claim 'at η = 0 the faces stay the same as the steps change, at η = 1 they drift': per-pixel change "
    f"10 -> 20 steps {drift[0.0]:.3f} at η = 0 should be under half of {drift[1.0]:.3f} at η = 1")
assert white0 < white1 and white0 < white_w - 0.1 and yellow0 < yellow_w, (
    f"claim 'DDIM under-draws white and yellow backgrounds': white {white0} (η 0) vs {white1} (η 1) vs world "
    f"{white_w}; yellow {yellow0} vs world {yellow_w}")
assert gap[1] <= 0.10 < gap[0], (
    f"claim 'with η = 1 every frequency is within 0.10 of the world's, not with η = 0': gaps {gap[1]:.3f} (η 1), "
    f"{gap[0]:.3f} (η 0)")

# %%
# NBVAL_IGNORE_OUTPUT
widgets.interactive_grid(lambda eta, steps: draw(eta, steps, n=4), nrow=4,
                         eta=widgets.slider(0.0, 1.0, 0.25, ETA, "η"),
                         steps=widgets.int_slider(5, 30, 5, 20, "steps"), precompute=True)

# %% [markdown]
# ## 5. $\mathbf P_t$ and $\mathbf D_t$ along the trajectory
# One DDIM run (η = 0, 50 steps), shown at eight of its steps. The top two rows are images; the bottom row is the
# size of $\mathbf D_t$ at each pixel (the length of its RGB vector), drawn on **one colour scale shared by all eight
# panels**, so that its shrinking is visible.

# %%
traj = sampling.sample(ddpm.unet, ddpm.scheduler, batch_size=1, num_inference_steps=NUM_INFERENCE_STEPS,
                       generator=torch.Generator().manual_seed(SEED + 3), return_trajectory=True, device=DEVICE).trajectory
picked = [traj[int(i)] for i in torch.linspace(0, len(traj) - 1, 8).round()]
d_size = [s["dir_xt"][0].norm(dim=0) for s in picked]            # (H, W) per panel
d_max = max(float(d.max()) for d in d_size)
fig, axes = plt.subplots(3, 8, figsize=(9, 3.9), dpi=100, gridspec_kw={"hspace": 0.35, "wspace": 0.05})
for c, s in enumerate(picked):
    axes[0, c].imshow(show.grid_array(s["x_t"], nrow=1, pad=0)); axes[0, c].set_title(f"t = {s['t']}", fontsize=9)
    axes[1, c].imshow(show.grid_array(s["pred_x0"], nrow=1, pad=0))
    im = axes[2, c].imshow(d_size[c], cmap="magma", vmin=0, vmax=d_max)
for r, label in enumerate(["x_t", "P_t (Eq. 4)", "|D_t| (Eq. 5)"]):
    axes[r, 0].set_ylabel(label, fontsize=9)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=axes[2, :], fraction=0.02, pad=0.01, label="|D_t| per pixel (shared scale)");


# %%
def blur(images, k=8):
    """The layout: the mean colour of k x k blocks."""
    return F.avg_pool2d(images, k)

final = traj[-1]["pred_x0"]
layout_err = [float((blur(s["pred_x0"]) - blur(final)).abs().mean()) for s in picked]
detail_err = [float(((s["pred_x0"] - blur(s["pred_x0"]).repeat_interleave(8, 2).repeat_interleave(8, 3))
                     - (final - blur(final).repeat_interleave(8, 2).repeat_interleave(8, 3))).abs().mean()) for s in picked]
d_rms = [float(s["dir_xt"].pow(2).mean().sqrt()) for s in picked]
ts_shown = [s["t"] for s in picked]
settled = lambda errs: next(t for t, e in zip(ts_shown, errs) if e < 0.05)
t_layout, t_detail = settled(layout_err), settled(detail_err)
noisy = [t for t, s in zip(ts_shown, picked) if roughness(s["pred_x0"]) > 2 * roughness(final)]
display(Markdown(
    f"At t = {', '.join(map(str, noisy))}, $\\mathbf P_t$ is still mostly noise (its neighbouring pixels differ more "
    f"than twice as much as the final image's), because $\\bar\\alpha_t$ is so small there that Eq. 4 multiplies the "
    f"model's error by up to {1 / float(alpha_bar[ts_shown[0]]) ** 0.5:.0f}. After that it is a blurry guess of the "
    f"final face, and the layout settles before the details: the mean colour of 8×8 blocks comes within 0.05 of the "
    f"final image's from t = {t_layout} on, the detail inside those blocks only from t = {t_detail}. "
    f"$\\mathbf D_t$ is the predicted noise scaled by $\\sqrt{{1-\\bar\\alpha_{{t-1}}}}$ (η = 0): its size falls "
    f"from {d_rms[0]:.2f} (root mean square) at t = {ts_shown[0]} to {d_rms[-2]:.2f} at t = {ts_shown[-2]}, and is "
    f"exactly {d_rms[-1]:g} at the last step, where $\\bar\\alpha_{{t-1}} = 1$, so the last step returns "
    f"$\\mathbf P_t$ itself."))

# %%
assert len(noisy) >= 1 and noisy == ts_shown[:len(noisy)], (
    f"claim 'P_t is noise at the start': panels whose roughness exceeds twice the final image's: {noisy}, "
    f"expected the first one(s) of {ts_shown}")
assert t_layout > t_detail, (
    f"claim 'the layout settles before the details': layout within 0.05 from t = {t_layout}, details from "
    f"t = {t_detail}; the layout's t should be larger (earlier)")
assert all(a > b for a, b in zip(d_rms, d_rms[1:])) and d_rms[-1] == 0, (
    f"claim 'D_t shrinks at every panel and is 0 at the last step': RMS {[round(d, 3) for d in d_rms]}")

# %% [markdown]
# ## 6. A hand-written step equals the library's
# `diffnb.sampling.ddim_step` is Eqs. 3-6 written out; `sample` above drives `diffusers`' `DDIMScheduler.step`.
# Run both from the same $\mathbf x_T$ with the same noise and compare.

# %%
# NBVAL_CHECK_OUTPUT
sched = DDIMScheduler.from_config(ddpm.scheduler.config)
sched.set_timesteps(NUM_INFERENCE_STEPS)
x = torch.randn((2, 3, ddpm.image_size, ddpm.image_size), generator=torch.Generator().manual_seed(SEED)).to(DEVICE)
worst = 0.0
gen_noise = torch.Generator().manual_seed(SEED)
with torch.inference_mode():
    for t in sched.timesteps:
        eps = ddpm.unet(x, t).sample
        z = torch.randn(x.shape, generator=gen_noise).to(DEVICE)
        ours = sampling.ddim_step(eps, t, x, sched, eta=0.5, noise=z)
        ref = sched.step(eps, t, x, eta=0.5, variance_noise=z)
        worst = max(worst, (ours.prev_sample - ref.prev_sample).abs().max().item())
        x = ref.prev_sample
print(f"max |ours - diffusers| over {NUM_INFERENCE_STEPS} steps at η = 0.5 below 1e-5: {worst < 1e-5}")
assert worst < 1e-5, f"claim 'the hand-written step equals diffusers' step': max difference {worst:.2e}, bound 1e-5"

# %% [markdown]
# ## 7. Meet the zoo
# The toy models each stand in for a real one. Every later notebook measures with them, so they are measured
# too: here live on fresh images, and on more images in their model cards and in `tests/test_quality.py`.
# The perceptual distance is LPIPS's formula computed by the `lpips` package over toy-attr's trunk (the real
# AlexNet trunk needs an ImageNet download); every table that uses it says "toy-LPIPS".

# %%
attr = zoo.load("toy-attr", device=DEVICE)
clip = zoo.load("toy-clip", device=DEVICE)
seg = zoo.load("toy-seg", device=DEVICE)
tti = zoo.load("toy-t2i", device=DEVICE)
lpips_toy = metrics.toy_lpips(attr.model)
acc = {d: evaluate.attr_accuracy(attr.model, domain=d, n=500, seed=50_000) for d in ("toy", "photo")}
quality = evaluate.sample_quality(ddpm_like, attr.model)   # η = 1, as the model card measures
retrieval = evaluate.clip_retrieval(clip.model, clip.tokenizer, n_groups=2, seed=51_000)
eyes = world.sample(32, seed=SEED + 5, eyes_open=True)
d_closed = lpips_toy(eyes.images, world.with_attributes(eyes, eyes_open=False).images).mean()
d_shift = lpips_toy(eyes.images, torch.roll(eyes.images, 1, dims=3)).mean()
seg_iou = evaluate.seg_miou(seg.model, domain="photo", n=200, seed=52_000)["mean_iou"]
asked = world.sample(8, seed=SEED + 6)
drawn = t2i.sample(tti, asked.captions, guidance_scale=5.0, num_inference_steps=25, eta=1.0,
                   generator=torch.Generator().manual_seed(SEED))
subject_right = sum(r.subject == a.subject for r, a in zip(attr.model.predict(drawn.images).attributes(), asked.attributes))

def n_params(m):
    return f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M"

rows = [("toy-ddpm", n_params(ddpm.unet), "google/ddpm-celebahq-256",
         f"{quality.confident_all_binary:.0%} of the {N_SAMPLES} η = 1 samples above read confidently by toy-attr"),
        ("toy-attr", n_params(attr.model), "CLIP zero-shot attribute prompts",
         f"worst binary accuracy {acc['toy'].worst_binary():.1%} (toy), {acc['photo'].worst_binary():.1%} (photo)"),
        ("toy-clip", n_params(clip.model), "openai/clip-vit-base-patch16",
         f"caption -> image top-1 among 64 pairs: {retrieval:.0%}"),
        ("toy-seg", n_params(seg.model), "a CelebAMask-HQ face parser (SegFormer)",
         f"mean IoU {seg_iou:.2f} on 200 photo images"),
        ("toy-t2i", n_params(tti.unet), "CompVis/stable-diffusion-v1-4",
         f"subject right in {subject_right} of 8 captions (guidance 5, 25 steps, η = 1)"),
        ("toy-LPIPS", "(trunk)", "lpips.LPIPS(net='alex')",
         f"closed eyes {d_closed:.3f} vs a 1-pixel shift {d_shift:.3f}")]
for name, size, real, measured in rows:
    print(f"{name:10s} {size:>8s}  {real:42s} {measured}")

# %%
show.rows([("toy-t2i, one caption each (the first: " + asked.captions[0] + ")", drawn.images), ("toy-seg reads them as", show.mask_to_rgb(seg.model.predict(drawn.images)))], nrow=8)
print("toy-attr reads the first DDIM samples as:")
for c in [world.caption(a) for a in attr.model.predict(ddim[:4]).attributes()]:
    print(" ", c)

# %% [markdown]
# ## Summary
# - The toy world gives images with known attributes, masks and captions, in three domains.
# - The forward process jumps to any $t$ in one step (Eq. 1); training teaches $\epsilon_\theta$ to predict the noise.
# - One reverse step is $\sqrt{\bar\alpha_{t-1}}\mathbf P_t + \mathbf D_t + \sigma_t\mathbf z_t$ (Eqs. 3-6); η moves between
#   deterministic DDIM (η = 0) and DDPM (η = 1).
# - `diffnb.sampling.ddim_step` is that formula, and it equals `diffusers`' scheduler; from here on the course uses
#   the library's step.
#
# ## Exercises
# 1. Show numerically that `sampling.ddim_step(..., eta=1)` equals `sampling.ddpm_step` when clipping is off, and find
#    where they differ when `clip_sample=True`. Why?
# 2. Plot $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ for the linear and the `squaredcos_cap_v2` schedules. Which
#    spends more steps at low noise?
# 3. Sample with 5, 10, 20 and 50 DDIM steps from the same $\mathbf x_T$ and measure how often toy-attr reads the same
#    attributes as at 50 steps.
# 4. Train the tiny model for 5 minutes instead of `TRAIN_STEPS` steps. What appears first: colours, layout, or eyes?
# 5. Measure the background frequencies of 256 toy-ddpm samples with `evaluate.ddpm_samples(ddpm, eta=...)` and
#    `evaluate.sample_quality` at η = 0, 0.5 and 1, then at η = 0 with `clip_sample=False` in the scheduler config.
#    Which setting draws white backgrounds as often as the world does, and what does turning clipping off cost?
#
# ## Run it on the real models
# Set `MODE = "real"` in the settings cell on a machine with a GPU and network. `zoo.load("ddpm-celebahq")` then
# downloads `google/ddpm-celebahq-256` (455 MB) and every sampling cell runs unchanged at 256×256; the toy-world cells
# and toy-attr stay as they are (toy-attr reads only the toy world). The 256×256 model is far larger than toy-ddpm,
# so use a GPU; the timings printed above are this CPU's, for the toy model.
