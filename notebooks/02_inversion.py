# %% [markdown]
# # 02 · Inversion: from an image back to its noise
#
# **After this notebook you can** invert an image into a diffusion model's noise in three ways and say what each
# costs: DDIM inversion (deterministic, approximate), null-text inversion (exact enough under classifier-free
# guidance, at the price of an optimisation), and edit-friendly DDPM inversion (exact, with noise maps that are not
# Gaussian). Every editing method in the rest of the course starts here.
#
# Sources: thesis Eqs. 7-9 and §4.5 (Lundberg 2023), StyleDiffusion §3.2.2 and Table 3 (Li et al. 2023), with
# null-text inversion (Mokady et al. 2023) and negative-prompt inversion (Miyake et al. 2023) as StyleDiffusion
# describes them.

# %%
import time

import matplotlib.pyplot as plt
import torch

from diffnb import inversion, metrics, sampling, show, t2i, widgets, world, zoo

# %% [markdown]
# ## Settings
# `MODE = "real"` swaps toy-ddpm for `google/ddpm-celebahq-256` and toy-t2i for Stable Diffusion 1.4 (a GPU and
# about 6 GB of downloads; see the last section). `FULL_RUN = True` gives null-text inversion Mokady et al.'s ten
# inner iterations per step and adds 50 steps to the table.

# %%
MODE = "toy"                 # "toy" (offline, CPU) or "real" (GPU + network)
SEED = 0                     # every random draw comes from a CPU torch.Generator seeded from this
STEPS = 25                   # DDIM steps for the text-conditioned model
GUIDANCE = 5.0               # classifier-free guidance scale of toy-t2i (SD uses 7.5)
FULL_RUN = False             # null-text: 10 inner iterations (Mokady et al.) instead of 4; table adds 50 steps
NULL_TEXT = dict(inner_steps=10 if FULL_RUN else 4, lr=5e-2)
STEP_COUNTS = (10, 25, 50) if FULL_RUN else (10, 25)
N_IMAGES = 3                 # held-out images per domain
DEVICE = zoo.get_device()
ddpm = zoo.load({"toy": "toy-ddpm", "real": "ddpm-celebahq"}[MODE], device=DEVICE)
tti = zoo.load({"toy": "toy-t2i", "real": "sd-1.4"}[MODE], device=DEVICE)
perceptual = metrics.toy_lpips(zoo.load("toy-attr").model) if MODE == "toy" else metrics.real_lpips()

# %% [markdown]
# ## 1. The images
# Held-out images (seeds the models never trained on) from the `toy` domain and from `photo` and `painting`, which
# no model has seen at all. Captions come with them; null-text inversion needs one.

# %%
held_out = {d: world.sample(N_IMAGES, seed=90_000 + SEED, domain=d) for d in ("toy", "photo", "painting")}
show.rows([(d, b.images) for d, b in held_out.items()], nrow=N_IMAGES, width=3);
for c in held_out["toy"].captions:
    print(c)

# %% [markdown]
# ## 2. DDIM inversion (Eq. 7)
# DDIM sampling with η = 0 is an ODE solver, so it can be run backwards. One inversion step goes *up* in noise,
#
# $$\mathbf x_{t} = \sqrt{\bar\alpha_{t}}\;\underbrace{\frac{\mathbf x_{t-\Delta} - \sqrt{1-\bar\alpha_{t-\Delta}}\,\epsilon_\theta(\mathbf x_{t-\Delta}, t)}{\sqrt{\bar\alpha_{t-\Delta}}}}_{\mathbf P}
# \;+\;\sqrt{1-\bar\alpha_{t}}\;\epsilon_\theta(\mathbf x_{t-\Delta}, t) \qquad (7)$$
#
# using the noise predicted at the point we stand on, $\mathbf x_{t-\Delta}$, as if it were the noise at
# $\mathbf x_t$, which we do not know yet. That linearisation is the only approximation: with small steps the two
# predictions agree and sampling back lands on the image. `diffnb.inversion.ddim_invert_step` is Eq. 7 written out;
# the notebook uses `diffusers`' `DDIMInverseScheduler` and checks they agree.

