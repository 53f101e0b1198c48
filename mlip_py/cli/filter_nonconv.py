"""``mlp filter-nonconv``: drop configurations whose EFS were not converged (in place)."""
from __future__ import annotations

import click

from . import _common


def is_not_converged(cfg):
    """True when the ``EFS_by`` feature contains ``not_converged`` (e.g. ``VASP_not_converged``)."""
    return "not_converged" in cfg.features.get("EFS_by", "")


@click.command("filter-nonconv", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
@_common.input_format_option
def command(db, input_format):
    """Remove from DB (in place, atomically) every configuration whose EFS_by feature
    contains "not_converged".  DB is written back as a text cfg (or HDF5 store when it
    is one).  Prints how many configurations were removed."""
    fmt, out_fmt = _common.inplace_formats(db, input_format)
    counts = {"total": 0, "removed": 0}

    def keep(cfgs):
        for cfg in cfgs:
            counts["total"] += 1
            if is_not_converged(cfg):
                counts["removed"] += 1
                continue
            yield cfg

    _common.write_outputs(db, keep(_common.open_inputs(db, fmt)), out_fmt)
    _common.echo(f"Removed {counts['removed']} of {counts['total']} configurations "
                 f"(EFS_by contains not_converged)")
