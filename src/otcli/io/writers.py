"""Output files: path checks before any work, atomic replacement, and the matrix writer.

:func:`check_output_path` fails a bad ``-o``/``--coupling`` in a second, not after an hour of
solving; :func:`atomic_write` makes every writer's file appear only once complete, so a failed
run leaves the previous file or none; :func:`write_matrix` puts coupling and cost matrices on
disk block by block (dense ``.npy`` through a memory map, or long ``i, j, value`` tables), so a
matrix too large for memory can still be written.

pyarrow is imported inside the long-format writer only, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from otcli.errors import OptionError, OtcliError
from otcli.io.common import arrow_array, os_reason

#: Extensions :func:`write_matrix` understands: ``.npy`` dense, the others long format.
OUTPUT_SUFFIXES = (".npy", ".csv", ".tsv", ".parquet")
_LONG_CHUNK = 1 << 20  # entries per record batch when writing long format


def check_output_path(
    path: str | os.PathLike[str], option: str, suffixes: Sequence[str] = OUTPUT_SUFFIXES
) -> Path:
    """Check an output path before any long work, so a typo fails in a second, not an hour.

    The extension must be one of ``suffixes`` (default :data:`OUTPUT_SUFFIXES`), the parent
    directory must exist and be writable, and the path must not be a directory. Raises
    :class:`~otcli.errors.OptionError` naming ``option`` (e.g. ``--coupling``) and the path.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in suffixes:
        raise OptionError(
            option,
            f"{str(path)!r} has unsupported file type {suffix or '(none)'!r}; use one of "
            f"{', '.join(suffixes)}",
        )
    check_name_length(out, option)  # first: the checks below fail on a name over the limit
    try:
        _check_location(out, option)
    except OSError as exc:  # a path over PATH_MAX, a component over NAME_MAX, a link loop
        raise OptionError(option, path_problem(out, exc)) from None
    except OtcliError:
        raise
    except ValueError:  # a NUL character (a library caller's string: argv cannot hold one)
        raise OptionError(
            option, f"{str(path)!r} holds a NUL character; no file has such a name"
        ) from None
    return out


def path_problem(path: str | os.PathLike[str], exc: OSError) -> str:
    """What is wrong with ``path`` when the system refuses even to look it up."""
    if exc.errno == errno.ENAMETOOLONG:
        size = len(os.fsencode(os.fspath(path)))
        return (
            f"{elided(path)!r} is too long a path ({size} bytes, or a part of it over "
            f"{name_max('.')} bytes); use a shorter one"
        )
    return f"cannot use {os.fspath(path)!r} ({os_reason(exc)})"


