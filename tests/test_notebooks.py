"""The committed notebooks: each is generated from its jupytext source and was executed top to bottom."""
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IPYNB = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    assert [p.stem for p in IPYNB] == [p.stem for p in SOURCES], (
        "notebooks/NN_name.py (the source) and notebooks/NN_name.ipynb must come in pairs; "
        "run `make notebook NB=NN` to generate a missing notebook")


@pytest.mark.parametrize("path", IPYNB, ids=lambda p: p.stem)
def test_notebook_matches_its_source(path):
    nb = nbformat.read(path, as_version=4)
    src = jupytext.read(path.with_suffix(".py"))
    cells = [(c.cell_type, c.source) for c in nb.cells]
    wanted = [(c.cell_type, c.source) for c in src.cells]
    differ = [i for i, (a, b) in enumerate(zip(cells, wanted)) if a != b]
    assert len(cells) == len(wanted) and not differ, (
        f"{path.name} is out of date with {path.with_suffix('.py').name} ({len(cells)} vs {len(wanted)} cells; "
        f"first differing cell {differ[:1]}): edit the .py source, then run `make notebook NB={path.name[:2]}`")


@pytest.mark.parametrize("path", IPYNB, ids=lambda p: p.stem)
def test_notebook_outputs_come_from_one_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(code)}: the saved outputs are not from one "
        f"top-to-bottom run; run `make notebook NB={path.name[:2]}`")
    assert any(c.outputs for c in code), f"{path.name} has no saved outputs"
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: cells {errors} saved an error"
    ids = [c.get("id") for c in nb.cells]
    assert len(set(ids)) == len(ids) and all(ids), f"{path.name}: cell ids are missing or repeated"


@pytest.mark.parametrize("path", IPYNB, ids=lambda p: p.stem)
def test_every_widget_output_has_a_static_picture(path):
    """A widget needs a kernel; on GitHub and nbviewer only its image/png sibling shows (issue 20 item 4)."""
    nb = nbformat.read(path, as_version=4)
    bare = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in c.outputs)
            and not any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert not bare, (f"{path.name}: cells {bare} show a widget with no static picture; draw the default "
                      f"position with `diffnb.widgets.interactive_grid` (it saves one) and run "
                      f"`make notebook NB={path.name[:2]}`")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_notebook_leaves_torchs_thread_count_alone(path):
    """A notebook runs on the threads its environment gives torch (OMP_NUM_THREADS; CI and nbval set one): notebooks
    03 and 04 used to set two themselves, and beside another process a two-thread notebook ran for over 13 minutes
    instead of about one (2026-11-30). Library calls that pick a count restore it (`threads.torch_threads`)."""
    import re
    text = path.read_text()
    found = re.findall(r"set_num_threads\(|num_threads\s*=\s*[1-9]", text)
    assert not found, (f"{path.name} sets torch's thread count ({found}); leave it to the environment "
                       f"(OMP_NUM_THREADS), or pass num_threads=0 to a training config")
