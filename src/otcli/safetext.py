"""File names that are not valid UTF-8, written out as valid UTF-8 text.

On Linux a file name is bytes; Python hands a name such as ``b"P\\xff.csv"`` over as the
string ``"P\\udcff.csv"`` (a lone surrogate, PEP 383), which no UTF-8 writer accepts. Every
output that carries a path therefore goes through one of two conversions:

- :func:`printable` for text read by people or stored in typed tables (stderr messages, CSV
  and Parquet cells): each undecodable byte becomes the four characters ``\\xNN``;
- :func:`json_dumps` for JSON (``--json``, ``.jsonl`` rows, the batch journal): each one
  becomes the JSON escape ``\\udcNN``, still valid UTF-8 JSON, and lossless: Python's
  ``os.fsencode(json.loads(text)[...])`` gives the original bytes back.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Characters that would break a one-line message or drive the terminal: C0 and C1 controls
#: (newline, carriage return, tab, escape...) and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with control characters written as Python escapes (``\\n``, ``\\x1b``,
    ``\\u2028``), as ``repr`` writes them: a file name with a newline in it no longer splits
    an ``Error:`` line in two, and one with an escape sequence cannot recolour the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def printable(text: str) -> str:
    """``text`` with undecodable bytes (lone surrogates) written as ``\\xNN``."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float in it, at any depth of lists, tuples and dicts
    (a summary's (min, median, max) of no values), replaced by None: JSON's null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def json_dumps(obj: dict[str, Any]) -> str:
    """One JSON object on one line: non-finite floats as null (JSON has no NaN), non-ASCII
    text as is, lone surrogates as ``\\udcNN`` escapes, so the line is always valid UTF-8."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
