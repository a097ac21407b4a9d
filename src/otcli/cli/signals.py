"""SIGTERM and SIGHUP end a command the way Ctrl-C does: cleanly, with the exit code 128 + N.

Python turns SIGINT into :class:`KeyboardInterrupt`, which every writer already handles:
:func:`~otcli.io.writers.atomic_write` removes its temporary file, the batch journal is
closed (it is fsynced after every group), and the command prints its ``interrupted`` line.
SIGTERM (``kill``, a scheduler's time limit, ``docker stop``) and SIGHUP (a closed terminal
or SSH session) killed the process outright instead, leaving a 72 MB ``.P.npy.<hex>.tmp.npy``
behind. :func:`termination_as_interrupt` raises :class:`Terminated`, a KeyboardInterrupt,
for them too, so the same clean-up runs; its ``exit_code`` is the shell's 128 + signal
number (143 for SIGTERM, 129 for SIGHUP) rather than Ctrl-C's 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals handled like Ctrl-C (those this platform has).
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
#: Ctrl-C's exit code: 128 + SIGINT.
INTERRUPT_EXIT = 130


class Terminated(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, raised in the main thread where the command runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """The exit code of an interrupted command: 128 + the signal's number."""
    return exc.exit_code if isinstance(exc, Terminated) else INTERRUPT_EXIT


@contextlib.contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated`; the handlers that
    were there before come back afterwards (the CLI also runs in-process, in tests).

    Only the first signal raises: a second one during the clean-up it started is ignored,
    so the temporary files still go (``kill -9`` remains for a process that must stop now).
    A signal that was ignored when the command started stays ignored: ``nohup otdist ...``
    asked to outlive its terminal. Outside the main thread (where Python allows no
    handlers) nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated(signum)

    previous = {}
    try:
        for signum in SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
