"""A full disk said plainly, with the path: for every place that writes run outputs.

Python reports a full disk as ``OSError: [Errno 28] No space left on device`` without the
file; ``torch.save``'s C++ writer reports it as a bare ``RuntimeError`` ("basic_ios::clear:
iostream error", "unexpected pos ..."), which does not say what happened at all.  Wrap a
write in :func:`explain_full_disk` (predictions, metrics, shards, checkpoints) and either
error becomes :class:`NoSpaceLeft` naming the path and the free space.  Standard library
only, so any layer may use it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Iterator

#: a writer error counts as a full disk when less than this is free on the target's disk
NEARLY_FULL_BYTES = 64 * 1024 * 1024
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class NoSpaceLeft(OSError):
    """No space left on the device (or quota) while writing ``path``."""


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the disk holding ``path`` (its nearest existing parent); None if unknown."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _message(path: str | os.PathLike) -> str:
    free = free_bytes(path)
    left = "" if free is None else f" ({free / 2**20:.1f} MiB free)"
    return f"no space left on device while writing {os.fspath(path)}{left}: free some space or write elsewhere"


@contextlib.contextmanager
def explain_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full-disk failure inside the block into NoSpaceLeft naming ``path``."""
    try:
        yield
    except NoSpaceLeft:
        raise
    except OSError as error:
        if error.errno in FULL_ERRNOS:
            raise NoSpaceLeft(error.errno, _message(path)) from error
        raise
    except RuntimeError as error:  # torch.save's writer hides the errno
        free = free_bytes(path)
        if free is not None and free < NEARLY_FULL_BYTES:
            raise NoSpaceLeft(errno.ENOSPC, _message(path)) from error
        raise
