"""Every notebook in JupyterLab in a real Chromium, as a student runs it (issue 20, item 1).

For each notebook: open it, clear the saved outputs, restart the kernel and run all cells through JupyterLab's own
command ("Run > Restart Kernel and Run All Cells...", confirming its dialog), wait until the kernel is idle and every
code cell has run, then assert that no cell shows an error and no widget failed or stays on "Loading widget". Then
every control of every `diffnb.widgets.interactive_grid` (slider, dropdown, checkbox) is moved from the keyboard and
must change the picture it drives (a pixel difference between screenshots of the image); each redraw is timed from
the key press to the new image being shown. Times are printed and merged into tests/browser/artifacts/
redraw_times.json (which `python -m diffnb.bench` reports); they are never asserted. Screenshots of the first and
last screen go to tests/browser/artifacts/NN_name_first.png and _last.png.

    make browser                                    # every notebook
    .venv/bin/python -m pytest tests/browser -k "01 or 03" -s
"""
from __future__ import annotations

import io
import os
import re
import time

import pytest
from harness import ARTIFACTS, NOTEBOOKS, VIEWPORT, alone, now, report

MAX_NOTCHES = 10             # moves of one control before "it never changes the picture" fails
# widgets.interactive_grid sets the image, then the status line under it: either one changing ends a redraw
REDRAWN_JS = """([el, src, status, text]) => (el.src !== src && el.complete && el.naturalWidth > 0)
                                           || status.innerText !== text"""
RUN_TIMEOUT_S = 1500          # one notebook's Restart and Run All on a busy 2-core machine (budget: 120 s quiet)
REDRAW_TIMEOUT_S = 300        # one control's redraw
WIDGET_RENDER_TIMEOUT_S = 60  # widgets still "Loading widget..." after the run
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The JupyterLab app object (--expose-app-in-browser) gives the notebook panel of `path`, its kernel and cells.
PANEL = "[...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === path)"
STATE_JS = """path => {
  const panel = """ + PANEL + """;
  const cells = panel.content.widgets.map((cell, index) => ({index, type: cell.model.type,
      count: cell.model.type === 'code' ? cell.model.executionCount : null,
      errors: cell.model.type === 'code' ? cell.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                                .map(o => ({ename: o.ename, evalue: o.evalue,
                                                            traceback: (o.traceback || []).join('\\n')})) : []}));
  return {status: panel.sessionContext.kernelDisplayStatus, cells};
}"""
# Outputs whose widget did not render: the texts ipywidgets' renderer shows instead of the widget.
WIDGET_TEXTS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].flatMap((cell, index) =>
  [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText || '')
    .filter(t => /Error displaying widget|Loading widget/.test(t)).map(t => ({index, text: t.trim().slice(0, 300)})))"""
CELL_INDEX_JS = "el => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].indexOf(el.closest('.jp-Cell'))"
SCROLL_JS = """([path, where]) => { const cells = """ + PANEL + """.content.widgets;
  cells[where === 'top' ? 0 : cells.length - 1].node.scrollIntoView({block: where === 'top' ? 'start' : 'end'}); }"""


def _command(page, path: str, command: str) -> None:
    """Activate the notebook and start a JupyterLab command on it without awaiting the command (restart-and-run-all
    resolves only after its dialog)."""
    page.evaluate("""([path, command]) => { const panel = """ + PANEL + """;
        window.jupyterapp.shell.activateById(panel.id); window.jupyterapp.commands.execute(command); }""",
                  [path, command])


def open_notebook(page, base: str, token: str, path: str) -> None:
    """Open the notebook in a workspace of its own (reset, so no other notebook is restored beside it) and wait
    until its kernel has started and is idle."""
    page.goto(f"{base}/lab/workspaces/{path.split('.')[0]}/tree/{path}?reset&token={token}")
    page.wait_for_function("""path => { const app = window.jupyterapp; const panel = app && """ + PANEL + """;
        return panel && panel.context.isReady && panel.sessionContext.isReady
               && panel.sessionContext.kernelDisplayStatus === 'idle'; }""", arg=path, timeout=120_000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")     # the notebook the full width of the screen


def shut_down_kernel(page, path: str) -> None:
    page.evaluate("async path => { const panel = " + PANEL + "; if (panel) await panel.sessionContext.shutdown(); }",
                  path)


def restart_and_run_all(page, path: str, timeout_s: float = RUN_TIMEOUT_S) -> tuple[dict, float]:
    """Clear the outputs, run "Restart Kernel and Run All Cells..." and confirm; wait until the kernel is idle and
    every code cell has run (or one shows an error and the kernel has stayed idle for 3 s). Returns (state, s)."""
    _command(page, path, "notebook:clear-all-cell-outputs")
    page.wait_for_function("path => " + PANEL + """.content.widgets
        .every(c => c.model.type !== 'code' || c.model.executionCount === null)""", arg=path, timeout=30_000)
    _command(page, path, "runmenu:restart-and-run-all")
    page.locator(".jp-Dialog .jp-mod-accept").click(timeout=30_000)   # "Restart Kernel?" -> Restart
    start = time.perf_counter()
    deadline, idle_with_error = start + timeout_s, 0
    while True:
        state = page.evaluate(STATE_JS, path)
        code = [c for c in state["cells"] if c["type"] == "code"]
        idle = state["status"] == "idle"
        if idle and all(c["count"] is not None for c in code):
            return state, time.perf_counter() - start
        idle_with_error = idle_with_error + 1 if idle and any(c["errors"] for c in code) else 0
        if idle_with_error >= 3 or state["status"] == "dead":
            return state, time.perf_counter() - start
        if time.perf_counter() > deadline:
            pending = [c["index"] for c in code if c["count"] is None]
            pytest.fail(f"Restart and Run All not done after {timeout_s:.0f} s (kernel {state['status']}; "
                        f"cells not run yet: {pending[:10]})", pytrace=False)
        time.sleep(1.0)


def describe_errors(state: dict) -> list[str]:
    """'cell 12 [9]: ValueError: ...' with the traceback's last lines, for each cell that shows an error."""
    lines = []
    for cell in state["cells"]:
        for e in cell["errors"]:
            tail = [ln for ln in _ANSI.sub("", e["traceback"]).splitlines() if ln.strip()][-6:]
            lines.append(f"cell {cell['index']} [{cell['count']}]: {e['ename']}: {e['evalue']}\n    "
                         + "\n    ".join(tail))
    return lines


