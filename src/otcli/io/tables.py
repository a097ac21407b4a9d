"""The tables of ``otdist batch`` and ``otdist pairwise``: manifests and file lists in, rows out.

In: a manifest table (CSV/TSV/Parquet, ids, paths and ``eps`` cells kept verbatim as text; its
relative paths resolve against its folder) and a list of files, one per line (relative paths
resolve against the current directory, like ``tar -T`` or ``wc --files0-from``). Out: one row per
pair as ``.jsonl``, ``.csv`` or ``.parquet`` with fixed column types (ids are text), the pairwise
N×N matrix (``.npy``, labelled ``.csv``) or long table (``.parquet``), and the batch journal (JSON
lines, fsynced, a torn last line tolerated) that a resumed run reads back. A finished batch
output records the options that wrote it (:func:`read_output_settings`): in its Parquet
metadata, or for CSV and JSON lines in a small ``OUT.settings.json`` bound to the file by its
SHA-256. Every output goes through :func:`~otcli.io.writers.atomic_write`, so a file is either
the previous one, absent, or complete. pyarrow is imported inside the functions that use it and
handed open Python files, never a name (it cannot open one that is not UTF-8); such names are
written with :mod:`otcli.safetext`'s conversions.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otcli.errors import InputError, OtcliError
from otcli.io.common import arrow_array, is_url, os_reason
from otcli.io.writers import atomic_write
from otcli.safetext import json_dumps, printable

__all__ = [
    "LONG_FIELDS",
    "MANIFEST_SUFFIXES",
    "SETTINGS_SUFFIX",
    "Journal",
    "read_file_list",
    "read_output_settings",
    "read_rows",
    "read_table",
    "resolve_path",
    "row_json",
    "rows_table",
    "settings_path",
    "write_long",
    "write_matrix",
    "write_pairwise",
    "write_rows",
]

#: Manifest formats, by extension.
MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet")
#: The file beside a CSV or JSON-lines batch output that records the options that wrote it.
SETTINGS_SUFFIX = ".settings.json"
_SETTINGS_KEY = b"otcli_settings"  # the same record in a Parquet output's metadata
_VERSION_KEY = b"otcli_version"  # the otcli that wrote a Parquet output (and its workers')
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
        with open(path, "rb") as fh:  # a file object: pyarrow cannot open a non-UTF-8 name
            if suffix == ".parquet":  # names first: pyarrow cannot read repeated ones
                _named_once(pq.read_schema(fh).names, path, what)
                fh.seek(0)
                return pq.read_table(fh)
            text = pa.string()
            table = pacsv.read_csv(
                fh,
                parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
                # Verbatim: an id "nan" or "NA" is a name, not a missing value, and an eps
                # cell "NA" is a mistake to report, not an empty cell.
                convert_options=pacsv.ConvertOptions(
                    column_types={"a": text, "b": text, "id": text, "eps": text},
                    strings_can_be_null=False,
                ),
            )
            _named_once(table.column_names, path, what)
            return table
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot read the {what} ({first})") from None


def _named_once(names: list[str], path: str, what: str) -> None:
    """Refuse a table whose column ``names`` repeat one: columns are looked up by name (``a``,
    ``i``, ``value``...), and a repeated one was pyarrow's KeyError ("exists 2 times")."""
    from collections import Counter

    counts = Counter(names)
    for name in names:
        if counts[name] > 1:
            where = ", ".join(str(k + 1) for k, n in enumerate(names) if n == name)
            raise InputError(
                path,
                f"column {name!r} appears {counts[name]} times (columns {where}); a {what} "
                "names each column once",
            )


def read_file_list(path: str | os.PathLike[str]) -> list[str]:
    """Paths from a text file, one per line (blank lines and ``#`` comments skipped).

    Relative paths are taken from the current directory, as ``ls > list.txt`` or ``find``
    wrote them (the rule of ``tar -T`` and ``wc --files0-from``), not from the list's folder.
    Every listed file must exist: the first one that does not is an InputError naming the
    list and its line, before any work.
    """
    where = os.fspath(path)
    try:
        data = Path(where).read_bytes()
    except FileNotFoundError:
        raise InputError(where, "no such file; check the path") from None
    except IsADirectoryError:
        raise InputError(where, "is a directory, not a file") from None
    except OSError as exc:
        raise InputError(where, f"cannot read the file list ({os_reason(exc)})") from None
    # File names are bytes: the list's own are kept as the OS gives them (PEP 383).
    files = []
    for k, line in enumerate(data.splitlines(), start=1):
        name = os.fsdecode(line.strip())
        if not name or name.startswith("#"):
            continue
        if not os.path.exists(name):
            beside = os.path.join(os.path.dirname(where), name)
            hint = (
                f"; it exists beside the list, as {beside!r}: write that path"
                if not os.path.isabs(name) and os.path.exists(beside)
                else ""
            )
            raise InputError(
                where,
                f"line {k}: {name!r}: no such file (relative paths in a file list are taken "
                f"from the current directory){hint}",
            )
        files.append(name)
    return files


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def row_json(row: dict[str, Any]) -> str:
    """One row as one line of JSON (NaN/inf become null; always valid UTF-8)."""
    return json_dumps(row)


