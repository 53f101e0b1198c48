"""Pieces shared by the data-handling commands: format/type-map options, input opening,
output-format choice and a progress printer.

Format names (``--input-format`` / ``--output-format``):

* ``txt``  MLIP text cfg (on input a binary cfg is recognised too, as in MLIP-2)
* ``bin``  MLIP binary cfg
* ``vasp-outcar`` (input only), ``vasp-poscar`` and ``lammps-datafile`` (output only)
* ``hdf5`` mlip_py's HDF5 store, ``extxyz`` extended XYZ, ``lammps-dump`` LAMMPS text dump
* ``ase:<fmt>`` any format ASE reads (input) or writes (output), e.g. ``ase:vasp-xml``

Without ``--input-format`` the format is detected from the file (see
:func:`mlip_py.io.detect_format`); without ``--output-format`` it is ``txt`` (MLIP-2's
default) unless the output name ends in ``.h5``/``.hdf5`` (hdf5) or ``.extxyz``/``.xyz``
(extxyz).
"""
from __future__ import annotations

import os
import sys
import time

import click

from ..configuration import parse_type_map
from ..errors import ConfigError

INPUT_FORMATS = ("txt", "bin", "vasp-outcar", "hdf5", "extxyz", "lammps-dump")
OUTPUT_FORMATS = ("txt", "bin", "vasp-poscar", "lammps-datafile", "hdf5", "extxyz", "lammps-dump")
#: output formats holding exactly one configuration per file (several -> <output>0, <output>1, ...)
SINGLE_CFG_FORMATS = ("vasp-poscar", "lammps-datafile")


def _check_input_format(ctx, param, value):
    if value is None or value == "":  # MLIP-2: an empty value means "not given"
        return None
    if value in INPUT_FORMATS or (value.startswith("ase:") and len(value) > 4):
        return value
    if value in ("vasp-poscar", "lammps-datafile"):
        raise click.BadParameter(f"{value} is an output-only format (readable: "
                                 f"{', '.join(INPUT_FORMATS)}, ase:<fmt>)", ctx, param)
    raise click.BadParameter(f"unknown format {value!r} (choose from {', '.join(INPUT_FORMATS)}, "
                             "ase:<fmt>)", ctx, param)


def _check_output_format(ctx, param, value):
    if value is None or value == "":
        return None
    if value in OUTPUT_FORMATS or (value.startswith("ase:") and len(value) > 4):
        return value
    if value == "vasp-outcar":
        raise click.BadParameter("vasp-outcar is an input-only format (writable: "
                                 f"{', '.join(OUTPUT_FORMATS)}, ase:<fmt>)", ctx, param)
    raise click.BadParameter(f"unknown format {value!r} (choose from {', '.join(OUTPUT_FORMATS)}, "
                             "ase:<fmt>)", ctx, param)


def _parse_type_map(ctx, param, value):
    if value is None or value == "":
        return None
    try:
        return parse_type_map(value)
    except ConfigError as err:
        raise click.BadParameter(str(err), ctx, param) from None


def input_format_option(f):
    """``--input-format`` (default: detected from the file)."""
    return click.option(
        "--input-format", default=None, callback=_check_input_format, metavar="FMT",
        help="Input format: " + ", ".join(INPUT_FORMATS) + " or ase:<fmt> "
             "(default: detected from the file; txt also reads binary cfg).",
    )(f)


def output_format_option(f):
    """``--output-format`` (default: txt, or from the extension .h5/.hdf5/.extxyz/.xyz)."""
    return click.option(
        "--output-format", default=None, callback=_check_output_format, metavar="FMT",
        help="Output format: " + ", ".join(OUTPUT_FORMATS) + " or ase:<fmt> "
             "(default: txt, or hdf5/extxyz for names ending in .h5/.hdf5/.extxyz/.xyz).",
    )(f)


def type_map_option(f):
    """``--type-map=Cu,Ni``: element of type 0, 1, ... (for extxyz/ASE/LAMMPS element names)."""
    return click.option(
        "--type-map", default=None, callback=_parse_type_map, metavar="EL,EL,...",
        help="Elements of types 0, 1, ... e.g. --type-map=Na,Cl. Needed to write extxyz/ASE "
             "formats; when reading them without it, the sorted elements of the file are "
             "used and a notice says so.",
    )(f)