def screenshot(page, notebook: str, path, where: str) -> None:
    page.evaluate(SCROLL_JS, [notebook, where])
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))


def controls(page) -> list[dict]:
    """Every control of every interactive_grid on the page: a VBox holding a widget Image, with sliders,
    dropdowns and checkboxes above it."""
    found = []
    for grid in page.locator(".jp-Notebook .widget-vbox:has(> img.widget-image)").all():
        cell = grid.evaluate(CELL_INDEX_JS)
        image = grid.locator("> img.widget-image").first
        for control in grid.locator("> .widget-slider, > .widget-dropdown, > .widget-checkbox").all():
            kind = next(k for k in ("slider", "dropdown", "checkbox")
                        if f"widget-{k}" in (control.get_attribute("class") or ""))
            label = control.locator(".widget-label, .widget-label-basic").all_inner_texts()
            name = " ".join(t.replace("\u200b", "").strip() for t in label).strip()   # an empty label holds a ZWSP
            found.append({"cell": cell, "kind": kind, "name": name, "control": control, "image": image,
                          "status": grid.locator("> .widget-label").last, "grid": grid})
    return found


def move(control: dict) -> tuple[str, str]:
    """Move one control from the keyboard; returns (from, to) as shown."""
    c = control["control"]
    if control["kind"] == "slider":
        handle = c.locator(".noUi-handle").first
        now, low, top = (float(handle.get_attribute(f"aria-value{k}")) for k in ("now", "min", "max"))
        old = c.locator(".widget-readout").inner_text()
        # one direction for every move of this control (right, or left from the top), reversed only at an end
        key = control.setdefault("key", "ArrowLeft" if now >= top else "ArrowRight")
        if (key == "ArrowRight" and now >= top) or (key == "ArrowLeft" and now <= low):
            key = control["key"] = "ArrowLeft" if key == "ArrowRight" else "ArrowRight"
        handle.focus()
        handle.press(key)
        return old, c.locator(".widget-readout").inner_text()
    if control["kind"] == "dropdown":
        select = c.locator("select")
        old, values = select.input_value(), [o.get_attribute("value") for o in select.locator("option").all()]
        i = values.index(old)
        step = control.setdefault("step", 1 if i + 1 < len(values) else -1)   # one direction, as for sliders
        if not 0 <= i + step < len(values):
            step = control["step"] = -step
        select.focus()                                      # as from the keyboard: focus, then the next option
        select.select_option(values[i + step])
        return old, select.input_value()
    box = c.locator("input[type=checkbox]")
    old = box.is_checked()
    box.focus()
    box.press("Space")
    return str(old), str(box.is_checked())


