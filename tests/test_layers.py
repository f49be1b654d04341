"""The package's import graph follows the layer table of README.md (Repository layout): every module is in one
layer, imports only its own layer and the layers its row allows, and no two modules import each other."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffnb"
# Imports against the table that are known and not yet fixed: none (issue 16 moved toy-ae's trainer and card into
# diffnb.maint.ae_training, the one fit loop below the methods into diffnb.fit, which the rectifier's live training
# uses, and the registry names toy-rectifier's loader in zoo.METHOD_LOADERS). A new violation fails at once.
KNOWN: set = set()


def layer_table() -> tuple:
    """({module: layer}, {layer: set of layers it may import}) from README.md's table."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.replace(" ", "") == "|layer|modules|mayimport|")
    layer_of, allowed = {}, {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        layer, modules, may = (c.strip() for c in ln.strip("|").split("|"))
        names = re.findall(r"`([a-z_0-9]+)`", modules)
        for m in names:                       # every name in backticks in the modules cell is a module
            layer_of[m] = layer
        allowed[layer] = set() if may in ("–", "-", "") else {x.strip() for x in may.split(",")}
    for layer in allowed:
        if "every layer" in allowed[layer]:
            allowed[layer] = set(allowed)
    return layer_of, allowed


def node(parts) -> str:
    """The graph's name of a diffnb module: `world`, or `maint.fit` for a module of the maint package."""
    return f"maint.{parts[1]}" if parts[0] == "maint" and len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return node([p for p in parts if p != "__init__"])


def layer(m: str) -> str:
    """The table's name of a module (every module of diffnb/maint is `maint`)."""
    return m.split(".")[0]


def imported(path: Path) -> set:
    """The diffnb modules `path` imports anywhere (functions included), except under `if __name__ == "__main__"`."""
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(PACKAGE).parent.parts)     # [] for diffnb/x.py, ["maint"] for diffnb/maint/x.py
    found = set()

    def visit(node_):
        if isinstance(node_, ast.If) and isinstance(node_.test, ast.Compare) and \
                getattr(node_.test.left, "id", None) == "__name__":
            return                                              # a command-line entry point
        if isinstance(node_, ast.Import):
            found.update(node(a.name.split(".")[1:]) for a in node_.names
                         if a.name.startswith("diffnb.") and len(a.name.split(".")) > 1)
        elif isinstance(node_, ast.ImportFrom):
            if node_.level == 0:
                parts = (node_.module or "").split(".")
                if parts[0] != "diffnb":
                    return
                parts = parts[1:]
            else:
                if node_.level - 1 > len(package):
                    raise AssertionError(f"{path}: relative import above the package")
                parts = package[:len(package) - (node_.level - 1)] + (node_.module.split(".") if node_.module else [])
            if parts and parts != ["maint"]:
                found.add(node(parts))
            else:                                               # from diffnb import a, b / from . import a, b
                found.update(node(parts + [a.name]) for a in node_.names)
        for child in ast.iter_child_nodes(node_):
            visit(child)
    visit(tree)
    return found


def graph() -> dict:
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        m = module_name(path)
        edges.setdefault(m, set()).update(imported(path) - {m})
    return edges


def test_every_module_is_in_the_table():
    layer_of, _ = layer_table()
    missing = sorted({layer(m) for m in graph()} - set(layer_of))
    assert not missing, f"modules missing from README.md's layer table: {missing}"


def test_imports_follow_the_layers():
    layer_of, allowed = layer_table()
    of = lambda m: layer_of.get(layer(m))
    bad = [f"{m} ({of(m)}) imports {d} ({of(d)})"
           for m, deps in graph().items() for d in sorted(deps)
           if of(m) and of(d) and of(d) != of(m) and of(d) not in allowed[of(m)] and (m, d) not in KNOWN]
    assert not bad, "imports against README.md's layer table:\n" + "\n".join(bad)


def test_the_graph_has_no_cycles():
    edges = {m: {d for d in deps if (m, d) not in KNOWN} for m, deps in graph().items()}
    state = {}

    def walk(m, stack):
        state[m] = "open"
        for d in sorted(edges.get(m, ())):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                walk(d, stack + [d])
        state[m] = "done"
    for m in sorted(edges):
        if m not in state:
            walk(m, [m])


def test_zoo_list_does_not_need_the_trainers():
    """`python -m diffnb.zoo list` imports the registry and the command line only."""
    import subprocess
    import sys
    code = ("import runpy, sys; sys.argv = ['zoo', 'list']\n"
            "try:\n    runpy.run_module('diffnb.zoo', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('diffnb')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "toy-ddpm" in out and "training" not in loaded and "cards" not in loaded and "t2i" not in loaded, loaded


def test_method_loaders_resolve():
    """The registry's named loaders (zoo.METHOD_LOADERS) exist, in modules of a layer that may import the registry."""
    from diffnb import zoo
    layer_of, allowed = layer_table()
    for name, (module, function) in zoo.METHOD_LOADERS.items():
        assert name in zoo.TOY_MODELS, name
        assert callable(zoo._method_loader(name)), (module, function)
        m = module.split(".")[1]
        assert "registry" in allowed[layer_of[m]], f"{name}'s loader lives in {m}, a layer that cannot use the zoo"
