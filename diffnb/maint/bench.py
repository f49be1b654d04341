"""The course benchmark: wall time of every notebook, and the throughputs the notebooks rely on.

    python -m diffnb.bench [--json] [--notebooks PATTERN] [--skip-notebooks]

Notebooks run headless with nbclient (kernel python3, cwd notebooks/) and are never written back.
Budgets (DESIGN.md, toy mode, 2-core CPU): each notebook <= 120 s, the course <= 900 s.

More measurements (e.g. SDD's one forward pass against SDEdit) are registered in EXTRA_BENCHMARKS as
(name, unit, callable); the callable takes nothing, returns a float and imports what it needs inside,
so that a part that does not exist yet is reported as unavailable instead of breaking the run.

The browser suite (`make browser`, tests/browser) measures each slider's redraw in JupyterLab, from the key press to
the new image; when its tests/browser/artifacts/redraw_times.json exists, each notebook's slowest browser redraw is
reported beside the kernel-side one (nbNN_slider_redraw_browser_s, with the date it was measured).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PER_NOTEBOOK_BUDGET_S = 120.0   # DESIGN.md: each notebook, default settings
COURSE_BUDGET_S = 900.0         # DESIGN.md: the whole course
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
BROWSER_TIMES = Path(__file__).resolve().parents[2] / "tests" / "browser" / "artifacts" / "redraw_times.json"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in kernel tracebacks
EXTRA_BENCHMARKS: list[tuple[str, str, Callable[[], float]]] = [
    ("nb01_slider_redraw_s", "s", lambda: slider_redraw_seconds()),
    ("nb01_slider_grid_s", "s", lambda: slider_grid_seconds()),
    *[(f"inversion_{m}_s_per_image", "s", lambda m=m: inversion_seconds(m))
      for m in ("ddim", "ddim_text", "negative_prompt", "null_text", "edit_friendly")],
    ("guided_edit_s_per_image", "s", lambda: guided_edit_timing()[0]),
    ("guided_over_unguided", "x", lambda: guided_edit_timing()[1]),
    ("nb08_slider_redraw_s", "s", lambda: guided_edit_timing(batch_size=1, first_step=0)[2]),
    ("attention_control_over_plain", "x", lambda: attention_control_timing()[0]),
    ("nb06_slider_redraw_s", "s", lambda: attention_control_timing(pairs=2, repeats=1)[1]),
    ("nb06_slider_redraw_tau_u_s", "s", lambda: attention_window_move_seconds()),
    ("stylediffusion_over_null_text_per_step", "x", lambda: stylediffusion_step_ratio()),
    ("rectified_ddim_s_per_image", "s", lambda: rectifier_timing()[0]),          # issue 17 (goal: ratio <= 2)
    ("rectified_over_plain_ddim", "x", lambda: rectifier_timing()[1]),
    ("rectified_over_plain_lower_bound", "x", lambda: rectifier_lower_bound()),    # why <= 2 is out of reach
    # issue 18: notebook 04, each strategy's edit seconds per image and training minutes per attribute
    *[(f"edit_{r.replace('-', '_')}_{k}", u, lambda r=r, i=i: editing_timing(r)[i])
      for r in ("alg1", "markovian", "markovian-full", "hspace", "hspace-full")
      for i, (k, u) in enumerate((("s_per_image", "s"), ("train_min_per_attribute", "min")))],
    # issue 19: SDD's times and Eqs. 13-15 (diffnb.maint.sdd_run.bench_times)
    *[(k, u, lambda k=k: sdd_timing(k)) for k, u in (
        ("tau_sdd_train_s", "s"), ("tau_sdd_infer_s_per_image", "s"), ("tau_sdedit_s_per_image", "s"),
        ("tau_ddib_s_per_image", "s"), ("sdd_infer_speedup_over_sdedit", "x"), ("sdd_break_even_m_vs_sdedit", "images"),
        ("sdd_break_even_m_vs_ddib", "images"), ("sdedit_over_sdd_total_time_m100_n10", "x"),
        ("ddib_over_sdd_total_time_m100_n10", "x"))],
]


@dataclass
class Result:
    """One measurement."""
    name: str             # what was measured
    value: float | None   # None when it could not be measured
    unit: str             # "s", "images/s", ...
    note: str = ""        # why it is unavailable, or that it is over budget


def measure(name: str, unit: str, fn: Callable[[], float], failed: str = "unavailable") -> Result:
    """Run fn() and wrap its float; an exception becomes a result with value None, not a crash."""
    try:
        return Result(name, float(fn()), unit)
    except Exception as exc:  # noqa: BLE001 -- report whatever went wrong, keep benchmarking
        last = ([ln for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()] or [""])[-1]
        return Result(name, None, unit, f"{failed}: {type(exc).__name__}: {last[:200]}")


def notebook_seconds(path: Path, cell_timeout: int = 600) -> float:
    """Execute a notebook top to bottom in memory (never saved) and return its wall seconds."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def world_images_per_s(n: int = 2000, seed: int = 1) -> float:
    """Toy-world images drawn per second, one process (after a warm-up batch of 16)."""
    from diffnb import world
    world.sample(16, seed=seed)
    start = time.perf_counter()
    world.sample(n, seed=seed)
    return n / (time.perf_counter() - start)


