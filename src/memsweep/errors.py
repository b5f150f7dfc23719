"""The error types a user should see, each reported in one line: a bad setting (before any work starts), a
process of a run on several lost, a write the file system refused (a full disk, a quota, a read-only mount); and the words for a file the user named
that cannot be read (a path, a YAML syntax error)."""
from __future__ import annotations

import errno
import os
from pathlib import Path


class ConfigError(ValueError):
    """A setting is wrong; the message names it (e.g. "data.n=0: must be positive")."""


class RankLost(RuntimeError):
    """A run on several processes lost one of them (it died, was killed, or timed out in a collective); the
    run's last checkpoint stands and the same command resumes from it."""


# the errno values that mean "this storage takes no more writes": freeing space (or remounting) and running
# the same command again resumes the run, so they get one line and no traceback
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StorageError(OSError):
    """A write failed because the storage is full or read-only. Built with OSError's own arguments
    (errno, strerror, filename) so that it pickles from a worker process to the launcher unchanged."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def storage_error(e: BaseException, path=None) -> BaseException:
    """`e` as a StorageError naming `path` if it is a full or read-only storage error, else `e` itself."""
    if isinstance(e, StorageError) or not isinstance(e, OSError) or e.errno not in NO_SPACE:
        return e
    return StorageError(e.errno, e.strerror or "", str(path or e.filename or "?"))


def path_problem(path, kind: str = "file") -> str | None:
    """Why `path`, a path the user gave, cannot be read as a `kind` ("file" or "folder"): "no such file", "a
    folder, not a file", "cannot read it (Permission denied)", ...; None when it can. Settings that name a file
    check it with this before work starts; only a default location that is absent is a warning (its caller's)."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return f"no such {kind}"
    if kind == "folder" and not p.is_dir():
        return "not a folder (a file)"
    if kind == "file" and p.is_dir():
        return "a folder, not a file"
    try:
        if kind == "folder":
            os.listdir(p)
        else:
            with open(p, "rb"):
                pass
    except OSError as e:
        return f"cannot read it ({e.strerror or type(e).__name__})"
    return None


def yaml_problem(e: BaseException, path=None) -> str:
    """A YAML syntax error (PyYAML's) in one line naming the file (`path`, else the one PyYAML names) and the line:
    `lab.yaml, line 3: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence from line 2)`."""
    mark, context_mark = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    if mark is None:
        return f"{path or 'YAML'}: {' '.join(str(e).split())}"
    text = f"{path or mark.name}, line {mark.line + 1}: {getattr(e, 'problem', None) or 'not valid YAML'}"
    context = getattr(e, "context", None)
    if context:
        elsewhere = context_mark is not None and context_mark.line != mark.line
        where = f" from line {context_mark.line + 1}" if elsewhere else ""
        text += f" ({context}{where})"
    return text
