"""Execute notebooks in place and normalise them so re-running gives small diffs.

    python notebooks/build/execute.py notebooks/01_diffusion_basics.ipynb [...]
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def normalise(nb) -> None:
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    count = 0
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
        cell["metadata"] = {}
        if cell["cell_type"] == "code":
            count += 1
            cell["execution_count"] = count
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = count
                out.get("metadata", {}).clear() if out.get("output_type") != "display_data" else None


def main(paths) -> None:
    for p in map(Path, paths):
        nb = nbformat.read(p, as_version=4)
        t0 = time.time()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}}).execute()
        normalise(nb)
        nbformat.write(nb, str(p))
        print(f"{p}: {time.time() - t0:.0f} s, {p.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1:])