class Journal:
    """Append-only JSON lines: a header object, then one row per scored pair.

    Rows are written in groups, each fsynced before the next solve, so a ``kill -9`` loses
    at most the group being written, of which at most the last line is torn. A write the
    system refuses (disk full, file-size limit) is cut back to the last whole group and
    raised as an :class:`~otcli.errors.OtcliError`: the journal stays resumable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self._size = 0  # bytes of whole groups written

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        """(header, rows, bytes of whole lines): a torn last line is left out."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(str(path), f"cannot read the file ({os_reason(exc)})") from None
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = data[:end].splitlines()
        if not lines:
            return {}, [], 0
        objs = []
        for k, line in enumerate(lines, start=1):
            try:
                obj, what = json.loads(line), "not a JSON object"
            except ValueError:
                obj, what = None, "not valid JSON"
            except RecursionError:  # json's parser recurses once per level of nesting
                obj, what = None, "JSON nested too deeply to read"
            if not isinstance(obj, dict):
                raise InputError(
                    str(path), f"line {k} is {what}; the file is damaged: rerun with --overwrite"
                )
            objs.append(obj)
        header = objs[0] if "otcli_journal" in objs[0] else {}
        return header, objs[1:] if header else objs, end

    def open(self, header: dict[str, Any] | None, keep_bytes: int = 0) -> None:
        """Start a new journal (``header`` given) or reopen one cut to ``keep_bytes``."""
        try:
            if header is not None:
                self._fh = open(self.path, "wb", buffering=0)  # noqa: SIM115 (see close())
                self._write([json.dumps(header)])
            else:
                self._fh = open(self.path, "r+b", buffering=0)  # noqa: SIM115
                self._fh.truncate(keep_bytes)
                self._fh.seek(keep_bytes)
                self._size = keep_bytes
        except OSError as exc:
            self.close()
            raise OtcliError(
                str(self.path), f"cannot write the journal ({os_reason(exc)})"
            ) from None

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._write([row_json(r) for r in rows])

    def _write(self, lines: Sequence[str]) -> None:
        data = memoryview(("\n".join(lines) + "\n").encode())
        try:
            while data:  # unbuffered: nothing is left behind to fail again at close
                data = data[self._fh.write(data) :]
            os.fsync(self._fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._fh.truncate(self._size)
            raise OtcliError(
                str(self.path),
                f"cannot write the journal ({os_reason(exc)}); the pairs it holds are kept: "
                "make room and rerun with --resume",
            ) from None
        self._size = self._fh.tell()

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None


#: pyarrow type of each column of the batch and pairwise tables (ids are text).
_TEXT_FIELDS = ("id", "a", "b", "status", "error")


def rows_table(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Any:
    """Rows as a pyarrow Table with fixed column types. Ids are text, whatever they look
    like: ``1`` and ``01`` are two ids. Text that holds bytes of a file name that are not
    UTF-8 is written with them as ``\\xNN``."""
    import pyarrow as pa

    types = {
        "n": pa.int64(), "m": pa.int64(), "i": pa.int64(), "j": pa.int64(),
        "eps": pa.float64(), "cost": pa.float64(), "objective": pa.float64(),
        "divergence": pa.float64(), "iterations": pa.int64(), "converged": pa.bool_(),
        "marginal_error": pa.float64(), "seconds": pa.float64(),
        **dict.fromkeys(_TEXT_FIELDS, pa.string()),
    }  # fmt: skip
    columns = {}
    for name in fields:
        values = [_clean(r.get(name)) for r in rows]
        if name in _TEXT_FIELDS:
            values = [None if v is None else printable(str(v)) for v in values]
        columns[name] = arrow_array(values, types[name])
    return pa.table(columns)


def settings_path(out: str | os.PathLike[str]) -> Path:
    """Where a CSV or JSON-lines batch output records the options that wrote it."""
    return Path(os.fspath(out) + SETTINGS_SUFFIX)


def _sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _otcli_version() -> str:
    from otcli import __version__

    return __version__


def write_rows(
    out: Path,
    rows: Sequence[dict[str, Any]],
    fields: Sequence[str],
    settings: dict[str, Any] | None = None,
) -> None:
    """Write rows to ``out`` by extension (.jsonl, .csv, .parquet), atomically.

    ``settings`` (the options that produced the rows) go into a Parquet file's metadata, or
    for CSV and JSON lines into :func:`settings_path` with the file's SHA-256, renamed into
    place just before ``out`` itself, so :func:`read_output_settings` can tell later which
    options wrote ``out``. The otcli version that wrote it goes beside them (every Parquet
    output has it; with ``--scheduler`` the workers run the same one, or the run is refused).
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = out.suffix.lower()
    try:
        with atomic_write(out) as tmp:
            with open(tmp, "wb") as fh:  # a file object: pyarrow cannot open a non-UTF-8 name
                if suffix == ".jsonl":
                    for r in rows:
                        row = {k: r.get(k) for k in fields}
                        if row.get("id") is not None:
                            row["id"] = str(row["id"])  # ids are text in every format
                        fh.write((row_json(row) + "\n").encode())
                elif suffix == ".csv":
                    pacsv.write_csv(rows_table(rows, fields), fh)
                else:
                    meta = {_VERSION_KEY: _otcli_version().encode()}
                    if settings is not None:
                        meta[_SETTINGS_KEY] = json.dumps(settings).encode()
                    pq.write_table(rows_table(rows, fields).replace_schema_metadata(meta), fh)
            if settings is not None and suffix != ".parquet":
                record = {
                    "otcli_output": 1, "otcli_version": _otcli_version(), "settings": settings,
                    "sha256": _sha256(tmp),
                }  # fmt: skip
                with atomic_write(settings_path(out)) as side:
                    side.write_text(json.dumps(record) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OtcliError(str(out), f"cannot write the file ({os_reason(exc)})") from None


def read_output_settings(out: Path) -> tuple[dict[str, Any] | None, str]:
    """(the options that wrote the batch output ``out``, ``""``), or (``None``, why they
    cannot be known): no record, or a CSV/JSON-lines file changed since it was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if out.suffix.lower() == ".parquet":
            with open(out, "rb") as fh:
                meta = pq.read_schema(fh).metadata or {}
            if _SETTINGS_KEY not in meta:
                return None, "its metadata does not record the options that wrote it"
            return json.loads(meta[_SETTINGS_KEY]), ""
        side = settings_path(out)
        if not side.exists():
            return None, f"{str(side)!r}, which records the options that wrote it, is missing"
        record = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("sha256") != _sha256(out):
            return None, f"it was changed after otdist wrote it (see {str(side)!r})"
        return record.get("settings"), ""
    except (OSError, ValueError, pa.ArrowException) as exc:
        return None, f"its record of the options cannot be read ({exc})"


def read_rows(out: Path) -> list[dict[str, Any]]:
    """Rows of a previous complete output (to resume from when its journal is gone); text
    columns (ids above all) come back as the text they hold, never as numbers."""
    if out.suffix.lower() == ".jsonl":
        return Journal.read(out)[1]
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        with open(out, "rb") as fh:
            if out.suffix.lower() == ".parquet":
                table = pq.read_table(fh)
            else:
                text = dict.fromkeys(_TEXT_FIELDS, pa.string())
                table = pacsv.read_csv(
                    fh,
                    convert_options=pacsv.ConvertOptions(
                        column_types=text, strings_can_be_null=False
                    ),
                )
    except Exception as exc:
        raise InputError(str(out), f"cannot read the previous output to resume ({exc})") from None
    rows = table.to_pylist()
    for r in rows:  # CSV writes a missing error as an empty cell
        if r.get("error") == "":
            r["error"] = None
    return rows


def write_pairwise(
    out: Path, rows: Sequence[dict[str, Any]], files: Sequence[str], div: bool
) -> None:
    """Pairwise output by ``out``'s extension: the N×N matrix of ``rows``' cost (divergence
    when ``div``) as .npy or as .csv with the files as labels, or the long table (.parquet),
    atomically. Failed pairs are NaN (empty in CSV)."""
    if out.suffix.lower() == ".parquet":
        write_long(out, rows, div)
        return
    value = "divergence" if div else "cost"
    mat = np.full((len(files), len(files)), np.nan)
    for r in rows:
        if r["status"] == "ok":
            mat[r["i"], r["j"]] = mat[r["j"], r["i"]] = r[value]
    write_matrix(out, mat, files, files)


def write_long(
    out: Path,
    rows: Sequence[dict[str, Any]],
    div: bool,
    settings: dict[str, Any] | None = None,
) -> None:
    """The pairwise long table (:data:`LONG_FIELDS`, one row per pair) as Parquet, with the
    ``settings`` that wrote it in its metadata when given (a resumable output)."""
    write_rows(out, rows, [f for f in LONG_FIELDS if div or f != "divergence"], settings)


def write_matrix(
    out: Path, mat: np.ndarray, row_files: Sequence[str], col_files: Sequence[str]
) -> None:
    """A matrix of values between files as ``.npy`` (float64) or as ``.csv`` with the files
    as row and column labels (NaN as an empty cell), atomically."""
    try:
        with atomic_write(out) as tmp:
            if out.suffix.lower() == ".npy":
                np.save(tmp, np.asarray(mat, dtype=np.float64))
                return
            cols = [printable(f) for f in col_files]
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["file", *cols])
                for f, values in zip(row_files, mat, strict=True):
                    cells = ("" if math.isnan(v) else repr(float(v)) for v in values)
                    w.writerow([printable(f), *cells])
    except OSError as exc:
        raise OtcliError(str(out), f"cannot write the file ({os_reason(exc)})") from None
