"""The package layout follows the data flow: imports between sub-packages run one way.

Layers (a sub-package may import only from its own layer or the layers before it):
private helpers (``classavg._*``) and metrics -> sources/io -> basis -> classification,
averaging -> selection -> pipeline -> report, cli.  ``io`` and ``sources`` form one layer
(readers build sources, sources save through writers).  Within and across sub-packages no
two modules import each other, directly or through others (imports inside functions count).
"""

import ast
from pathlib import Path

import classavg

PACKAGE = Path(classavg.__file__).parent
LAYER = {"_": 0, "metrics": 0, "sources": 1, "io": 1, "basis": 2, "classification": 3,
         "averaging": 3, "selection": 4, "report": 4, "pipeline": 5, "cli": 6}
MAX_LINES = 800


def subpackage(module_path):
    rel = module_path.relative_to(PACKAGE).parts
    return "_" if len(rel) == 1 else rel[0]


def imported_subpackages(path):
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative import
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                parts = list(base) + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.startswith("classavg."):
                names = [node.module.split(".")[1]]
            else:
                continue
            for name in names:
                yield "_" if name.startswith("_") else name


def test_imports_run_one_way():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        src = subpackage(path)
        if src == "_" and path.name == "__init__.py":
            continue                                          # the top level re-exports all
        for dst in imported_subpackages(path):
            if dst in LAYER and LAYER[dst] > LAYER[src]:
                bad.append(f"{path.relative_to(PACKAGE)} imports {dst}")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(set(bad)))


def test_modules_stay_small():
    big = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, f"modules over {MAX_LINES} lines:\n" + "\n".join(big)


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path, modules):
    """classavg modules that ``path`` imports (``from x import y`` names module ``x.y`` when
    that is a module, else ``x``), at module level or inside functions."""
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = here[:len(here) - (node.level - 1)] if node.level else []
            mod = ".".join(base + (node.module.split(".") if node.module else []))
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                if full in modules:
                    yield full
                elif mod in modules:
                    yield mod
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in modules)


def test_no_import_cycles_between_modules():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set(imported_modules(p, paths)) - {m} for m, p in paths.items()}
    # Package __init__ files re-export their modules: an edge into a package stands for
    # the package's own imports, so cycles through them are real cycles too.
    state, stack, cycles = {}, [], []

    def visit(m):                                   # depth-first search for a back edge
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