# %%
# NBVAL_CHECK_OUTPUT
x0 = held_out["toy"].images.to(DEVICE)
_, inv_sched = inversion.inversion_schedulers(ddpm.scheduler)
inv_sched.set_timesteps(50)
x, worst = x0, 0.0
with torch.no_grad():
    for t in inv_sched.timesteps:
        eps = ddpm.unet(x, t).sample
        ours = inversion.ddim_invert_step(eps, t, x, inv_sched)
        x = inv_sched.step(eps, t, x).prev_sample
        worst = max(worst, (ours - x).abs().max().item())
print(f"Eq. 7 by hand equals DDIMInverseScheduler.step to 1e-5: {worst < 1e-5}")


# %%
def psnr(a, b):
    return float(metrics.psnr(a, b).clamp(max=99).mean())

steps_axis, curve = (5, 10, 20, 50), {}
for d in ("toy", "photo"):
    images = held_out[d].images.to(DEVICE)
    curve[d] = [psnr(inversion.ddim_reconstruct(ddpm.unet, ddpm.scheduler,
                                                inversion.ddim_invert(ddpm.unet, ddpm.scheduler, images, n).x_T.to(DEVICE), n),
                     held_out[d].images) for n in steps_axis]
plt.figure(figsize=(4.5, 2.6), dpi=72)
for d, ys in curve.items():
    plt.plot(steps_axis, ys, "o-", label=d)
plt.xscale("log"); plt.xlabel("DDIM steps"); plt.ylabel("reconstruction PSNR (dB)"); plt.legend()
plt.title("unconditional DDIM inversion (toy-ddpm)", fontsize=10);

# %% [markdown]
# The error falls fast with the number of steps: each step's linearisation error shrinks with the step size.
# `photo` images reconstruct a little worse than `toy` ones: the model has never seen their lighting and noise, so
# its noise predictions along their trajectory are less smooth.
#
# ## 3. Text and guidance break it
# A text-to-image model is sampled with classifier-free guidance,
# $\tilde\epsilon = \epsilon_\theta(\mathbf x_t, \varnothing) + w\,(\epsilon_\theta(\mathbf x_t, c) - \epsilon_\theta(\mathbf x_t, \varnothing))$.
# Inverting with $\tilde\epsilon$ scales up the linearisation error: $\tilde\epsilon$ extrapolates away from the
# conditional prediction by a factor $w$, so it changes faster from one step to the next, and using it one step
# early costs more. (With $w = 1$ it is plain conditional DDIM.) Mokady et al. saw the reconstruction fall apart at
# Stable Diffusion's $w = 7.5$; on toy-t2i the loss is mild up to $w \approx 5$ and steep beyond.

# %%
scales = (1.0, 3.0, 5.0, 7.5)
images = torch.cat([held_out["toy"].images, held_out["photo"].images])        # toy and photo, one batch
prompts = held_out["toy"].captions + held_out["photo"].captions
by_scale = []
for w in scales:   # the toy images only, to save time
    inv = inversion.text_ddim_invert(tti, images[:N_IMAGES], prompts[:N_IMAGES], STEPS, guidance_scale=w)
    by_scale.append(psnr(inversion.text_reconstruct(tti, inv), images[:N_IMAGES]))
plt.figure(figsize=(4.5, 2.6), dpi=72); plt.plot(scales, by_scale, "o-")
plt.xlabel("guidance scale w"); plt.ylabel("PSNR (dB)"); plt.title(f"toy-t2i, DDIM inversion at {STEPS} steps, toy images", fontsize=10);
print("PSNR (dB) by guidance scale:", ", ".join(f"w = {w:g}: {p:.1f}" for w, p in zip(scales, by_scale)))


