"""File input and output: point clouds in, matrices and result tables out.

One job per module:

- :mod:`~otcli.io.clouds`: :func:`read_cloud`, the reader chosen by file extension;
- :mod:`~otcli.io.text`, :mod:`~otcli.io.parquet`, :mod:`~otcli.io.npy`: one reader per format;
- :mod:`~otcli.io.common`: opening files and choosing columns, shared by the readers;
- :mod:`~otcli.io.writers`: output-path checks, :func:`atomic_write`, :func:`write_matrix`;
- :mod:`~otcli.io.tables`: batch/pairwise tables: manifests and file lists in, result rows,
  the pairwise matrix and the batch journal out.

Everything the user can get wrong raises :class:`~otcli.errors.InputError` (reading) or
:class:`~otcli.errors.OptionError` (output paths) with a message that names the file, the line or
column, and the fix; no raw pyarrow, numpy or OS exception escapes a reader.

This package never imports torch or rich, and imports pyarrow only inside the functions that need
it, so ``otdist --help`` (which imports the CLI, which imports this) stays fast.
"""

from __future__ import annotations

from otcli.io.clouds import INPUT_SUFFIXES, read_cloud
from otcli.io.common import ColumnKey
from otcli.io.tables import (
    Journal,
    read_file_list,
    read_rows,
    read_table,
    row_json,
    rows_table,
    write_pairwise,
    write_rows,
)
from otcli.io.writers import (
    OUTPUT_SUFFIXES,
    Block,
    atomic_write,
    check_output_path,
    write_matrix,
)

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "Block",
    "ColumnKey",
    "Journal",
    "atomic_write",
    "check_output_path",
    "read_cloud",
    "read_file_list",
    "read_rows",
    "read_table",
    "row_json",
    "rows_table",
    "write_matrix",
    "write_pairwise",
    "write_rows",
]
