"""Feature-space specs as a config gives them (eval.*_features, `memsweep eval --features`), checked without
torch: a spec's name in metric keys, and what is wrong with it or with the files it names. eval.features builds
the spaces (its docstring describes each).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

from memsweep.errors import path_problem

INCEPTION_FILE = "inception-2015-12-05.pt"
SPACES = ("pixels", "inception", "digitnet", "torchscript:<path>")


def torchscript_problem(path) -> str | None:
    """What keeps `path` from being a TorchScript file (None: nothing), read from its zip directory, without
    torch: torch.jit.load needs its constants.pkl, which torch.save's files (a model, a state dict) lack."""
    p = Path(str(path)).expanduser()
    problem = path_problem(p)
    if problem:
        return problem
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "not a TorchScript file (not a zip archive)"
    if not any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):
        return ("not a TorchScript file (one of torch.save's, a model or its weights?); export one with "
                "torch.jit.script(model).save(path) or torch.jit.trace")
    return None


def inception_problem(configured) -> str | None:
    """What is wrong with eval.inception_path as given (None: unset, or fine): it must name the weights file or a
    folder holding it. Unset, clean-fid's cache /tmp is looked at when the space is built, and its absence is a
    warning there (Evaluator.space): a default location, not a path the user typed."""
    if configured in (None, "", "None"):
        return None
    p = Path(str(configured)).expanduser()
    if p.is_dir():
        p = p / INCEPTION_FILE
        if not p.exists():
            return f"no {INCEPTION_FILE} in that folder"
    elif p.exists() and p.name != INCEPTION_FILE:
        return f"the file must be named {INCEPTION_FILE} (clean-fid loads it by its folder and that name)"
    return torchscript_problem(p)


def find_inception_weights(configured: str | None) -> Path | None:
    candidates = []
    if configured:
        p = Path(str(configured)).expanduser()
        candidates.append(p / INCEPTION_FILE if p.is_dir() else p)
    candidates.append(Path("/tmp") / INCEPTION_FILE)  # where clean-fid caches it
    return next((c for c in candidates if c.is_file()), None)


def torchscript_name_and_path(spec_rest: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_]+)=(.+)", spec_rest)
    if match:
        return match.group(1).lower(), match.group(2)
    stem = Path(spec_rest).name.split(".")[0]
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "torchscript", spec_rest


def space_name(spec: str) -> str:
    """The name of a space in metric keys, without building it."""
    spec = str(spec)
    if spec.startswith("torchscript:"):
        return torchscript_name_and_path(spec.split(":", 1)[1])[0]
    if spec in ("pixels", "inception", "digitnet"):
        return spec
    raise ValueError(f"unknown feature space {spec!r} (use {', '.join(SPACES)})")


def file_problem(spec: str) -> str | None:
    """What is wrong with the file a spec names (torchscript:[<name>=]<path>); None for the other spaces."""
    spec = str(spec)
    if not spec.startswith("torchscript:"):
        return None
    return torchscript_problem(torchscript_name_and_path(spec.split(":", 1)[1])[1])


def check_spec(spec: str, dataset: str) -> str | None:
    """What is wrong with a feature-space spec for this dataset (None if nothing). Inception weights missing from
    their default location are not an error: metrics in that space are then skipped with a warning (see
    Evaluator.space); a path the user gave is checked by inception_problem."""
    spec = str(spec)
    if spec in ("none", "pixels", "inception"):
        return None
    if spec == "digitnet":
        return None if dataset == "digits" else "the digitnet space is for data=digits"
    if spec.startswith("torchscript:"):
        return file_problem(spec)
    return f"unknown feature space (use {', '.join(SPACES)} or none)"