# %% [markdown]
# ## 4. Null-text inversion repairs it
# Mokady et al. keep the model and the prompt, and change only what the unconditional branch sees. First invert
# with $w = 1$ to get a *pivot* trajectory $\mathbf z^*_T, \dots, \mathbf z^*_0$ (accurate, §3). Then walk back from
# $\bar{\mathbf z}_T = \mathbf z^*_T$ and, at each step, optimise a null embedding $\varnothing_t$ so that the guided
# step lands on the pivot:
#
# $$\min_{\varnothing_t}\ \big\lVert \mathbf z^*_{t-1} - \mathrm{DDIM}\big(\bar{\mathbf z}_t,\ \tilde\epsilon(\bar{\mathbf z}_t, c, \varnothing_t, w)\big)\big\rVert^2$$
#
# with Adam, starting from the previous step's $\varnothing_{t+1}$. The per-step embeddings are what the method
# learns; editing later reuses them. *Negative-prompt inversion* (Miyake et al.) skips the optimisation by setting
# $\varnothing_t = c$: guidance then cancels and sampling is conditional DDIM, as accurate as the $w = 1$ inversion
# and free.
#
# Here the fast setting uses 4 Adam iterations per step at learning rate 0.05 (toy-clip's embeddings are scaled
# differently from CLIP's; Mokady et al. use 10 at 0.01 on Stable Diffusion).

# %%
def timed(make):
    t0 = time.time()
    inv = make()
    return inv, time.time() - t0

runs = {"DDIM (text, w = %g)" % GUIDANCE: timed(lambda: inversion.text_ddim_invert(tti, images, prompts, STEPS, GUIDANCE)),
        "negative-prompt": timed(lambda: inversion.negative_prompt_invert(tti, images, prompts, STEPS, GUIDANCE)),
        "null-text": timed(lambda: inversion.null_text_invert(tti, images, prompts, STEPS, GUIDANCE, **NULL_TEXT))}
null, null_seconds = runs["null-text"]
recs = {k: inversion.text_reconstruct(tti, inv) for k, (inv, _) in runs.items()}
reused = {(k, STEPS): v for k, v in runs.items()}    # the table below reuses these runs
show.rows([("original (toy, photo)", images)] + [(f"{k}: {psnr(v, images):.1f} dB", v) for k, v in recs.items()],
          nrow=2 * N_IMAGES, width=5);
print(f"null-text inversion: {null_seconds:.1f} s for {len(images)} images; its PSNR on toy images alone: "
      f"{psnr(recs['null-text'][:N_IMAGES], images[:N_IMAGES]):.1f} dB")

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.4), dpi=72)
a.semilogy(null.losses); a.set_xlabel("sampling step"); a.set_title("retrace loss after optimising ∅_t", fontsize=10)
drift = [float((e - null.null_embeddings[0]).norm() / null.null_embeddings[0].norm()) for e in null.null_embeddings]
b.plot(drift); b.set_xlabel("sampling step"); b.set_title("‖∅_t − ∅(\"\")‖ / ‖∅(\"\")‖", fontsize=10);

# %% [markdown]
# ## 5. Edit-friendly DDPM inversion (Eqs. 8-9)
# Huberman-Spiegelglas et al. give up on a deterministic path. Draw every $\mathbf x_t$ *independently* from the
# forward process, $\mathbf x_t = \sqrt{\bar\alpha_t}\,\mathbf x_0 + \sqrt{1-\bar\alpha_t}\,\tilde{\mathbf n}_t$ (Eq. 8),
# then solve the DDPM step for the noise that connects consecutive ones,
#
# $$\mathbf z_t = \frac{\mathbf x_{t-1} - \mu_t(\mathbf x_t)}{\sigma_t} \qquad (9)$$
#
# Sampling with these $\mathbf z_t$ instead of fresh noise returns $\mathbf x_0$ exactly, at any step count. The price:
# the $\mathbf z_t$ are not independent Gaussians, they carry the image (look at them), which is what makes them
# *edit-friendly*: notebook 08 nudges them (Eq. 19).

# %%
# NBVAL_CHECK_OUTPUT
x0 = held_out["photo"].images.to(DEVICE)
ef = inversion.edit_friendly_invert(ddpm.unet, ddpm.scheduler, x0, STEPS, generator=torch.Generator().manual_seed(SEED))
exact = inversion.edit_friendly_sample(ddpm.unet, ddpm.scheduler, ef)
print(f"max |reconstruction - image| below 1e-4: {(exact - x0.cpu()).abs().max().item() < 1e-4}")

