"""The manifest of ``otdist batch``: one pair per row, columns a, b, optional id and eps.

Relative paths resolve against the manifest's folder; ids are unique; an empty ``eps`` cell
means ``--eps``. Everything wrong with the manifest is an :class:`~otcli.errors.InputError`
naming it, raised before any work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otcli.errors import InputError, OptionError
from otcli.io.tables import read_table, resolve_path

_INT_ID = re.compile(r"-?(?:0|[1-9]\d{0,17})")  # canonical only: "007" stays text
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class PairSpec:
    """One manifest row: ``a``/``b`` as written, ``path_a``/``path_b`` resolved against the
    manifest's folder, and ``eps`` (``None``: the ``--eps`` option). ``id`` is an int or str."""

    id: int | str
    a: str
    b: str
    path_a: str
    path_b: str
    eps: float | None

    @property
    def key(self) -> str:
        """The id as text: how rows are matched against a journal or a previous output."""
        return str(self.id)


def read_manifest(path: str | os.PathLike[str]) -> list[PairSpec]:
    """The pairs of a manifest: columns ``a``, ``b`` (paths), optional ``id`` and ``eps``.

    Relative paths resolve against the manifest's folder. ``id`` defaults to the 0-based row
    number; ids must be unique. Empty ``eps`` cells mean ``--eps``. Raises
    :class:`~otcli.errors.InputError` naming the manifest for a missing column, an empty path,
    a non-numeric ``eps`` column or a duplicate id.
    """
    import pyarrow as pa

    where = os.fspath(path)
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
    eps: list[float | None] = [None] * len(a)
    if "eps" in names:
        col = table["eps"]
        if not (
            pa.types.is_floating(col.type)
            or pa.types.is_integer(col.type)
            or pa.types.is_null(col.type)
        ):
            raise InputError(where, f"column 'eps' holds {col.type} values; it must be numeric")
        eps = [None if v is None else float(v) for v in col.to_pylist()]
    base = os.path.dirname(where)
    return [
        PairSpec(i, pa_, pb, resolve_path(base, pa_), resolve_path(base, pb), e)
        for i, pa_, pb, e in zip(ids, a, b, eps, strict=True)
    ]


def _path_cell(value: object, where: str, column: str, row: int) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise InputError(
            where, f"row {row} (0-based, header excluded) has no path in column {column!r}"
        )
    return text


def _ids(table: Any, where: str) -> list[int | str]:
    import pyarrow as pa

    if "id" not in table.column_names:
        return list(range(table.num_rows))
    col = table["id"]
    raw = col.to_pylist()
    ids: list[int | str] = []
    for k, v in enumerate(raw):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise InputError(where, f"row {k} (0-based, header excluded) has no id")
        ids.append(int(v) if pa.types.is_integer(col.type) else str(v).strip())
    if all(isinstance(v, str) and _INT_ID.fullmatch(v) for v in ids):
        ids = [int(v) for v in ids]  # a text column of whole numbers (CSV): integer ids
    seen: dict[str, int] = {}
    for k, v in enumerate(ids):
        if str(v) in seen:
            raise InputError(
                where,
                f"duplicate id {v!r} in rows {seen[str(v)]} and {k} (0-based, header "
                "excluded); ids must be unique",
            )
        seen[str(v)] = k
    return ids


def check_coupling_dir(
    directory: str | os.PathLike[str], pairs: Sequence[PairSpec], fmt: str
) -> Path:
    """The coupling folder (created if its parent exists) and ids that are safe file names."""
    if fmt not in ("npy", "parquet"):
        raise OptionError("--coupling-format", f"unknown format {fmt!r}; use npy or parquet")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OptionError("--coupling-dir", f"{str(path)!r} exists and is not a directory")
    if not path.parent.is_dir():
        raise OptionError(
            "--coupling-dir", f"directory {str(path.parent)!r} does not exist; create it first"
        )
    for pair in pairs:
        if not _SAFE_ID.fullmatch(str(pair.id)):
            raise OptionError(
                "--coupling-dir",
                f"id {pair.id!r} is not a safe file name (letters, digits, . _ + - only, not "
                "starting with a dot); rename it in the manifest",
            )
    path.mkdir(exist_ok=True)
    return path
