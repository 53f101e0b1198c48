"""Shared bodies of MLIP-2's undocumented data commands (``mlp list-undocumented``).

Each command lives in its own module (``mlip_py.cli.<name>``, attribute ``command``)
because the command group loads commands lazily by module; the work is done here.
"""
from __future__ import annotations

import click

from . import _common


def in_x_out(paths, name):
    """MLIP-2's ``<name> in X out`` takes args[0] and args[2] (args[1] is ignored); accept
    ``IN OUT`` too."""
    if len(paths) == 2:
        return paths[0], paths[1]
    if len(paths) == 3:
        return paths[0], paths[2]
    raise click.UsageError(f"{name} needs INPUT OUTPUT (or INPUT IGNORED OUTPUT as in MLIP-2), "
                           f"got {len(paths)} arguments")


def convert(src, dst, out_fmt, transform=None, in_fmt=None):
    """Stream ``src`` to ``dst`` (optionally through ``transform``); print the count."""
    progress = _common.Progress("processed")
    cfgs = progress(_common.open_inputs(src, in_fmt))
    if transform is not None:
        cfgs = (transform(c) for c in cfgs)
    _common.write_outputs(dst, cfgs, out_fmt)
    progress.done()
    _common.echo(f"Processed {progress.count} configurations")


def rewrite_in_place(db, transform, lossless=False, in_fmt=None):
    """Rewrite ``db`` atomically (text cfg, or HDF5 when it is one); returns the count."""
    fmt, out_fmt = _common.inplace_formats(db, in_fmt)
    counter = _common.Progress("processed")
    cfgs = (transform(c) for c in counter(_common.open_inputs(db, fmt)))
    _common.write_outputs(db, cfgs, out_fmt, lossless=lossless)
    counter.done()
    return counter.count


def add_from_outcars(db, outcars, which):
    """Append the ionic steps of OUTCARs to ``db`` (text cfg): ``which`` = "all" or "last"."""
    def steps():
        for path in outcars:
            cfgs = _common.open_inputs(path, "vasp-outcar")
            if which == "last":
                last = None
                for last in cfgs:
                    pass
                if last is None:
                    raise click.ClickException(f"{path}: no complete ionic step")
                yield last
            else:
                yield from cfgs

    counter = _common.Progress("added")
    _common.write_outputs(db, counter(steps()), "txt", append=True)
    counter.done()
    _common.echo(f"Added {counter.count} configurations to {db}")