def _check_location(out: Path, option: str) -> None:
    if out.is_dir():
        raise OptionError(option, f"{str(out)!r} is a directory; give a file name")
    parent = out.parent
    if not parent.exists():
        raise OptionError(
            option, f"directory {str(parent)!r} of {str(out)!r} does not exist; create it first"
        )
    if not parent.is_dir():
        raise OptionError(option, f"{str(parent)!r} in {str(out)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(option, f"cannot write to directory {str(parent)!r} (permission denied)")


def elided(path: str | os.PathLike[str], keep: int = 400) -> str:
    """``path`` with its middle cut out (``first…last``) when it is longer than ``2 * keep``
    characters: an error about a 6,000-byte path need not print it whole."""
    text = os.fspath(path)
    return text if len(text) <= 2 * keep else f"{text[:keep]}…{text[-keep:]}"


def name_max(directory: str | os.PathLike[str]) -> int:
    """The longest file name, in bytes, that ``directory``'s file system takes (255 if the
    system cannot say)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_name_length(path: Path, option: str, companions: Sequence[str] = ()) -> None:
    """Refuse ``path`` when its name, or its name plus one of the ``companions`` suffixes
    (a journal's ``.journal.jsonl``), is longer than the file system allows: found now, not
    as ``File name too long`` after the work is done."""
    limit = name_max(path.parent)
    for extra in ("", *companions):
        name = path.name + extra
        if len(os.fsencode(name)) > limit:
            what = "its name" if not extra else f"the name of its companion file {elided(name)!r}"
            raise OptionError(
                option,
                f"{elided(path)!r} is too long a name: {what} has {len(os.fsencode(name))} bytes, "
                f"over the file system's limit of {limit}; use a shorter name",
            )


def file_identities(paths: Iterable[str | os.PathLike[str]]) -> dict[tuple[int, int], str]:
    """(device, inode) → path for each of ``paths`` that exists (``-``, stdin, is skipped):
    what :func:`check_new_output` compares an output with, computed once for many outputs."""
    found = {}
    for name in paths:
        if os.fspath(name) == "-":
            continue
        try:
            st = os.stat(name)
        except (OSError, ValueError):
            continue
        found.setdefault((st.st_dev, st.st_ino), os.fspath(name))
    return found


def check_new_output(
    path: str | os.PathLike[str],
    option: str,
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike[str]] | dict[tuple[int, int], str] = (),
) -> None:
    """The one overwrite policy for every output file: an existing ``path`` is refused unless
    ``overwrite``, and one that is an input file is refused always, compared by device and
    inode (so hard links, symbolic links and other spellings of the path count). ``inputs``
    are paths, or :func:`file_identities` of them. Raises an OptionError naming ``option``."""
    if not os.path.lexists(path):
        return
    known = inputs if isinstance(inputs, dict) else file_identities(inputs)
    try:
        st = os.stat(path)
        name = known.get((st.st_dev, st.st_ino))
    except OSError:  # a dangling link: it replaces no input
        name = None
    if name is not None:
        raise OptionError(
            option,
            f"{os.fspath(path)!r} is the input file {name!r}; an input is never overwritten: "
            "write the output under another name",
        )
    if not overwrite:
        raise OptionError(option, f"{os.fspath(path)!r} exists; use --overwrite to replace it")


#: Random hex digits in a temporary name (:func:`temp_path`).
_TOKEN_BYTES = 6
#: Bytes of the final name kept in a temporary one, so that it stays within the limit.
_KEPT_BYTES = 80


def _head(name: str) -> str:
    """The longest start of ``name`` within :data:`_KEPT_BYTES` bytes on disk (whole
    characters: 80 characters of a CJK name would be 240 bytes, and its temporary name over
    the 255-byte limit that the final name is within)."""
    size = 0
    for k, char in enumerate(name):
        size += len(os.fsencode(char))
        if size > _KEPT_BYTES:
            return name[:k]
    return name


def temp_path(final: Path) -> Path:
    """A new temporary name beside ``final``: ``.<name>.<12 hex digits>.tmp<suffix>``."""
    token = secrets.token_hex(_TOKEN_BYTES)
    return final.with_name(f".{_head(final.name)}.{token}.tmp{final.suffix}")


def _temp_template(name: str, suffix: str) -> str:
    """:func:`temp_path`'s name for ``name`` with ``#`` where the hex digits go."""
    return f".{_head(name)}.{'#' * 2 * _TOKEN_BYTES}.tmp{suffix}"


def _fits(candidate: str, template: str) -> bool:
    return len(candidate) == len(template) and all(
        c == t or (t == "#" and c in "0123456789abcdef")
        for c, t in zip(candidate, template, strict=True)
    )


def is_temp_of(candidate: str, final: Path) -> bool:
    """Whether the file name ``candidate`` is a temporary file :func:`atomic_write` made for
    ``final``: its own, or the one a writer made for that one in turn (matrices are written
    to a temporary name inside another's, so that several files appear together). Only
    these exact shapes match, never a user's file that merely looks alike."""
    direct = _temp_template(final.name, final.suffix)
    if _fits(candidate, direct):
        return True
    # The inner writer's: "." + the outer name's first 80 characters + ".<hex>.tmp<suffix>".
    head = _head(direct)
    tail = _temp_template("", final.suffix)[1:]  # ".<hex>.tmp<suffix>"
    return (
        candidate[:1] == "."
        and _fits(candidate[1 : 1 + len(head)], head)
        and _fits(candidate[1 + len(head) :], tail)
    )


#: Any name shaped like a temporary one: ``.<inner>.<12 hex digits>.tmp<suffix>``.
_LOOKS_TEMP = re.compile(r"\.(?P<inner>.+)\.[0-9a-f]{12}\.tmp(\.[^.]*)?", re.DOTALL)


def _owner(name: str, heads: dict[str, Path]) -> Path | None:
    """The final file (of ``heads``, keyed by :func:`_head` of their names) whose temporary
    file ``name`` is, if any; found by lookups, not a scan of every final file."""
    shape = _LOOKS_TEMP.fullmatch(name)
    if shape is None:
        return None
    inner = shape.group("inner")
    guesses = [inner]  # a direct temporary; else an inner writer's: "." + head + "." + ...
    if inner.startswith("."):
        guesses += [inner[1:k] for k, char in enumerate(inner) if char == "." and k > 1]
    for guess in guesses:
        final = heads.get(guess)
        if final is not None and is_temp_of(name, final):
            return final
    if len(os.fsencode(inner)) >= _KEPT_BYTES - 1:  # the cut fell inside the final's name
        return next((f for f in heads.values() if is_temp_of(name, f)), None)
    return None


def remove_leftover_temps(finals: Iterable[Path]) -> list[Path]:
    """Remove the temporary files a killed run (``kill -9``, a power cut) left beside the
    ``finals``: only regular files named exactly as :func:`atomic_write` names them for one
    of them (:func:`is_temp_of`), never a user's file. Call it only while no other process
    writes these files (a batch run holds OUT's lock). Each folder is listed once; returns
    the paths removed (one that cannot be removed is left)."""
    folders: dict[Path, dict[str, Path]] = {}
    for final in finals:
        folders.setdefault(final.parent, {})[_head(final.name)] = final
    removed = []
    for folder, heads in folders.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") and _owner(entry.name, heads) is not None:
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def landing(path: str | os.PathLike[str]) -> str:
    """Where a file written to ``path`` lands: its folder with every symbolic link resolved,
    and its name (a rename replaces a link named ``path`` itself, not what it points to)."""
    full = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))


