"""The tables of ``otdist batch`` and ``otdist pairwise``: manifests and file lists in, rows out.

In: a manifest table (CSV/TSV/Parquet, ids and paths kept verbatim) and a list of files, one per
line; relative paths resolve against the folder of the table that names them. Out: one row per
pair as ``.jsonl``, ``.csv`` or ``.parquet`` with fixed column types, the pairwise N×N matrix
(``.npy``, labelled ``.csv``) or long table (``.parquet``), and the batch journal (JSON lines,
fsynced, a torn last line tolerated) that a resumed run reads back.

Every output goes through :func:`~otcli.io.writers.atomic_write`, so a file is either the
previous one, absent, or complete. pyarrow is imported inside the functions that use it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otcli.errors import InputError, OtcliError
from otcli.io.common import is_url
from otcli.io.writers import atomic_write

__all__ = [
    "LONG_FIELDS",
    "MANIFEST_SUFFIXES",
    "Journal",
    "read_file_list",
    "read_rows",
    "read_table",
    "resolve_path",
    "row_json",
    "rows_table",
    "write_pairwise",
    "write_rows",
]

#: Manifest formats, by extension.
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")
#: Columns of the pairwise long table, in order (``divergence`` only with ``--divergence``).
LONG_FIELDS = (
    "i", "j", "a", "b", "n", "m", "eps", "cost", "objective", "divergence", "iterations",
    "converged", "marginal_error", "status", "error", "seconds",
)  # fmt: skip


def resolve_path(base: str, path: str) -> str:
    """``path`` relative to the folder ``base`` unless absolute or a URL: ``data/`` + ``a.csv``."""
    return path if os.path.isabs(path) or is_url(path) else os.path.join(base, path)


def read_table(path: str, what: str) -> Any:
    """A CSV/TSV/Parquet table as a pyarrow Table; errors name the file and the fix."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = Path(path).suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise InputError(
            path, f"unknown {what} type {suffix or '(none)'!r}; use .csv, .tsv or .parquet"
        )
    if not os.path.isfile(path):
        reason = (
            "is a directory, not a file" if os.path.isdir(path) else "no such file; check the path"
        )
        raise InputError(path, reason)
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        text = pa.string()
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            # Paths and ids verbatim: an id "nan" or "NA" is a name, not a missing value.
            convert_options=pacsv.ConvertOptions(
                column_types={"a": text, "b": text, "id": text}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot read the {what} ({first})") from None


def read_file_list(path: str | os.PathLike[str]) -> list[str]:
    """Paths from a text file, one per line (blank lines and ``#`` comments skipped),
    relative ones resolved against the list's folder."""
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(where, "no such file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(where, f"cannot read the file list ({exc})") from None
    base = os.path.dirname(where)
    files = [line.strip() for line in text.splitlines()]
    return [resolve_path(base, f) for f in files if f and not f.startswith("#")]


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def row_json(row: dict[str, Any]) -> str:
    """One row as one line of JSON (NaN/inf become null)."""
    return json.dumps({k: _clean(v) for k, v in row.items()}, ensure_ascii=False, allow_nan=False)


class Journal:
    """Append-only JSON lines: a header object, then one row per scored pair.

    Rows are written in groups, each flushed and fsynced before the next solve, so a
    ``kill -9`` loses at most the group being written, of which at most the last line is torn.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        """(header, rows, bytes of whole lines): a torn last line is left out."""
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = data[:end].splitlines()
        if not lines:
            return {}, [], 0
        objs = []
        for k, line in enumerate(lines, start=1):
            try:
                obj = json.loads(line)
            except ValueError:
                raise InputError(
                    str(path),
                    f"line {k} is not valid JSON; the journal is damaged: rerun with --overwrite",
                ) from None
            objs.append(obj)
        header = objs[0] if isinstance(objs[0], dict) and "otcli_journal" in objs[0] else {}
        return header, objs[1:] if header else objs, end

    def open(self, header: dict[str, Any] | None, keep_bytes: int = 0) -> None:
        """Start a new journal (``header`` given) or reopen one cut to ``keep_bytes``."""
        if header is not None:
            self._fh = open(self.path, "wb")  # noqa: SIM115 (closed in close())
            self._write([json.dumps(header)])
        else:
            self._fh = open(self.path, "r+b")  # noqa: SIM115
            self._fh.truncate(keep_bytes)
            self._fh.seek(keep_bytes)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._write([row_json(r) for r in rows])

    def _write(self, lines: Sequence[str]) -> None:
        self._fh.write(("\n".join(lines) + "\n").encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def rows_table(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Any:
    """Rows as a pyarrow Table with fixed column types (ids: int64 if all ints, else text)."""
    import pyarrow as pa

    types = {
        "a": pa.string(), "b": pa.string(), "n": pa.int64(), "m": pa.int64(),
        "i": pa.int64(), "j": pa.int64(), "eps": pa.float64(), "cost": pa.float64(),
        "objective": pa.float64(), "divergence": pa.float64(), "iterations": pa.int64(),
        "converged": pa.bool_(), "marginal_error": pa.float64(), "status": pa.string(),
        "error": pa.string(), "seconds": pa.float64(),
    }  # fmt: skip
    ids = [r.get("id") for r in rows]
    int_ids = all(isinstance(v, int) and not isinstance(v, bool) for v in ids)
    types["id"] = pa.int64() if int_ids else pa.string()
    columns = {}
    for name in fields:
        values = [_clean(r.get(name)) for r in rows]
        if name == "id" and not int_ids:
            values = [str(v) for v in values]
        columns[name] = pa.array(values, type=types[name])
    return pa.table(columns)


def write_rows(out: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Write rows to ``out`` by extension (.jsonl, .csv, .parquet), atomically."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = out.suffix.lower()
    try:
        with atomic_write(out) as tmp:
            if suffix == ".jsonl":
                with open(tmp, "w", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(row_json({k: r.get(k) for k in fields}) + "\n")
            elif suffix == ".csv":
                pacsv.write_csv(rows_table(rows, fields), str(tmp))
            else:
                pq.write_table(rows_table(rows, fields), str(tmp))
    except OSError as exc:
        raise OtcliError(str(out), f"cannot write the file ({exc.strerror or exc})") from None


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Rows of a previous complete output (to resume from when its journal is gone)."""
    if out.suffix.lower() == ".jsonl":
        return Journal.read(out)[1]
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(out) if out.suffix.lower() == ".parquet" else pacsv.read_csv(out)
    except Exception as exc:
        raise InputError(str(out), f"cannot read the previous output to resume ({exc})") from None
    return table.to_pylist()


def write_pairwise(
    out: Path, rows: Sequence[dict[str, Any]], files: Sequence[str], div: bool
) -> None:
    """Pairwise output by ``out``'s extension: the N×N matrix of ``rows``' cost (divergence
    when ``div``) as .npy or as .csv with the files as labels, or the long table (.parquet),
    atomically. Failed pairs are NaN (empty in CSV)."""
    import pyarrow.parquet as pq

    suffix = out.suffix.lower()
    value = "divergence" if div else "cost"
    try:
        with atomic_write(out) as tmp:
            if suffix == ".parquet":
                fields = [f for f in LONG_FIELDS if div or f != "divergence"]
                pq.write_table(rows_table(rows, fields), str(tmp))
                return
            mat = np.full((len(files), len(files)), np.nan)
            for r in rows:
                if r["status"] == "ok":
                    mat[r["i"], r["j"]] = mat[r["j"], r["i"]] = r[value]
            if suffix == ".npy":
                np.save(tmp, mat)
                return
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["file", *files])
                for label, values in zip(files, mat, strict=True):
                    w.writerow([label, *("" if math.isnan(v) else repr(float(v)) for v in values)])
    except OSError as exc:
        raise OtcliError(str(out), f"cannot write the file ({exc.strerror or exc})") from None