def output_format_for(path, fmt):
    """The output format to use for ``path`` when ``--output-format`` is ``fmt`` (or None)."""
    if fmt:
        return fmt
    name = os.fspath(path).lower()
    if name.endswith((".h5", ".hdf5")):
        return "hdf5"
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    return "txt"


def open_inputs(path, fmt=None, type_map=None):
    """Iterator over the configurations of ``path`` through the format registry.

    Raises FileNotFoundError (reported as one line by the ``mlp`` error boundary) when the
    file does not exist, before anything is read.
    """
    from .. import io as mio

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    return mio.iread_configurations(path, fmt=fmt, type_map=type_map)


def write_outputs(path, cfgs, fmt, append=False, lossless=False, type_map=None):
    """Write through the registry; returns the number written."""
    from .. import io as mio

    return mio.write_configurations(path, cfgs, fmt=fmt, append=append, lossless=lossless,
                                    type_map=type_map)


def inplace_formats(db, fmt=None):
    """(input format, output format) for commands that rewrite DB in place.

    Text and binary cfg files are written back as text cfg (as MLIP-2 does), HDF5 stores
    as HDF5 stores; other formats are refused rather than silently turned into cfg text.
    """
    from .. import io as mio

    fmt = mio.detect_format(db, fmt)
    if fmt in ("txt", "bin"):
        return fmt, "txt"
    if fmt == "hdf5":
        return fmt, "hdf5"
    raise ConfigError(f"{db}: in-place rewriting is supported for cfg (txt, bin) and hdf5 files, "
                      f"not {fmt}; convert it with 'mlp convert-cfg' first")


def quiet(ctx=None):
    """True when ``-q`` was given (no progress lines)."""
    ctx = ctx or click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return bool(obj) and obj.get("verbosity", 0) < 0


class Progress:
    """Counts items and prints ``<label>: <n> ...`` to stderr at most every ``interval`` s.

    Silent with ``-q``.  Use as an iterator wrapper: ``for cfg in progress(cfgs): ...``;
    ``progress.count`` is the number of items seen.
    """

    def __init__(self, label="processed", interval=5.0, unit="configurations", enabled=None):
        self.label = label
        self.interval = float(interval)
        self.unit = unit
        self.count = 0
        self.enabled = (not quiet()) if enabled is None else bool(enabled)
        self._start = time.monotonic()
        self._last = self._start
        self._printed = False

    def __call__(self, items):
        for item in items:
            self.count += 1
            if self.enabled:
                now = time.monotonic()
                if now - self._last >= self.interval:
                    self._last = now
                    self._printed = True
                    click.echo(f"{self.label}: {self.count} {self.unit} "
                               f"({now - self._start:.0f} s)", err=True)
            yield item

    def done(self):
        """Print a final progress line if intermediate ones were printed."""
        if self.enabled and self._printed:
            click.echo(f"{self.label}: {self.count} {self.unit} "
                       f"({time.monotonic() - self._start:.0f} s), done", err=True)


def numbered_outputs(path, n):
    """``[path]`` for one configuration, ``[path0, path1, ...]`` for several (MLIP-2 rule)."""
    path = os.fspath(path)
    if n == 1:
        return [path]
    return [f"{path}{i}" for i in range(n)]


def echo(text):
    """Print a result line on stdout."""
    click.echo(text)
    sys.stdout.flush()


# ------------------------------------------------ MLIP-2 style option callbacks
# MLIP-2 treats an option given with an empty value (``--max-iter=``) as not given.


def opt_float(default):
    """Callback: a number; an empty value (``--x=``) counts as not given (MLIP-2)."""
    def cb(ctx, param, value):
        if value is None or value == "":
            return default
        try:
            return float(value)
        except ValueError:
            raise click.BadParameter(f"expected a number, got {value!r}", ctx, param) from None
    return cb


def opt_int(default, minimum=None):
    """Callback: an integer (>= minimum); empty = not given."""
    def cb(ctx, param, value):
        if value is None or value == "":
            return default
        try:
            v = int(value)
        except ValueError:
            raise click.BadParameter(f"expected an integer, got {value!r}", ctx, param) from None
        if minimum is not None and v < minimum:
            raise click.BadParameter(f"must be >= {minimum}, got {v}", ctx, param)
        return v
    return cb


def opt_str(default):
    """Callback: a string; empty = not given."""
    def cb(ctx, param, value):
        return default if value is None or value == "" else value
    return cb
