"""Standard streams the shell closed (``otdist A B >&-``, ``2>&-``, ``<&-``).

Python starts with ``sys.stdout`` (or ``sys.stderr``, ``sys.stdin``) set to ``None`` when
its descriptor is closed, and the next file otdist opens would get that descriptor: a
library's stray write to "stdout" would land in a coupling file. :func:`repair_standard_streams`
points each closed descriptor at ``/dev/null`` first thing, and then:

- a closed **stderr** is a ``/dev/null`` stream: messages have nowhere to go, so none are
  shown, and a good run still prints its result and exits 0;
- a closed **stdin** reads as empty (``-`` is then an input with no data: an ``Error``);
- a closed **stdout** stays ``None``: a command whose result goes there refuses to start
  (:func:`otcli.render.require_stdout`: ``Error: stdout: ...``, exit 2), as ``echo hi >&-``
  fails with a write error. The result is what ``otdist A B`` is run for; a run that can
  only throw it away is a mistake to report, not one to finish quietly. ``batch`` and
  ``pairwise`` print no result there and run as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys


def repair_standard_streams() -> None:
    """Open ``/dev/null`` on the closed ones of descriptors 0, 1 and 2 (see the module)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the process)
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115
