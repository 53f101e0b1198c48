"""``mlp mindist``: add the minimal interatomic distance of every configuration as a feature."""
from __future__ import annotations

import click

from . import _common


@click.command("mindist", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--no-overwrite", is_flag=True, help="Only print the global minimal distance; "
              "do not rewrite DB.")
@_common.input_format_option
def command(db, no_overwrite, input_format):
    """Add "Feature mindist" to every configuration of DB and print the global minimum.

    The minimal distance counts periodic images up to one lattice vector away along each
    periodic direction (9.9e99 when a configuration has no pair of atoms).  DB is
    rewritten in place (atomically) as a text cfg, or as an HDF5 store when it is one;
    the value is written like MLIP-2's std::to_string (6 decimals), the global minimum
    with 6 significant digits: "Global mindist: <min>".
    """
    from ..io.lattice import MINDIST_NONE, mindist

    if no_overwrite:
        from .. import io as mio

        fmt, out_fmt = mio.detect_format(db, input_format), None
    else:
        fmt, out_fmt = _common.inplace_formats(db, input_format)
    best = [MINDIST_NONE]

    def annotate(cfgs):
        for cfg in cfgs:
            d = mindist(cfg)
            best[0] = min(best[0], d)
            cfg.features["mindist"] = "%f" % d
            yield cfg

    progress = _common.Progress("mindist")
    cfgs = annotate(progress(_common.open_inputs(db, fmt)))
    if no_overwrite:
        for _ in cfgs:
            pass
    else:
        _common.write_outputs(db, cfgs, out_fmt)
    progress.done()
    _common.echo("Global mindist: %g" % best[0])
