"""The error types a user should see, each reported in one line: a bad setting (before any work starts), and a
write the file system refused (a full disk, a quota, a read-only mount)."""
from __future__ import annotations

import errno


class ConfigError(ValueError):
    """A setting is wrong; the message names it (e.g. "data.n=0: must be positive")."""


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
