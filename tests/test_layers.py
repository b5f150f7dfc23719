"""memsweep's packages are layers, and imports point down: a package imports only the layers below it (and
modules of its own package, without cycles). docs/layout.md lists the layers."""
import ast
from pathlib import Path

import memsweep

SRC = Path(memsweep.__file__).parent

# package -> the memsweep packages it may import (besides itself)
BOTTOM = {"errors", "states", "hashing", "threads", "lazy", "shipped_configs"}   # layer 0: anything may import these
ALLOWED = {
    "errors": set(),
    "lazy": set(),            # the one place a module is imported by name at run time
    "states": set(),
    "hashing": set(),
    "threads": set(),
    "shipped_configs": {"errors"},
    "science": BOTTOM,
    "metrics": {*BOTTOM, "science"},
    "data": BOTTOM,
    "store": BOTTOM,
    "eval": {*BOTTOM, "science", "metrics", "data", "store"},
    "train": {*BOTTOM, "science", "metrics", "data", "store", "eval"},
    "report": {*BOTTOM, "science", "metrics", "data", "store"},
    "schema": BOTTOM,         # the settings' types and ranges (pydantic), read by config
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


def test_memsweep_imports_are_at_module_level():
    """An import of memsweep inside a function hides a dependency (and often a cycle) from the reader."""
    hidden = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                mod = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if (isinstance(node, ast.ImportFrom) and (node.level or mod.startswith("memsweep"))) or any(
                        n.startswith("memsweep") for n in names):
                    hidden.append(f"{name}: line {node.lineno}")
    assert not hidden, "\n".join(hidden)
