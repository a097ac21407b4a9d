"""Errors that reach the user as one line: ``Error: <where>: <what is wrong>``.

Library code raises these with a message that names the file (or option), what was
received and, where there is one, the fix. Only the CLI turns them into stderr text and
exit code 2; a library caller catches :class:`OtcliError` (a ``ValueError``).
"""

from __future__ import annotations


class OtcliError(ValueError):
    """Bad input or options: the message is for the user, ``where`` names the file or option."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what

    def __reduce__(self) -> tuple[type[OtcliError], tuple[str, str]]:
        # Pickled the way it is built, so it crosses process boundaries (Dask workers).
        return type(self), (self.where, self.what)


class InputError(OtcliError):
    """A point-cloud file that cannot be read or holds invalid values."""


class OptionError(OtcliError):
    """An option value that is out of range, unknown or inconsistent with another."""


class DeviceError(OptionError):
    """A device or dtype that this machine cannot provide."""


class SolverError(RuntimeError):
    """The numbers went wrong (a non-finite result, a plan that is no transport plan): the
    work failed, exit code 1, not a user error."""
