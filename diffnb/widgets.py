"""Sliders whose picture updates in place: one small helper used by every notebook's interactive cell.

    widgets.interactive_grid(draw, eta=widgets.slider(0.0, 1.0, 0.1, 0.0, "η"),
                             steps=widgets.int_slider(5, 50, 5, 20, "steps"))

`draw(**values)` returns (B, 3, H, W) images in [-1, 1]; results are cached so returning to a setting is instant.
The cell also shows a static picture of the default position (an image/png output, at least `min_width` pixels
wide), so a saved notebook reads on GitHub and nbviewer, where widgets do not render.
"""
from __future__ import annotations

import io
from typing import Callable

from .show import grid_array


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


def interactive_grid(draw: Callable, nrow: int = 8, scale: int = 4, static: bool = True, **sliders):
    """A column of sliders above an image that `draw(**slider values)` redraws in place. Returns the widget.
    With static=True (the default) the cell first displays a static picture of the sliders' default position."""
    import ipywidgets as w
    if not sliders:
        raise ValueError("interactive_grid needs at least one slider, e.g. eta=widgets.slider(0, 1, 0.1, 0, 'η')")
    cache = {}
    image = w.Image(format="png")
    status = w.Label()

    def update(_=None):
        key = _key(sliders)
        if key not in cache:
            cache[key] = _png(draw(**dict(key)), nrow, scale)
        image.value = cache[key]
        status.value = ", ".join(f"{k} = {v}" for k, v in key)

    for s in sliders.values():
        s.observe(update, names="value")
    key = _key(sliders)
    images = draw(**dict(key))
    cache[key] = _png(images, nrow, scale)
    if static:
        static_picture(images, nrow, "Static picture of the default position (" +
                       ", ".join(f"{k} = {v}" for k, v in key) + "); run the notebook to move the sliders.")
    update()
    return w.VBox([*sliders.values(), image, status])


def dropdown(options, value, description: str):
    import ipywidgets as w
    return w.Dropdown(options=list(options), value=value, description=description)


def checkbox(value: bool, description: str):
    import ipywidgets as w
    return w.Checkbox(value=value, description=description)