def ddim_images_per_s(batch_size: int = 16, num_inference_steps: int = 50) -> float:
    """toy-ddpm images per second with DDIM (eta=0): one batch, timed from the first step."""
    import torch

    from diffnb import sampling, zoo
    b = zoo.load("toy-ddpm")
    start = time.perf_counter()
    sampling.sample(b.unet, b.scheduler, batch_size=batch_size, num_inference_steps=num_inference_steps,
                    eta=0.0, generator=torch.Generator().manual_seed(0))
    return batch_size / (time.perf_counter() - start)


def slider_redraw_seconds(batch_size: int = 4, num_inference_steps: int = 30) -> float:
    """Notebook 01's slowest setting (4 images, 30 DDIM steps, eta = 1): the seconds one draw takes (goal of a
    redraw: 1 s, issue 20). The notebook draws all its settings when the cell runs (`nb01_slider_grid_s`), so a
    move only swaps pictures; this is what a move would cost without that grid."""
    import torch

    from diffnb import sampling, zoo
    b = zoo.load("toy-ddpm")
    start = time.perf_counter()
    sampling.sample(b.unet, b.scheduler, batch_size=batch_size, num_inference_steps=num_inference_steps,
                    eta=1.0, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def slider_grid_seconds(batch_size: int = 4) -> float:
    """Notebook 01's slider grid, drawn when its cell runs (widgets.interactive_grid(precompute=True)): every
    setting of its sliders (eta 0, 0.25, ..., 1; 5, 10, ..., 30 steps; 4 images each), seconds in all."""
    import torch

    from diffnb import sampling, zoo
    b = zoo.load("toy-ddpm")
    start = time.perf_counter()
    for eta in (0.0, 0.25, 0.5, 0.75, 1.0):
        for steps in range(5, 31, 5):
            sampling.sample(b.unet, b.scheduler, batch_size=batch_size, num_inference_steps=steps, eta=eta,
                            generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def run_benchmarks(pattern: str = "*.ipynb", skip_notebooks: bool = False,
                   extra=EXTRA_BENCHMARKS) -> tuple[list[Result], list[Result]]:
    """Run the notebooks matching pattern, then the throughputs; returns (notebooks, others)."""
    notebooks = []
    if not skip_notebooks:
        for path in sorted(NOTEBOOK_DIR.glob(pattern)):
            r = measure(path.stem, "s", lambda p=path: notebook_seconds(p), "FAILED")
            if r.value is not None and r.value > PER_NOTEBOOK_BUDGET_S:
                r.note = f"OVER BUDGET ({PER_NOTEBOOK_BUDGET_S:.0f} s)"
            notebooks.append(r)
    others = [measure("world_images_per_s", "images/s", world_images_per_s),
              measure("ddim_images_per_s", "images/s", ddim_images_per_s)]
    others += [measure(name, unit, fn) for name, unit, fn in extra]
    for r in browser_redraw_results():      # beside the kernel-side redraw of the same notebook, if measured
        kernel_side = r.name.replace("_browser", "")
        others.insert(next((i + 1 for i, o in enumerate(others) if o.name == kernel_side), len(others)), r)
    return notebooks, others


def browser_redraw_results(path: Path = BROWSER_TIMES) -> list[Result]:
    """Each notebook's slowest redraw measured in the browser by tests/browser (none if it has not run)."""
    if not path.exists():
        return []
    notebooks = json.loads(path.read_text()).get("notebooks", {})
    return [Result(f"nb{stem[:2]}_slider_redraw_browser_s", max(moves), "s",
                   f"browser: slowest of {len(moves)} moves, {entry.get('measured', '?')}, "
                   + ("alone (make browser)" if entry.get("alone", True) else
                      f"beside other tests (make check-all, load {entry.get('load_1min', '?')}): slower than alone"))
            for stem, entry in sorted(notebooks.items())
            if (moves := [c["redraw_s"] for c in entry.get("controls", [])])]


def report(notebooks: list[Result], others: list[Result]) -> dict:
    """The JSON object: notebook seconds, rates, the course total and the budgets, with flags."""
    total = sum(r.value for r in notebooks if r.value is not None) if notebooks else None
    world, ddim, *extra = others  # the order run_benchmarks returns them in
    return {
        "notebooks": {r.name: r.value for r in notebooks},
        "world_images_per_s": world.value,
        "ddim_images_per_s": ddim.value,
        "extra": {r.name: {"value": r.value, "unit": r.unit} for r in extra},
        "total_notebook_s": total,
        "budget": {"per_notebook_s": PER_NOTEBOOK_BUDGET_S, "course_s": COURSE_BUDGET_S},
        "over_budget": [r.name for r in notebooks if r.note.startswith("OVER")]
                       + (["course"] if total is not None and total > COURSE_BUDGET_S else []),
        "unavailable": {r.name: r.note for r in notebooks + others if r.value is None},
    }


def table(rows: list[Result]) -> str:
    """A small aligned table: name, value, unit, note."""
    cells = [(r.name, "-" if r.value is None else f"{r.value:,.1f}", r.unit, r.note) for r in rows]
    w = [max(len(c[i]) for c in cells) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffnb.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON object on stdout (table on stderr)")
    parser.add_argument("--notebooks", default="*.ipynb", metavar="PATTERN",
                        help="glob of the notebooks in notebooks/ to run (default: *.ipynb)")
    parser.add_argument("--skip-notebooks", action="store_true", help="measure only the throughputs")
    args = parser.parse_args(argv)
    notebooks, others = run_benchmarks(args.notebooks, args.skip_notebooks)
    out = report(notebooks, others)
    rows = list(notebooks)
    if notebooks:
        over = "course" in out["over_budget"]
        rows.append(Result("total (notebooks)", out["total_notebook_s"], "s",
                           f"OVER BUDGET ({COURSE_BUDGET_S:.0f} s)" if over else ""))
    elif not args.skip_notebooks:
        rows.append(Result("notebooks", None, "s", f"none match {args.notebooks!r} in {NOTEBOOK_DIR}"))
    rows += others
    print(table(rows), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(out, indent=2))
    return 1 if any(r.value is None for r in notebooks) else 0  # a notebook that fails is an error


_GUIDED_CACHE: dict = {}


def guided_edit_timing(batch_size: int = 16, num_inference_steps: int = 25, first_step: int = 12) -> tuple:
    """Notebook 08's attribute edit (toy-attr logit, masked, over the step indices [first_step, steps)) against the
    same unguided run:
    (guided seconds per image, guided / unguided time, guided seconds per call). Cached per setting."""
    key = (batch_size, num_inference_steps, first_step)
    if key not in _GUIDED_CACHE:
        from diffnb import guidance, zoo
        b, attr = zoo.load("toy-ddpm"), zoo.load("toy-attr").model
        fn = guidance.AttributeLogit(attr, "smiling", True)

        def run(strength, first, end):
            start = time.perf_counter()
            guidance.guided_sample(b.unet, b.scheduler, fn, strength, first, end, batch_size=batch_size,
                                   num_inference_steps=num_inference_steps, generator=0)
            return time.perf_counter() - start
        plain = run(0.0, 0, 0)
        guided = run(1.0, first_step, num_inference_steps)
        _GUIDED_CACHE[key] = (guided / batch_size, guided / plain, guided)
    return _GUIDED_CACHE[key]


def inversion_seconds(method: str, n: int = 4, num_inference_steps: int = 50) -> float:
    """Seconds per image to invert *and* reconstruct n held-out toy images at 50 steps with one of notebook
    02's methods (text methods: toy-t2i, guidance 5; null-text with the notebook's fast setting)."""
    import torch

    from diffnb import inversion, world, zoo
    batch = world.sample(n, seed=90_000)
    x0, prompts = batch.images, batch.captions
    if method == "ddim":
        b = zoo.load("toy-ddpm")
        start = time.perf_counter()
        inv = inversion.ddim_invert(b.unet, b.scheduler, x0, num_inference_steps)
        inversion.ddim_reconstruct(b.unet, b.scheduler, inv.x_T, num_inference_steps)
    elif method == "edit_friendly":
        b = zoo.load("toy-ddpm")
        start = time.perf_counter()
        inv = inversion.edit_friendly_invert(b.unet, b.scheduler, x0, num_inference_steps,
                                             generator=torch.Generator().manual_seed(0))
        inversion.edit_friendly_sample(b.unet, b.scheduler, inv)
    else:
        b = zoo.load("toy-t2i")
        make = {"ddim_text": lambda: inversion.text_ddim_invert(b, x0, prompts, num_inference_steps, 5.0),
                "negative_prompt": lambda: inversion.negative_prompt_invert(b, x0, prompts, num_inference_steps, 5.0),
                "null_text": lambda: inversion.null_text_invert(b, x0, prompts, num_inference_steps, 5.0,
                                                                inner_steps=4, lr=5e-2)}[method]
        start = time.perf_counter()
        inversion.text_reconstruct(b, make())
    return (time.perf_counter() - start) / n


def _best(repeats: int, fn: Callable[[], object]) -> float:
    """The shortest wall time of `repeats` calls of fn."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def attention_control_timing(pairs: int = 8, num_inference_steps: int = 20, repeats: int = 3) -> tuple:
    """Notebook 06's P2Plus edit (`attention.edit`: 2 x pairs images, guided, every map injected as the windows
    say) against plain guided sampling of the same 2 x pairs images with diffusers' default processors:
    (edit time / plain time, seconds per edit). Best of `repeats` for each."""
    import torch

    from diffnb import attention, t2i, zoo
    b = zoo.load("toy-t2i")
    src = ["a smiling person with black hair on a blue background"] * pairs
    tgt = ["a smiling cat with black fur on a blue background"] * pairs
    x_T = torch.randn(pairs, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = _best(repeats, lambda: t2i.sample(b, [p for pair in zip(src, tgt) for p in pair], guidance_scale=5.0,
                                    num_inference_steps=num_inference_steps, x_T=x_T.repeat_interleave(2, 0)))
    ctrl = lambda: attention.Replace(b.tokenizer, src, tgt, tau_c=0.6, tau_s=0.8, tau_u=0.5)
    edit = _best(repeats, lambda: attention.edit(b, ctrl(), x_T=x_T, guidance_scale=5.0,
                                                 num_inference_steps=num_inference_steps))
    return edit / plain, edit


def attention_window_move_seconds(pairs: int = 2, num_inference_steps: int = 20) -> float:
    """Notebook 06's slider when a window moves: τ_u from 0.5 to 0.6 with an `attention.EditCache` holding the
    drawing at the defaults (τ_c 0.6, τ_s 0.8, τ_u 0.5), so the redraw resumes at step 10 of 20 (of the +0.1 moves
    from the defaults, the one that recomputes most). Seconds for the move; `attention_control_timing` gives a full
    redraw (the re-weight and guidance sliders)."""
    import time

    import torch

    from diffnb import attention, zoo
    b = zoo.load("toy-t2i")
    src = ["a smiling person with black hair on a yellow background"] * pairs
    tgt = ["a smiling person with red hair on a yellow background"] * pairs
    x_T = torch.randn(pairs, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cache = attention.EditCache()
    draw = lambda tau_u: attention.edit(b, attention.Reweight(b.tokenizer, src, tgt, word="smiling", scale=1.0,  # noqa: E731
                                                              tau_c=0.6, tau_s=0.8, tau_u=tau_u),
                                        x_T=x_T, guidance_scale=5.0, num_inference_steps=num_inference_steps,
                                        cache=cache)
    draw(0.5)
    start = time.perf_counter()
    out = draw(0.6)
    seconds = time.perf_counter() - start
    assert out.start_step == num_inference_steps // 2, out.start_step
    return seconds


def stylediffusion_step_ratio(n: int = 4, num_inference_steps: int = 20, repeats: int = 3) -> float:
    """Inference cost per sampling step of a StyleDiffusion reconstruction (learned value inputs through the
    attention processors, mapping networks evaluated per step) over a null-text one (per-step null embeddings),
    same images, steps and guidance; best of `repeats`. The paper's Table 3: 0.30 s vs 0.28 s (1.07x)."""
    import torch

    from diffnb import inversion, stylediffusion, world, zoo
    b, clip = zoo.load("toy-t2i"), zoo.load("toy-clip")
    batch = world.sample(n, seed=91_000, domain="photo")
    style = stylediffusion.invert(b, clip, batch.images, batch.captions, num_inference_steps, 5.0, iterations=1)
    null = inversion.null_text_invert(b, batch.images, batch.captions, num_inference_steps, 5.0, inner_steps=1)
    with torch.no_grad():
        return (_best(repeats, lambda: stylediffusion.reconstruct(b, style))
                / _best(repeats, lambda: inversion.text_reconstruct(b, null)))


_RECTIFIER_CACHE: dict = {}


def rectifier_timing(batch_size: int = 8, num_inference_steps: int = 50, repeats: int = 2) -> tuple:
    """Notebook 03: DDIM sampling with toy-rectifier (`RectifiedUNet`: base eps for P_t, Delta, modulated eps per
    step) against plain DDIM with toy-ddpm, same x_T and steps: (rectified seconds per image, rectified / plain).
    Best of `repeats`; cached."""
    key = (batch_size, num_inference_steps, repeats)
    if key not in _RECTIFIER_CACHE:
        import torch

        from diffnb import rectifier, sampling, world, zoo
        b, rect = zoo.load("toy-ddpm"), zoo.load("toy-rectifier").model
        x0 = world.sample(batch_size, seed=92_000, domain="photo").images
        x_T = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        run = lambda m: sampling.sample(m, b.scheduler, batch_size=batch_size,  # noqa: E731
                                        num_inference_steps=num_inference_steps, x_T=x_T)
        plain = _best(repeats, lambda: run(b.unet))
        rectified = _best(repeats, lambda: run(rectifier.RectifiedUNet(b.unet, rect, x0, b.scheduler)))
        _RECTIFIER_CACHE[key] = (rectified / batch_size, rectified / plain)
    return _RECTIFIER_CACHE[key]


def rectifier_lower_bound(batch_size: int = 8, repeats: int = 5) -> float:
    """The least a rectified step can cost, in plain steps, by Eqs. 1-2: the base U-Net's pass (for P_t), the
    hypernetwork, and the modulated mid and up blocks even if they cost no more than plain ones and the down blocks'
    activations were reused (the rectifier leaves them unmodulated). Measured with forward hooks on toy-ddpm's
    blocks (batch 8, t = 500) and a timed hypernetwork call: (pass + mid + up + hypernetwork) / pass."""
    import time

    import torch

    from diffnb import world, zoo
    b, rect = zoo.load("toy-ddpm"), zoo.load("toy-rectifier").model
    x = world.sample(batch_size, seed=92_000, domain="photo").images
    t = torch.full((batch_size,), 500)
    spent: dict = {}
    hooks = []
    for name in ("mid_block", "up_blocks"):
        mod = getattr(b.unet, name)
        for m in (mod if isinstance(mod, torch.nn.ModuleList) else [mod]):
            hooks.append(m.register_forward_pre_hook(lambda m, a, n=name: spent.setdefault(n, []).append(
                -time.perf_counter())))
            hooks.append(m.register_forward_hook(lambda m, a, o, n=name: spent[n].__setitem__(
                -1, spent[n][-1] + time.perf_counter())))
    calls = []                                  # (whole pass, its mid and up blocks) per call
    with torch.no_grad():
        b.unet(x, t)
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            b.unet(x, t)
            calls.append((time.perf_counter() - start, sum(sum(v) for v in spent.values())))
        for h in hooks:
            h.remove()
        hyper_s = _best(repeats, lambda: rect(x, x, t))
    unet_s, mid_up_s = min(calls)
    return (unet_s + mid_up_s + hyper_s) / unet_s


_EDITING_CACHE: dict = {}


def editing_timing(run: str, n: int = 8, train_steps: int = 2) -> tuple:
    """Notebook 04: one strategy of `diffnb.editing_run.RUNS` on smiling: (seconds per image to edit n held-out
    photo images with the shipped edit at Table 2's 20 steps, inversion included; training minutes per attribute,
    the seconds of `train_steps` gradient steps of batch 4 scaled to the shipped run's 100). Cached."""
    if run not in _EDITING_CACHE:
        import torch

        from diffnb import editing, editing_eval, editing_run, zoo
        b, rect, clip = zoo.load("toy-ddpm"), zoo.load("toy-rectifier").model, zoo.load("toy-clip")
        cfg = editing_run.FullRunConfig()
        x0 = editing.edit_images("smiling", n, seed=editing.HELD_OUT_SEED, domain="photo").images
        trained = editing_eval.load_run("smiling", run, rect, b.unet)
        t0 = time.perf_counter()
        editing.edit(b.unet, b.scheduler, rect, trained, x0, cfg.eval_steps, generator=torch.Generator().manual_seed(0))
        per_image = (time.perf_counter() - t0) / n
        method, interval = editing_eval.check_run(run)
        tc = editing.EditTrainConfig(edit="smiling", method=method, interval=interval, steps=train_steps,
                                     batch_size=cfg.batch_size, num_threads=0)
        t0 = time.perf_counter()
        editing.train(b.unet, b.scheduler, rect, clip, tc)
        _EDITING_CACHE[run] = (per_image, (time.perf_counter() - t0) / train_steps * cfg.steps / 60)
    return _EDITING_CACHE[run]


def sdd_timing(key: str) -> float:
    """Issue 19: one of diffnb.maint.sdd_run.bench_times()'s numbers (measured once per run, cached)."""
    from diffnb.maint import sdd_run
    return sdd_run.bench_times()[key]


if __name__ == "__main__":
    sys.exit(main())
