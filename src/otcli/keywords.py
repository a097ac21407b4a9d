"""Errors of Python calls name the keywords the caller passed, not the CLI's flags.

The checks (:func:`otcli.config.make_config` and the solve) name options as the command line
does (``--max-iter``); a Python caller passed ``max_iter=``. The library's entry points wrap
themselves with :func:`_keyword_errors`, which renames them through one table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

from otcli.errors import OtcliError

F = TypeVar("F", bound=Callable[..., Any])

#: The keyword of :func:`solve` / :func:`make_config` behind each CLI option that the checks
#: name: a Python caller passed ``max_iter=``, not ``--max-iter``.
KEYWORDS = {
    "--eps": "eps", "--eps-rel": "eps_rel", "--cost": "cost", "--p": "p",
    "--max-iter": "max_iter", "--tol": "tol", "--scaling": "scaling", "--device": "device",
    "--dtype": "dtype", "--geometry": "geometry", "--memory": "memory",
    "--max-batch": "max_batch", "--threads": "threads",
    "--reach": "reach", "--reach-a": "reach_a", "--reach-b": "reach_b",
    "--rho": "rho", "--rho-a": "rho_a", "--rho-b": "rho_b",
    # otcli.barycenter's own
    "--points": "points", "--weights-of-files": "weights", "--outer-iter": "outer_iter",
    "--outer-tol": "outer_tol", "--seed": "seed",
}  # fmt: skip
#: Options whose value follows them in a message (``--device cpu``): ``device='cpu'``.
_VALUED = ("--cost", "--device", "--dtype", "--geometry")
_FLAG = re.compile(r"(?<![\w./-])(--[a-z][a-z-]*)(?: ([a-z][a-z0-9:]*))?")  # not inside a file name


def keyword_error(exc: OtcliError) -> OtcliError:
    """``exc`` with the CLI options it names (where and in its text) as Python keywords."""

    def keyword(match: re.Match[str]) -> str:
        flag, value = match.group(1), match.group(2)
        if flag not in KEYWORDS:
            return match.group(0)
        if value is not None and flag in _VALUED:
            return f"{KEYWORDS[flag]}={value!r}"
        return KEYWORDS[flag] + ("" if value is None else f" {value}")

    return type(exc)(KEYWORDS.get(exc.where, exc.where), _FLAG.sub(keyword, exc.what))


def _keyword_errors(fn: F) -> F:
    """Errors of a Python call name the keywords it was given, in an option error and in
    the advice of an input error ("use dtype='float64'"). A call with ``config=`` (the
    CLI's single-pair run, :mod:`otcli.pair`) keeps the options' CLI names."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("config") is not None:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except OtcliError as exc:
            raise keyword_error(exc).with_traceback(exc.__traceback__) from None

    return call  # type: ignore[return-value]
