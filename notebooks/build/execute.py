"""Sync notebooks from their jupytext sources, execute them in place, and normalise them (small diffs).

    python notebooks/build/execute.py notebooks/03_rectifier.py [...]      # source or .ipynb, either works
    python notebooks/build/execute.py --sync-only notebooks/*.py            # update the .ipynb inputs, keep outputs
    python notebooks/build/execute.py --sync-only --renumber notebooks/01_diffusion_basics.py

The source of each notebook is the jupytext percent file `notebooks/NN_name.py`; the `.ipynb` beside it is
generated. Syncing (`jupytext --update --to ipynb`) replaces the notebook's inputs by the source's and keeps the
outputs and ids of unchanged cells; a new cell gets a new id, and no other cell's id changes.

`--sync-only` keeps the saved execution counts, so a code cell added without executing has none and
tests/test_notebooks.py says the outputs are not from one run. `--renumber` (with `--sync-only`) numbers the code
cells 1..N as a top-to-bottom run would. It is only for inserting code cells that do nothing locally and print
nothing (like the Colab cell at the top of each notebook): for any other cell it would fake a run, so execute.
"""
import hashlib
import sys
import time
from pathlib import Path

import jupytext.cli
import nbformat
from nbclient import NotebookClient

METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}


def pair(path) -> tuple:
    """(source .py, notebook .ipynb) for either of the two paths."""
    p = Path(path)
    if p.suffix not in (".py", ".ipynb"):
        raise SystemExit(f"{p}: expected a notebook source (.py) or a notebook (.ipynb)")
    return p.with_suffix(".py"), p.with_suffix(".ipynb")


def sync(source: Path, notebook: Path) -> None:
    """Write the source's cells into the notebook, keeping the outputs and ids of cells whose input is unchanged."""
    if not source.is_file():
        raise SystemExit(f"{source}: no such notebook source (the .py file is what you edit)")
    args = ["--update", "--to", "ipynb"] if notebook.is_file() else ["--to", "ipynb"]
    if jupytext.cli.jupytext(args + [str(source), "--output", str(notebook), "--quiet"]):
        raise SystemExit(f"jupytext could not sync {source}")


def stable_id(cell, taken: set) -> str:
    """The cell's id if it has a unique one; else one derived from its source (stable across re-runs)."""
    cid = cell.get("id")
    if cid and cid not in taken:
        return cid
    base = "c-" + hashlib.sha1(cell["source"].encode()).hexdigest()[:8]
    cid, k = base, 1
    while cid in taken:
        cid, k = f"{base}-{k}", k + 1
    return cid


def normalise(nb, renumber: bool = True) -> None:
    """Fixed metadata, stable ids; with `renumber`, execution counts 1..N (what a top-to-bottom run records)."""
    nb.metadata = dict(METADATA)
    count, taken = 0, set()
    for cell in nb.cells:
        cell["id"] = stable_id(cell, taken)
        taken.add(cell["id"])
        cell["metadata"] = {}
        if cell["cell_type"] == "code":
            count += 1
            if renumber:
                cell["execution_count"] = count
            for out in cell.get("outputs", []):
                if renumber and "execution_count" in out:
                    out["execution_count"] = count
                out.get("metadata", {}).clear() if out.get("output_type") != "display_data" else None


def main(argv) -> None:
    flags = {"--sync-only", "--renumber"}
    sync_only, renumber = "--sync-only" in argv, "--renumber" in argv
    if renumber and not sync_only:
        raise SystemExit("--renumber goes with --sync-only (an executed notebook is numbered by its run)")
    for source, notebook in map(pair, [a for a in argv if a not in flags]):
        sync(source, notebook)
        nb = nbformat.read(notebook, as_version=4)
        t0 = time.time()
        if not sync_only:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(notebook.parent)}}).execute()
        normalise(nb, renumber=not sync_only or renumber)
        nbformat.write(nb, str(notebook))
        print(f"{notebook}: {'synced' if sync_only else f'{time.time() - t0:.0f} s'}, "
              f"{notebook.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1:])
