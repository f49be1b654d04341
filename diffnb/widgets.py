"""Sliders whose picture updates in place: one small helper used by every notebook's interactive cell.

    widgets.interactive_grid(draw, eta=widgets.slider(0.0, 1.0, 0.1, 0.0, "η"),
                             steps=widgets.int_slider(5, 50, 5, 20, "steps"))

`draw(**values)` returns (B, 3, H, W) images in [-1, 1]; results are cached so returning to a setting is instant.
The cell also shows a static picture of the default position (an image/png output, at least `min_width` pixels
wide), so a saved notebook reads on GitHub and nbviewer, where widgets do not render.
"""
from __future__ import annotations

import io
import itertools
import time
from typing import Callable, Optional

from .progress import bar
from .show import grid_array
from .threads import torch_threads  # noqa: F401  (importable from here as before)

MAX_PRECOMPUTED = 64                 # settings `interactive_grid(precompute=True)` accepts


def slider(lo: float, hi: float, step: float, value: float, description: str):
    import ipywidgets as w
    return w.FloatSlider(min=lo, max=hi, step=step, value=value, description=description, continuous_update=False)


def int_slider(lo: int, hi: int, step: int, value: int, description: str):
    import ipywidgets as w
    return w.IntSlider(min=lo, max=hi, step=step, value=value, description=description, continuous_update=False)


def _png(images, nrow: int, scale: int) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(grid_array(images, nrow=nrow, scale=scale)).save(buf, format="PNG")
    return buf.getvalue()


def static_picture(images, nrow: int, caption: str, min_width: int = 600):
    """Display `images` as one PNG grid at least `min_width` pixels wide, under a one-line caption."""
    from IPython.display import Image, Markdown, display
    width = grid_array(images, nrow=nrow).shape[1]
    display(Markdown(caption), Image(_png(images, nrow, max(1, -(-min_width // width)))))


def _key(sliders) -> tuple:
    """The sliders' values, floats rounded to 10 decimals (a FloatSlider stepping by 0.1 reports 0.6000000000000001)."""
    return tuple((k, round(s.value, 10) if isinstance(s.value, float) else s.value) for k, s in sliders.items())


def slider_values(s) -> list:
    """Every value a slider, checkbox or dropdown can take, as `_key` reports it (floats rounded to 10 decimals)."""
    import ipywidgets as w
    if isinstance(s, w.Checkbox):
        return [False, True]
    if isinstance(s, w.Dropdown):
        return [v for _, v in s.options] if s.options and isinstance(s.options[0], tuple) else list(s.options)
    if isinstance(s, (w.FloatSlider, w.IntSlider)):
        n = round((s.max - s.min) / s.step)
        values = [s.min + k * s.step for k in range(n + 1)]
        return [round(v, 10) for v in values] if isinstance(s, w.FloatSlider) else values
    raise TypeError(f"cannot list the values of a {type(s).__name__}: precompute takes FloatSlider, IntSlider, "
                    f"Checkbox and Dropdown (widgets.slider, int_slider, checkbox, dropdown)")


def interactive_grid(draw: Callable, nrow: int = 8, scale: int = 4, static: bool = True,
                     threads: Optional[int] = 1, precompute: bool = False, **sliders):
    """A column of sliders above an image that `draw(**slider values)` redraws in place. Returns the widget.
    With static=True (the default) the cell first displays a static picture of the sliders' default position.
    The status line under the picture names the setting and how long its drawing took ("cached" when it was drawn
    before). Drawing runs on `threads` torch threads (default 1; None keeps torch's setting). A redraw is small
    work, and where other work shares the cores (a busy laptop, a shared Binder machine whose torch sees more cores
    than it is given) torch's thread pool waits on busy cores far longer than it gains: notebook 03's redraw took
    2.9 s on one thread and 56-117 s on two on a loaded 2-core machine (2026-11-30). On a quiet 2-core machine, in
    the browser suite, one thread against two was 4.0 s against 4.3 (notebook 03), 0.9-1.0 against 1.4 (08), but
    1.1 against 1.05 (01), 1.4 against 1.1 (02), 4.1-4.9 against 3.5 (05) and 3.0 against 2.2 (06). A draw that
    can reuse its last call's steps does (same images): notebooks 05 and 06 resume a window move at the first step it
    changes (`attention.EditCache`), notebook 08 a guided draw at t1 (`guidance.PrefixCache`); quiet, one thread, in
    the browser (2026-11-30): 05 1.7-2.2 s, 06's windows 0.7-1.5 s (its re-weight and guidance sliders change every
    step: 2.9-3.1 s), 08 0.65-0.82 s; notebook 01, precomputed (below), 0.17-0.27 s.

    precompute=True draws every setting when the cell runs (at most MAX_PRECOMPUTED), with a progress bar, so that
    every move only swaps pictures; the status line gives what that cost. It suits a small grid of cheap draws
    (notebook 01: 30 settings). Drawing them in one batched call instead saves nothing on a CPU: toy-ddpm's UNet
    takes 4.7 times as long for 20 images as for 4 (2026-11-30, one thread)."""
    import ipywidgets as w
    if not sliders:
        raise ValueError("interactive_grid needs at least one slider, e.g. eta=widgets.slider(0, 1, 0.1, 0, 'η')")
    cache, spent = {}, {}
    key, grid = _key(sliders), {}             # grid: the precomputed settings, in the sliders' order
    if precompute:
        names = list(sliders)
        grid = dict.fromkeys(tuple(zip(names, v))
                             for v in itertools.product(*(slider_values(sliders[k]) for k in names)))
        if len(grid) > MAX_PRECOMPUTED:
            raise ValueError(f"precompute=True would draw {len(grid)} settings; at most {MAX_PRECOMPUTED} are "
                             f"accepted (use coarser slider steps, or precompute=False to draw on each move)")
        if key not in grid:
            raise ValueError(f"the sliders' starting position {key} is not on their grid of values")
    image = w.Image(format="png")
    status = w.Label()

    def drawn(key):
        start = time.perf_counter()
        with torch_threads(threads):
            images = draw(**dict(key))
        spent[key] = time.perf_counter() - start
        cache[key] = _png(images, nrow, scale)
        return images

    def update(_=None, first: bool = False):
        key = _key(sliders)
        was_cached = key in cache and not first
        if key not in cache:
            drawn(key)
        image.value = cache[key]
        if key in grid:
            how = (f" (precomputed with the other {len(grid) - 1} settings when the cell ran: "
                   f"{sum(spent[k] for k in grid):.1f} s in all, this one {spent[key]:.2f} s)")
        else:
            how = " (cached)" if was_cached else f" (drawn in {spent[key]:.1f} s)"
        status.value = ", ".join(f"{k} = {v}" for k, v in key) + how

    for s in sliders.values():
        s.observe(update, names="value")
    images = drawn(key)
    for k in bar([k for k in grid if k != key], desc="drawing every slider setting"):
        drawn(k)
    if static:
        static_picture(images, nrow, "Static picture of the default position (" +
                       ", ".join(f"{k} = {v}" for k, v in key) + "); run the notebook to move the sliders.")
    update(first=True)
    return w.VBox([*sliders.values(), image, status])


def dropdown(options, value, description: str):
    import ipywidgets as w
    return w.Dropdown(options=list(options), value=value, description=description)


def checkbox(value: bool, description: str):
    import ipywidgets as w
    return w.Checkbox(value=value, description=description)
