"""Exception and warning types of mlip-py.

Library code raises these; only :mod:`mlip_py.cli.main` turns them into a one-line
message and an exit status (1 for :class:`MlipError`, 2 for usage errors).
"""


class MlipError(Exception):
    """Base class of every error mlip-py raises on purpose (bad input, failed run)."""


class FormatError(MlipError, ValueError):
    """A file does not follow its format.

    Raise with the path, the 1-based line number (``None`` when it does not apply,
    e.g. binary files: give the byte offset in the message instead) and what was
    expected versus found.  ``str(err)`` is ``"path:line: message"``.
    """

    def __init__(self, message, path=None, line=None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self._compose())

    def _compose(self):
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        return where + self.message


class ConfigError(MlipError, ValueError):
    """A setting (command-line option, mlip.ini key, TOML key) is invalid.

    The message names the key, what is allowed and the value received.
    """


class SelectionError(MlipError):
    """Active-learning selection failed (singular active set, inconsistent state)."""


class ExtrapolationError(MlipError):
    """The extrapolation grade of a configuration exceeded the breaking threshold."""

    def __init__(self, grade, threshold, message=None):
        self.grade = float(grade)
        self.threshold = float(threshold)
        super().__init__(
            message
            or f"Breaking threshold exceeded (MV-grade: {self.grade:g} > {self.threshold:g})"
        )


class ExtrapolationWarning(UserWarning):
    """A configuration was evaluated with an extrapolation grade above the selection threshold."""


class ConvergenceWarning(UserWarning):
    """An iterative procedure stopped before meeting its convergence criterion."""
