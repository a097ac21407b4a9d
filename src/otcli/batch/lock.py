"""One run per output: a batch run holds an exclusive lock on its OUT while it writes.

Two ``otdist batch`` runs on one OUT (a second one started with ``--resume`` or
``--overwrite`` while the first runs) interleaved their journal lines and lost every scored
row. The lock is ``fcntl.flock`` on a hidden file beside OUT (``.OUT.lock``), taken before the
journal is opened and released when the run ends: the kernel drops it with the process, so
a killed run never leaves OUT locked. Where ``fcntl`` does not exist (Windows) runs are not
locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from otcli.errors import OptionError


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold OUT's lock for the ``with`` block; refuse at once if another run holds it."""
    try:
        import fcntl
    except ImportError:  # no advisory locks here: run unlocked
        yield
        return
    path = lock_path(out)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # an unwritable folder: the output's own checks say so, in their words
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise OptionError(
                "-o",
                f"{str(out)!r} is being written by another otdist run (pid {holder}); wait for "
                "it to finish, or write to another file",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)
