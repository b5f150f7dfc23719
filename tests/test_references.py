"""Every memsweep module (or name in one) that the code, the tests, the scripts or the docs point to exists: a
module renamed or removed leaves no stale pointer behind."""
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bmemsweep(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def resolves(name: str) -> bool:
    """A dotted name: its longest importable module prefix, then attributes of it."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_memsweep_name_in_the_tree_exists():
    files = [*ROOT.glob("src/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py"), ROOT / "README.md",
             *ROOT.glob("docs/**/*.md")]
    stale = sorted({(f.relative_to(ROOT).as_posix(), m) for f in files
                    for m in NAME.findall(f.read_text(encoding="utf-8")) if not resolves(m)})
    assert not stale, "names of no module or attribute: " + "; ".join(f"{f}: {m}" for f, m in stale)
