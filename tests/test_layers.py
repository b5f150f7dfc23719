"""memsweep's packages are layers, and imports point down: a package imports only the layers below it (and
modules of its own package, without cycles). docs/layout.md lists the layers."""
import ast
from pathlib import Path

import memsweep

SRC = Path(memsweep.__file__).parent
ROOT = Path(__file__).resolve().parents[1]   # the checkout: src/, scripts/, tests/

# package -> the memsweep packages it may import (besides itself)
BOTTOM = {"errors", "states", "hashing", "threads", "lazy", "shipped_configs", "setting_types"}   # layer 0: anything may import these
ALLOWED = {
    "errors": set(),
    "lazy": set(),            # the one place a module is imported by name at run time
    "states": set(),
    "hashing": set(),
    "threads": set(),
    "shipped_configs": {"errors"},
    "setting_types": set(),   # how a schema is written and checked
    "science": BOTTOM,
    "metrics": {*BOTTOM, "science"},
    "data": BOTTOM,
    "store": BOTTOM,
    "eval": {*BOTTOM, "science", "metrics", "data", "store"},
    "train": {*BOTTOM, "science", "metrics", "data", "store", "eval"},
    "report": {*BOTTOM, "science", "metrics", "data", "store"},
    "schema": BOTTOM,         # the settings' types and ranges, read by config
    "reference": {*BOTTOM, "schema"},   # the config reference page, written from the schema (no torch)
    "config": {*BOTTOM, "science", "metrics", "data", "store", "eval", "schema"},
    "sweeps": {*BOTTOM, "science", "metrics", "data", "store", "eval", "train", "config", "schema"},
    "cli": {*BOTTOM, "science", "metrics", "data", "store", "eval", "train", "config", "schema", "reference", "sweeps",
            "report"},
    # the subcommands (cli loads the one it runs by name: memsweep.lazy)
    "commands": {*BOTTOM, "science", "metrics", "data", "store", "eval", "train", "config", "schema", "reference",
                 "sweeps", "report"},
    "launch": {"sweeps"},     # the import path of queued Slurm jobs (an alias)
    "__init__": set(),
}


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict) -> set[str]:
    """Every memsweep module `name` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[:len(name.split(".")) - node.level + (path.name == "__init__.py")]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            candidates = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != "memsweep"}
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_point_down_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        for target in imports_of(name, path, known):
            src, dst = package(name), package(target)
            if src != dst and dst not in ALLOWED[src]:
                upward.append(f"{name} imports {target} ({src} may import: {sorted(ALLOWED[src]) or 'nothing'})")
    assert not upward, "\n".join(upward)


def test_every_package_is_placed_in_a_layer():
    assert {package(m) for m in modules()} <= set(ALLOWED)


def test_no_import_cycles():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def functions_importing(tree: ast.AST):
    """(function, import) pairs: each import statement inside a function (at any depth), with its innermost one."""
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            up = parent.get(node)
            while up is not None and not isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                up = parent.get(up)
            if up is not None:
                yield up, node


def test_no_imports_inside_functions():
    """An import inside a function hides a dependency (and often a cycle) from the reader. A module memsweep loads
    only when it needs it goes through memsweep.lazy, whose docstring says which and why."""
    hidden = [f"{name}: line {node.lineno} in {fn.name}(): {ast.unparse(node)}"
              for name, path in sorted(modules().items())
              for fn, node in functions_importing(ast.parse(path.read_text()))]
    assert not hidden, "\n".join(hidden)


def renamed_memsweep_imports(tree: ast.AST, relative_is_memsweep: bool) -> list[ast.AST]:
    """The import statements that bind a memsweep module (or a name from one) under another name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            ours = [a for a in node.names if a.name.split(".")[0] == "memsweep"]
        elif isinstance(node, ast.ImportFrom):
            from_ours = (node.module or "").split(".")[0] == "memsweep" or (node.level and relative_is_memsweep)
            ours = node.names if from_ours else []
        else:
            continue
        if any(a.asname for a in ours):
            found.append(node)
    return found


def test_memsweep_modules_are_imported_by_their_own_names():
    """`from memsweep.sweeps import spec`, never `... import spec as sweep_mod`: a module reads the same in every
    file (a local variable that clashes is renamed instead). Third-party aliases (np, pd, plt, F) stay."""
    renamed = []
    for folder in ("src", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in renamed_memsweep_imports(ast.parse(path.read_text()), relative_is_memsweep=folder == "src"):
                renamed.append(f"{path.relative_to(ROOT)}: line {node.lineno}: {ast.unparse(node)}")
    assert not renamed, "\n".join(renamed)


def test_the_import_checks_find_what_they_look_for():
    """The two checks above on code that breaks them (a check that finds nothing in good code must still see)."""
    code = ast.parse("import json\n"
                     "from memsweep.sweeps import spec as sweep_mod\n"
                     "import memsweep.eval.features as feat\n"
                     "import numpy as np\n"
                     "def f():\n"
                     "    if True:\n"
                     "        import wandb\n"
                     "    class Inner:\n"
                     "        def g(self):\n"
                     "            from . import lazy\n"
                     "async def h():\n"
                     "    import torch\n")
    assert sorted((fn.name, node.lineno) for fn, node in functions_importing(code)) == [("f", 7), ("g", 10), ("h", 12)]
    assert sorted(node.lineno for node in renamed_memsweep_imports(code, relative_is_memsweep=True)) == [2, 3]
