"""Loggers of mlip-py's modules, and the command line's logging set-up, applied lazily.

Importing :mod:`logging` costs a few milliseconds that every ``mlp`` process would pay,
while only a few modules log (ASE format readers, oracles, ``mlp label``).  Those modules
get their logger from :func:`get_logger`; the command line registers its verbosity with
:func:`configure_cli`, which installs the stderr handler when the first logger is
requested (or at once if one already was).  Used as a library, mlip-py leaves logging
configuration to the application, as usual.
"""
import sys

_pending = None  # (verbose, quiet) registered by the command line, not yet applied


def get_logger(name):
    """``logging.getLogger(name)``, after applying the command line's settings if any."""
    import logging

    if _pending is not None:
        _apply()
    return logging.getLogger(name)


def configure_cli(verbose, quiet):
    """Log records of the ``mlip_py`` loggers to the current stderr (click-aware, so
    click's CliRunner captures them) at level INFO + 10 (quiet - verbose)."""
    global _pending
    _pending = (int(verbose), int(quiet))
    if "logging" in sys.modules:
        _apply()


def _apply():
    global _pending
    import logging

    import click

    verbose, quiet = _pending
    _pending = None

    class StderrHandler(logging.Handler):
        mlip_cli = True

        def emit(self, record):
            try:
                click.echo(self.format(record), err=True)
            except Exception:  # pragma: no cover - logging must never raise
                self.handleError(record)

    root = logging.getLogger("mlip_py")
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "mlip_cli", False)]
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(max(logging.DEBUG, logging.INFO + 10 * (quiet - verbose)))