def pixels_changed(before: bytes, after: bytes) -> float:
    """The fraction of pixels that differ between two PNG screenshots (1.0 when their sizes differ)."""
    from PIL import Image, ImageChops
    a, b = (Image.open(io.BytesIO(x)).convert("RGB") for x in (before, after))
    if a.size != b.size:
        return 1.0
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v else 0)
    return diff.histogram()[255] / (a.size[0] * a.size[1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_jupyterlab(path, lab, browser, times):
    base, token, _ = lab
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    entry = {"measured": now(), "alone": alone(), "load_1min": round(os.getloadavg()[0], 2), "controls": []}
    shots = ARTIFACTS / path.stem
    try:
        open_notebook(page, base, token, path.name)
        state, seconds = restart_and_run_all(page, path.name)
        entry["run_all_s"] = round(seconds, 2)
        report(f"\n{path.stem}: Restart Kernel and Run All Cells took {seconds:.1f} s")
        errors = describe_errors(state)
        if errors:
            pytest.fail(f"{path.name} shows errors in the browser:\n" + "\n".join(errors), pytrace=False)
        if state["status"] != "idle":
            pytest.fail(f"{path.name}: the kernel is {state['status']} after Run All", pytrace=False)
        counts = [c["count"] for c in state["cells"] if c["type"] == "code"]
        assert counts == list(range(1, len(counts) + 1)), (
            f"{path.name}: execution counts {counts} are not 1..{len(counts)}: not one run from a fresh kernel")

        deadline = time.monotonic() + WIDGET_RENDER_TIMEOUT_S
        while (bad := page.evaluate(WIDGET_TEXTS_JS)) and time.monotonic() < deadline \
                and all("Loading widget" in b["text"] for b in bad):
            page.wait_for_timeout(500)
        assert not bad, f"{path.name}: widgets did not render: " + "; ".join(
            f"cell {b['index']}: {b['text']!r}" for b in bad)
        screenshot(page, path.name, f"{shots}_first.png", "top")
        screenshot(page, path.name, f"{shots}_last.png", "bottom")

        for c in controls(page):
            image = c["image"]
            image.scroll_into_view_if_needed()
            before = image.screenshot()
            for notch in range(1, MAX_NOTCHES + 1):            # a setting may not change the picture (notebook 05:
                old_src, old_status = image.get_attribute("src"), c["status"].inner_text()   # tau_u inside tau_c)
                start = time.perf_counter()
                old, new = move(c)
                what = f"cell {c['cell']} {c['kind']} {c['name']!r} {old} -> {new}"
                try:   # redrawn: the picture changed, or the status line shows the new values and the picture did not
                    page.wait_for_function(REDRAWN_JS, arg=[image.element_handle(), old_src,
                                                            c["status"].element_handle(), old_status],
                                           timeout=REDRAW_TIMEOUT_S * 1000, polling=50)
                except Exception:  # noqa: BLE001 -- report which control, with the cell's errors if any
                    page.screenshot(path=f"{shots}_cell{c['cell']}_{c['kind']}_stuck.png")
                    errors = describe_errors(page.evaluate(STATE_JS, path.name))
                    pytest.fail(f"{path.name}: {what}: neither the image nor its status line changed within "
                                f"{REDRAW_TIMEOUT_S} s" + ("; " + "\n".join(errors) if errors else ""), pytrace=False)
                seconds = time.perf_counter() - start
                page.wait_for_timeout(100)                     # the new picture painted
                if image.get_attribute("src") != old_src:
                    break
                report(f"{path.stem}: {what}: redrawn in {seconds:.2f} s to the same picture; one more notch")
            else:
                pytest.fail(f"{path.name}: cell {c['cell']} {c['kind']} {c['name']!r}: {MAX_NOTCHES} moves from the "
                            f"keyboard never changed the picture", pytrace=False)
            changed = pixels_changed(before, image.screenshot())
            report(f"{path.stem}: {what}: redraw {seconds:.2f} s, {changed:.1%} of the image's pixels changed"
                  + (f" (after {notch} moves)" if notch > 1 else ""))
            entry["controls"].append({"cell": c["cell"], "kind": c["kind"], "name": c["name"], "from": old,
                                      "to": new, "moves": notch, "redraw_s": round(seconds, 3),
                                      "pixels_changed": round(changed, 4)})
            c["grid"].screenshot(path=f"{shots}_cell{c['cell']}_grid.png")   # the grid as the last move left it
            assert changed > 0, f"{path.name}: {what}: the image's source changed but no pixel did"
        times[path.stem] = entry
    except BaseException:
        _quietly(page.screenshot, path=f"{shots}_failed.png")     # the screen as the failure left it
        raise
    finally:
        _quietly(shut_down_kernel, page, path.name)               # its memory and CPU back before the next one
        _quietly(context.close)


def _quietly(fn, *args, **kwargs) -> None:
    """Clean-up that must not hide the test's own failure (the page may be gone)."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        print(f"clean-up {getattr(fn, '__name__', fn)} failed: {exc}")