# %%
picked = [0, STEPS // 4, STEPS // 2, 3 * STEPS // 4, STEPS - 2]
zs = torch.cat([ef.zs[i][:1] for i in picked])
show.rows([("photo, DDPM-reconstructed", exact), ("noise maps z_t of image 0 at steps " + ", ".join(map(str, picked)),
           (zs / 3).clamp(-1, 1))], nrow=max(N_IMAGES, len(picked)), width=4);
stds = [float(z.std()) for z in ef.zs[:-1]]
corr = [float(torch.corrcoef(torch.stack([z[0].flatten(), x0[0].cpu().flatten()]))[0, 1]) for z in ef.zs[:-1]]
print(f"std of z_t: {min(stds):.2f} to {max(stds):.2f} (fresh noise: 1); correlation with the image: {min(corr):+.2f} to {max(corr):+.2f}")


# %% [markdown]
# ## 6. The table
# Reconstruction of the held-out `toy` and `photo` images by every method, at several step counts. PSNR and SSIM
# are scikit-image's; the perceptual distance is named in the header; seconds are per image on this machine.
# The unconditional methods use toy-ddpm; the text methods use toy-t2i with each image's caption at
# $w = $ `GUIDANCE`.

# %%
def measure(method, n_steps):
    # invert and reconstruct the toy and photo images (one batch); PSNR, SSIM, perceptual distance, s/image per domain
    t0 = time.time()
    if method == "DDIM (unconditional)":
        rec = inversion.ddim_reconstruct(ddpm.unet, ddpm.scheduler,
                                         inversion.ddim_invert(ddpm.unet, ddpm.scheduler, images.to(DEVICE), n_steps).x_T.to(DEVICE), n_steps)
    elif method == "DDPM (edit-friendly)":
        inv = inversion.edit_friendly_invert(ddpm.unet, ddpm.scheduler, images.to(DEVICE), n_steps, generator=torch.Generator().manual_seed(SEED))
        rec = inversion.edit_friendly_sample(ddpm.unet, ddpm.scheduler, inv)
    else:
        make = {"DDIM (text, w = %g)" % GUIDANCE: lambda: inversion.text_ddim_invert(tti, images, prompts, n_steps, GUIDANCE),
                "negative-prompt": lambda: inversion.negative_prompt_invert(tti, images, prompts, n_steps, GUIDANCE),
                "null-text": lambda: inversion.null_text_invert(tti, images, prompts, n_steps, GUIDANCE, **NULL_TEXT)}[method]
        inv, before = reused.get((method, n_steps), (None, 0.0))
        t0 -= before                      # a reused run counts with the time it took
        rec = inversion.text_reconstruct(tti, inv if inv is not None else make())
    seconds = (time.time() - t0) / len(images)
    rec = rec.clamp(-1, 1).cpu()
    out = {}
    for k, d in enumerate(("toy", "photo")):
        r, x = rec[k * N_IMAGES:(k + 1) * N_IMAGES], images[k * N_IMAGES:(k + 1) * N_IMAGES]
        out[d] = (psnr(r, x), float(metrics.ssim(r, x).mean()), float(perceptual(r, x).mean()), seconds)
    return out

methods = ["DDIM (unconditional)", "DDIM (text, w = %g)" % GUIDANCE, "negative-prompt", "null-text", "DDPM (edit-friendly)"]
table = {(m, n, d): row for m in methods for n in STEP_COUNTS for d, row in measure(m, n).items()}
print(f"{'method':24s} {'steps':>5s} {'domain':>6s}  {'PSNR':>6s} {'SSIM':>6s} {perceptual.name.split()[0]:>9s} {'s/image':>8s}")
for (m, n, d), (p, s, l, sec) in table.items():
    print(f"{m:24s} {n:5d} {d:>6s}  {p:6.1f} {s:6.3f} {l:9.3f} {sec:8.2f}")

# %% [markdown]
# StyleDiffusion's Table 3 (Stable Diffusion 1.4, 512², 50 steps, w = 7.5, its own image set): null-text inversion
# **31.31 dB PSNR / 0.730 SSIM** at **0.28 s per timestep** on a GPU; StyleDiffusion 31.52 / 0.751 at 0.30 s.

# %%
n = STEP_COUNTS[-1]
ours = table[("null-text", n, "toy")]
print(f"{'':28s} {'PSNR':>6s} {'SSIM':>6s}  time")
print(f"{'Null-text (paper, SD 1.4)':28s} {31.314:6.2f} {0.730:6.3f}  0.28 s per timestep (GPU)")
print(f"{'Null-text (ours, toy-t2i)':28s} {ours[0]:6.2f} {ours[1]:6.3f}  {ours[3] / n:.2f} s per timestep per image ({n} steps, CPU)")


# %% [markdown]
# **What agrees.** The ordering is the paper's: guided DDIM inversion is the worst of the text methods, negative-prompt
# inversion recovers the $w = 1$ accuracy for free, and null-text inversion is better still at a cost in time;
# edit-friendly inversion is exact. **What differs.** Our absolute PSNRs are not comparable with the paper's: 32×32
# pixels with no VAE (Stable Diffusion's autoencoder alone caps its reconstructions near 30 dB), a model of a few
# million parameters, and 4 instead of 10 optimisation steps by default. On toy images, unconditional DDIM
# inversion is already accurate at 50 steps, unlike the thesis's real photographs, which needed 1000.
#
# ## 7. Try it
# Pick an image and its domain, the number of steps and the guidance scale: the picture shows the original and its
# DDIM reconstruction through toy-t2i (one inversion and one sampling run per redraw, cached).

# %%
# NBVAL_IGNORE_OUTPUT
def redraw(domain, index, steps, w):
    b = world.sample(N_IMAGES, seed=90_000 + SEED, domain=domain)
    img, cap = b.images[index:index + 1], b.captions[index:index + 1]
    rec = inversion.text_reconstruct(tti, inversion.text_ddim_invert(tti, img, cap, steps, guidance_scale=w))
    return torch.cat([img, rec])

widgets.interactive_grid(redraw, nrow=2, scale=6,
                         domain=widgets.dropdown(("toy", "photo", "painting"), "photo", "domain"),
                         index=widgets.int_slider(0, N_IMAGES - 1, 1, 0, "image"),
                         steps=widgets.int_slider(5, 25, 5, 10, "steps"),
                         w=widgets.slider(1.0, 7.5, 0.5, GUIDANCE, "w"))

# %% [markdown]
# ## Summary
# - DDIM inversion runs the η = 0 sampler backwards; its only error is using $\epsilon_\theta(\mathbf x_{t-\Delta})$ for
#   $\epsilon_\theta(\mathbf x_t)$ (Eq. 7), which shrinks with smaller steps.
# - Classifier-free guidance amplifies that error; null-text inversion absorbs it into per-step null embeddings,
#   negative-prompt inversion sidesteps it by making guidance cancel.
# - Edit-friendly DDPM inversion (Eqs. 8-9) is exact at any step count; its noise maps carry the image.
#
# ## Exercises
# 1. Plot the PSNR of DDIM inversion against steps for `painting` images. Why is the gap to `toy` larger than
#    for `photo`?
# 2. Run null-text inversion with `inner_steps=0`. Which method does it become, and what PSNR does it give?
# 3. Reconstruct a null-text inversion at a *different* guidance scale from the one it was optimised for. How
#    quickly does the PSNR fall?
# 4. Invert with edit-friendly inversion, then sample with the noise maps of a *different* image. What survives?
#
# ## Run it on the real models
# Set `MODE = "real"` on a GPU machine with network: toy-ddpm becomes `google/ddpm-celebahq-256` (455 MB) and
# toy-t2i becomes `CompVis/stable-diffusion-v1-4` (5.2 GB), inverted in its VAE's latent space through the same
# functions (`tests/test_latent_path.py` runs them on a tiny random SD-shaped pipeline). Use `GUIDANCE = 7.5`,
# `FULL_RUN = True` and photographs with captions of your own (`diffnb.images.to_tensor` reads files); expect
# about 0.3 s per null-text step on a recent GPU, as in StyleDiffusion's Table 3.
