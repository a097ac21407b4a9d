"""The ``otdist`` command: parse, call the library, render. No math, no file parsing here.

``otdist A B [options]`` is the default command; subcommands (``batch``, ``pairwise``,
``matrix``) sit beside it. Heavy imports (torch, numpy, pyarrow, rich) happen inside the command, so
``otdist --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

from otcli.cli import barycenter, many, matrix, pair, show  # noqa: F401 (each registers its commands on the app)
from otcli.cli.app import app, main, run

__all__ = ["app", "main", "run"]