def check_distinct_outputs(outputs: Iterable[tuple[str, str | os.PathLike[str] | None]]) -> None:
    """Refuse two outputs of one run that are one file (``--coupling P.npy --cost-matrix
    link/P.npy`` with ``link`` a link to ``.``): one would silently replace the other.
    ``outputs`` are (option, path) pairs, ``None`` paths skipped; compared by
    :func:`landing`, and by device and inode where both exist (a case-insensitive file
    system's ``P.npy`` and ``p.npy``). Raises an OptionError naming the later option."""
    seen: dict[str, tuple[str, str]] = {}
    existing: dict[tuple[int, int], tuple[str, str]] = {}
    for option, path in outputs:
        if path is None:
            continue
        name = os.fspath(path)
        key = landing(name)
        other = seen.get(key)
        if other is None:
            try:
                st = os.stat(name)
                other = existing.get((st.st_dev, st.st_ino))
                existing.setdefault((st.st_dev, st.st_ino), (option, name))
            except (OSError, ValueError):
                pass
        if other is not None:
            raise OptionError(
                option,
                f"{name!r} is the same file as {other[0]} {other[1]!r}: one would replace the "
                "other; give each output its own name",
            )
        seen[key] = (option, name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary name is ``.<name>.<random>.tmp<suffix>`` (:func:`temp_path`): hidden,
    unique, in the same directory (so :func:`os.replace` is an atomic rename) and ending in
    the real suffix (so writers such as ``np.save`` do not append another). On any
    exception, including ``KeyboardInterrupt`` (and SIGTERM or SIGHUP, which the CLI turns
    into one), the temporary file is removed and ``path`` is left as it was; what a
    ``kill -9`` leaves, :func:`remove_leftover_temps` finds.
    """
    final = Path(path)
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


#: One piece of a matrix: ``(i0, j0, block)``, the block's first row and column and its values.
Block = tuple[int, int, np.ndarray]


def write_matrix(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    shape: tuple[int, int],
    *,
    threshold: float,
    dense_limit_bytes: int | None = None,
    ids: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> float:
    """Write an ``(n, m)`` matrix given as ``(i0, j0, block)`` pieces, by the path's extension;
    return the sum of the entries written (a coupling's kept mass).

    The pieces let a matrix too large for memory be written as it is computed; a dense matrix
    is one piece ``(0, 0, M)``. ``.npy`` gets the dense float64 array (written through a
    memory map, block by block; refused with an OptionError beyond ``dense_limit_bytes``).
    ``.csv``/``.tsv``/``.parquet`` get long format ``i, j, value`` holding the entries with
    ``value > threshold`` (every entry when ``threshold < 0``), ordered by ``i`` then ``j``
    within each block. ``ids`` (the rows' and the columns' point ids as text, either may be
    ``None``) add columns ``i_id`` and ``j_id`` after ``value`` in the long formats, so the
    file joins back to the clouds' own data. ``metadata`` goes into a ``.parquet`` file's
    key-value metadata, with ``otcli.kept_sum`` (the returned sum) added: the long format
    does not otherwise record n, m or what was left out. The file appears only once it is
    complete.
    """
    where = str(path)
    suffix = Path(path).suffix.lower()
    n, m = (int(s) for s in shape)
    if suffix not in OUTPUT_SUFFIXES:
        raise OptionError(
            where,
            f"unsupported output type {suffix or '(none)'!r}; use {', '.join(OUTPUT_SUFFIXES)}",
        )
    i_ids, j_ids = (None, None) if ids is None else ids
    for what, got, size in (("row", i_ids, n), ("column", j_ids, m)):
        if got is not None and len(got) != size:
            raise ValueError(f"{len(got)} {what} ids for a {n}×{m} matrix")
    if suffix == ".npy" and (i_ids is not None or j_ids is not None):
        raise OptionError(
            where, "point ids go in long formats (.parquet, .csv, .tsv), not a dense .npy matrix"
        )
    try:
        if suffix == ".npy":
            return _write_npy(path, blocks, n, m, dense_limit_bytes)
        return _write_long(path, blocks, n, m, threshold, suffix, (i_ids, j_ids), metadata)
    except OSError as exc:
        raise OtcliError(where, f"cannot write the file ({os_reason(exc)})") from exc


def _checked_block(i0: int, j0: int, block: Any, n: int, m: int) -> np.ndarray:
    b = np.asarray(block, dtype=np.float64)
    if b.ndim != 2 or i0 < 0 or j0 < 0 or i0 + b.shape[0] > n or j0 + b.shape[1] > m:
        raise ValueError(f"block at ({i0}, {j0}) of shape {b.shape} is outside the {n}×{m} matrix")
    return b


def _write_npy(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    n: int,
    m: int,
    limit: int | None,
) -> float:
    nbytes = n * m * np.dtype(np.float64).itemsize
    if limit is not None and nbytes > limit:
        raise OptionError(
            str(path),
            f"a dense {n}×{m} float64 matrix needs {nbytes / 1e9:.2f} GB, over the "
            f"{limit / 1e9:.2f} GB limit; write long format instead (.parquet or .csv, "
            "entries above the threshold)",
        )
    with atomic_write(path) as tmp:
        if n * m == 0:  # a zero-length file cannot be memory-mapped
            np.save(tmp, np.zeros((n, m)))
            return 0.0
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n, m))
        total = 0.0
        try:
            for i0, j0, block in blocks:
                b = _checked_block(i0, j0, block, n, m)
                out[i0 : i0 + b.shape[0], j0 : j0 + b.shape[1]] = b
                total += float(b.sum())
            out.flush()
        finally:
            del out
    return total


def _long_batches(
    blocks: Iterable[Block],
    n: int,
    m: int,
    threshold: float,
    ids: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> Iterator[Any]:
    """Record batches ``(i, j, value[, i_id][, j_id])`` of the kept entries, a bounded number
    of rows at once."""
    import pyarrow as pa

    id_arrays = [
        (name, None if v is None else arrow_array([str(x) for x in v], pa.string()))
        for name, v in zip(("i_id", "j_id"), ids, strict=True)
    ]

    for i0, j0, block in blocks:
        b = _checked_block(i0, j0, block, n, m)
        h, w = b.shape
        step = max(1, _LONG_CHUNK // max(w, 1))
        for r0 in range(0, h, step):
            part = b[r0 : r0 + step]
            if threshold < 0:
                ii, jj = np.divmod(np.arange(part.size, dtype=np.int64), w)
                values = part.reshape(-1)
            else:
                ii, jj = np.nonzero(part > threshold)  # row-major: by i, then j
                values = part[ii, jj]
            if values.size:
                i = ii.astype(np.int64) + (i0 + r0)
                j = jj.astype(np.int64) + j0
                columns = [arrow_array(i, pa.int64()), arrow_array(j, pa.int64())]
                columns.append(arrow_array(values, pa.float64()))
                names = ["i", "j", "value"]
                for (name, labels), index in zip(id_arrays, (i, j), strict=True):
                    if labels is not None:
                        columns.append(labels.take(arrow_array(index, pa.int64())))
                        names.append(name)
                yield pa.record_batch(columns, names=names)


def _write_long(
    path: str | os.PathLike[str],
    blocks: Iterable[Block],
    n: int,
    m: int,
    threshold: float,
    suffix: str,
    ids: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    metadata: Mapping[str, str] | None = None,
) -> float:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fields = [("i", pa.int64()), ("j", pa.int64()), ("value", pa.float64())]
    fields += [
        (name, pa.string()) for name, v in zip(("i_id", "j_id"), ids, strict=True) if v is not None
    ]
    schema = pa.schema(fields)
    # Python file objects, not path strings: pyarrow cannot open a name that is not UTF-8.
    total = 0.0
    with atomic_write(path) as tmp, open(tmp, "wb") as sink:
        if suffix == ".parquet":
            with pq.ParquetWriter(sink, schema) as writer:
                for batch in _long_batches(blocks, n, m, threshold, ids):
                    total += float(pc.sum(batch.column(2)).as_py() or 0.0)
                    writer.write_batch(batch)
                if metadata is not None:
                    writer.add_key_value_metadata({**metadata, "otcli.kept_sum": repr(total)})
            return total
        delimiter = "\t" if suffix == ".tsv" else ","
        sink.write(delimiter.join(schema.names).encode() + b"\n")  # unquoted header
        options = pacsv.WriteOptions(include_header=False, delimiter=delimiter)
        with pacsv.CSVWriter(sink, schema, write_options=options) as writer:
            for batch in _long_batches(blocks, n, m, threshold, ids):
                total += float(pc.sum(batch.column(2)).as_py() or 0.0)
                writer.write_batch(batch)
    return total
