"""The Colab cell at the top of every notebook (issue 20 item 5), run with a fake Colab and a fake clone and install.

The cell is the first code cell of each notebook source. On Colab (`"google.colab" in sys.modules`) it clones the
repository, installs it with pip keeping Colab's torch and torchvision, puts the clone on sys.path and changes into
its notebooks/ folder; anywhere else it does nothing. Nothing here runs a command, touches the network or changes
the working directory: subprocess.run and os.chdir are replaced by recorders.
"""
import os
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
CLONE = "/content/diffnb"
PLACEHOLDER = "https://github.com/<owner>/<repo>"   # the README's convention (its Binder badge)
FAKE_VERSIONS = {"torch": "2.99.0+cu999", "torchvision": "0.99.0+cu999"}


def colab_cell(path: Path) -> str:
    """The notebook's first code cell, which must be the Colab cell (checked before anything runs it)."""
    source = next(c.source for c in jupytext.read(path).cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in source, (
        f"{path.name}: the first code cell is not the Colab cell; copy it from {SOURCES[0].name}")
    return source


def run_cell(source: str, monkeypatch, *, on_colab: bool, cloned: bool = False) -> dict:
    """Execute the cell with recorders for its commands; return what it did."""
    did = {"commands": [], "chdir": []}
    monkeypatch.setattr(sys, "path", list(sys.path))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: did["commands"].append((list(cmd), kw)))
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: did["commands"].append((list(cmd), kw)))
    monkeypatch.setattr(os, "system", lambda cmd: did["commands"].append((cmd, {})))
    monkeypatch.setattr(os, "chdir", lambda path: did["chdir"].append(str(path)))
    monkeypatch.setattr(os.path, "isdir", lambda path: cloned and str(path) == CLONE)
    monkeypatch.setattr(metadata, "version", lambda name: FAKE_VERSIONS[name])
    path_before = list(sys.path)
    exec(compile(source, "<colab cell>", "exec"), {"__name__": "__main__"})
    did["sys.path added"] = [p for p in sys.path if p not in path_before]
    return did


def test_every_notebook_starts_with_the_same_colab_cell():
    """One cell, copied verbatim: notebook 04 and any new notebook included."""
    cells = {p.name: colab_cell(p) for p in SOURCES}
    first = cells[SOURCES[0].name]
    differ = [name for name, cell in cells.items() if cell != first]
    assert not differ, f"{differ}: the first code cell must be the Colab cell of {SOURCES[0].name}, verbatim"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_the_cell_does_nothing_locally(path, monkeypatch):
    did = run_cell(colab_cell(path), monkeypatch, on_colab=False)
    assert did == {"commands": [], "chdir": [], "sys.path added": []}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_on_colab_the_cell_clones_installs_keeping_torch_and_enters_notebooks(path, monkeypatch):
    source = colab_cell(path)
    assert len(re.findall(r"https://github\.com/", source)) == 1, "the repository URL must be in one place"
    did = run_cell(source, monkeypatch, on_colab=True)
    (clone, clone_kw), (pip, pip_kw) = did["commands"]
    assert clone == ["git", "clone", "--depth", "1", PLACEHOLDER, CLONE] and clone_kw.get("check")
    assert pip[:4] == [sys.executable, "-m", "pip", "install"] and pip_kw.get("check")
    assert pip[pip.index("-e") + 1] == CLONE, "an editable install of the clone (the toy models are in data/)"
    # Colab's own builds, named at their installed versions, so pip keeps them; nothing that would replace them
    assert {a for a in pip if re.match(r"torch|torchvision", a)} == {f"{k}=={v}" for k, v in FAKE_VERSIONS.items()}
    assert not {"-U", "--upgrade", "--force-reinstall"} & set(pip)
    assert did["sys.path added"] == [CLONE], "`import diffnb` must work in this kernel without a restart"
    assert did["chdir"] == [f"{CLONE}/notebooks"]


def test_running_the_cell_again_does_not_clone_again(monkeypatch):
    did = run_cell(colab_cell(SOURCES[0]), monkeypatch, on_colab=True, cloned=True)
    assert [cmd[:2] for cmd, _ in did["commands"]] == [[sys.executable, "-m"]]
    assert did["chdir"] == [f"{CLONE}/notebooks"]


def test_readme_links_every_notebook_in_colab():
    readme = (ROOT / "README.md").read_text()
    assert PLACEHOLDER.removeprefix("https://github.com/") in readme
    missing = [p.stem for p in SOURCES
               if f"https://colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/{p.stem}.ipynb"
               not in readme]
    assert not missing, f"README.md has no 'Open in Colab' link for {missing}"
