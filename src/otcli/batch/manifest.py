"""The manifest of ``otdist batch``: one pair per row, columns a, b, optional id and eps.

Relative paths resolve against the manifest's folder; ids are text (``1`` and ``01`` are two
ids; an integer column's ids become their decimal text) and unique; an empty ``eps`` cell
means ``--eps``, and any other cell that is not a positive finite number (``nan``, ``NA``,
``-1``) fails its row. Everything else wrong with the manifest is an
:class:`~otcli.errors.InputError` naming it, raised before any work.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otcli.errors import InputError, OptionError
from otcli.io.common import os_reason
from otcli.io.tables import read_table, resolve_path

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class PairSpec:
    """One manifest row: ``a``/``b`` as written, ``path_a``/``path_b`` resolved against the
    manifest's folder, ``eps`` (``None``: the ``--eps`` option) and the text ``id``.
    ``eps_error`` says why the row's ``eps`` cell cannot be used (the row then fails)."""

    id: str
    a: str
    b: str
    path_a: str
    path_b: str
    eps: float | None
    eps_error: str | None = None

    @property
    def key(self) -> str:
        """The id: how rows are matched against a journal or a previous output."""
        return str(self.id)


def read_manifest(path: str | os.PathLike[str]) -> list[PairSpec]:
    """The pairs of a manifest: columns ``a``, ``b`` (paths), optional ``id`` and ``eps``.

    Relative paths resolve against the manifest's folder. ``id`` defaults to the 0-based row
    number (as text); ids must be unique. Empty ``eps`` cells mean ``--eps``; a cell that is
    not a positive finite number gives its pair an ``eps_error``. Raises
    :class:`~otcli.errors.InputError` naming the manifest for a missing column, an empty path
    or a duplicate id.
    """
    where = os.fspath(path)
    if where == "-":  # its relative paths need a folder; an idle pipe would hang the run
        raise InputError(
            "-",
            "a manifest is read from a file, not standard input (its relative paths are "
            "taken from its folder); save it as .csv, .tsv or .parquet and give its path",
        )
    table = read_table(where, "manifest")
    names = table.column_names
    missing = [c for c in ("a", "b") if c not in names]
    if missing:
        found = ", ".join(names) if names else "none"
        raise InputError(
            where,
            f"no column {missing[0]!r}; a manifest needs columns a and b (paths) and may "
            f"have id and eps (found: {found})",
        )
    a = [_path_cell(v, where, "a", k) for k, v in enumerate(table["a"].to_pylist())]
    b = [_path_cell(v, where, "b", k) for k, v in enumerate(table["b"].to_pylist())]
    ids = _ids(table, where)
    eps: list[tuple[float | None, str | None]] = [(None, None)] * len(a)
    if "eps" in names:
        eps = [_eps_cell(v, where, k) for k, v in enumerate(table["eps"].to_pylist())]
    base = os.path.dirname(where)
    return [
        PairSpec(i, pa_, pb, resolve_path(base, pa_), resolve_path(base, pb), *e)
        for i, pa_, pb, e in zip(ids, a, b, eps, strict=True)
    ]


#: An ε cell's text: a plain decimal number (ASCII digits, optional sign, point, exponent).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _eps_cell(value: object, where: str, row: int) -> tuple[float | None, str | None]:
    """(ε, None) for a usable cell, (None, None) for an empty one (``--eps``), and
    (None, why) for anything else: that row fails, never silently falls back to ``--eps``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip()):
            raise ValueError  # Python's float() also reads "1_0" as 10, and "١" as 1
        eps = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        eps = math.nan
    if math.isfinite(eps) and eps > 0:
        return eps, None
    return None, (
        f"{where}: row {row} (0-based, header excluded): eps {value!r} is not a positive "
        "finite number; give one, or leave the cell empty to use --eps"
    )


def _path_cell(value: object, where: str, column: str, row: int) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise InputError(
            where, f"row {row} (0-based, header excluded) has no path in column {column!r}"
        )
    return text


def _ids(table: Any, where: str) -> list[str]:
    """The ids as text: as written in a CSV/TSV cell (stripped), an integer column's values
    in decimal, the 0-based row number when there is no ``id`` column."""
    if "id" not in table.column_names:
        return [str(k) for k in range(table.num_rows)]
    ids: list[str] = []
    for k, v in enumerate(table["id"].to_pylist()):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise InputError(where, f"row {k} (0-based, header excluded) has no id")
        ids.append(str(v).strip())
    seen: dict[str, int] = {}
    for k, v in enumerate(ids):
        if v in seen:
            raise InputError(
                where,
                f"duplicate id {v!r} in rows {seen[v]} and {k} (0-based, header "
                "excluded); ids must be unique",
            )
        seen[v] = k
    return ids


def check_coupling_dir(
    directory: str | os.PathLike[str],
    pairs: Sequence[PairSpec],
    fmt: str,
    *,
    replace: bool = False,
    inputs: dict[tuple[int, int], str] | None = None,
    others: Sequence[tuple[str, str | os.PathLike[str]]] = (),
) -> Path:
    """The coupling folder (created if its parent exists) and ids that are safe file names,
    all checked before any solving.

    The folder must be writable (an existing one, or the parent of a new one), and every
    ``DIR/<id>.<fmt>`` name within the file system's limit. The overwrite policy of every
    output holds for these files: an existing one is refused unless ``replace``
    (``--overwrite``, or ``--resume``, whose unfinished pairs may have left one), one that is
    an input (:func:`file_identities`) always, and so is one that is the run's other
    outputs (``others``, (option, path) pairs: ``-o cdx/res.parquet`` with an id ``res``).
    """
    from otcli.io.writers import (
        check_distinct_outputs,
        check_name_length,
        check_new_output,
        path_problem,
    )

    if fmt not in ("npy", "parquet"):
        raise OptionError("--coupling-format", f"unknown format {fmt!r}; use npy or parquet")
    path = Path(directory)
    for pair in pairs:
        if not _SAFE_ID.fullmatch(str(pair.id)):
            raise OptionError(
                "--coupling-dir",
                f"id {pair.id!r} is not a safe file name (letters, digits, . _ + - only, not "
                "starting with a dot); rename it in the manifest",
            )
    try:
        exists = _check_folder(path)
        files = [path / f"{pair.id}.{fmt}" for pair in pairs]
        for file in files:
            check_name_length(file, "--coupling-dir")
        check_distinct_outputs([*others, *(("--coupling-dir", f) for f in files)])
        if exists:
            for file in files:
                check_new_output(file, "--coupling-dir", overwrite=replace, inputs=inputs or {})
    except OSError as exc:
        raise OptionError("--coupling-dir", path_problem(path, exc)) from None
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:  # /proc/x: a folder no one can make
        raise OptionError(
            "--coupling-dir", f"cannot create directory {str(path)!r} ({os_reason(exc)})"
        ) from None
    return path


def _check_folder(path: Path) -> bool:
    """Whether the coupling folder exists; refuse one that cannot be written, or whose
    parent cannot be written when it must be made."""
    if path.exists() and not path.is_dir():
        raise OptionError("--coupling-dir", f"{str(path)!r} exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OptionError(
                "--coupling-dir", f"cannot write to directory {str(path)!r} (permission denied)"
            )
        return True
    parent = path.parent
    if not parent.is_dir():
        raise OptionError(
            "--coupling-dir", f"directory {str(parent)!r} does not exist; create it first"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(
            "--coupling-dir",
            f"cannot create {str(path)!r}: directory {str(parent)!r} is not writable "
            "(permission denied)",
        )
    return False
