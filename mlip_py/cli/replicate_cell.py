"""``mlp replicate-cell``: replicate the cells of configurations (supercells)."""
from __future__ import annotations

import click

from . import _common


@click.command("replicate-cell", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.argument("n", nargs=-1, type=int, required=True)
@_common.input_format_option
@_common.output_format_option
@_common.type_map_option
def command(input, output, n, input_format, output_format, type_map):
    """Write supercells of the configurations of INPUT to OUTPUT.

    N is either three integers NX NY NZ (repetitions along the three lattice vectors) or
    nine integers N11 N12 N13 N21 ... N33, a supercell matrix whose rows are the new
    lattice vectors in units of the old ones.  Energies and stresses (extensive) are
    multiplied by the number of images; forces, site energies and charges are copied.
    """
    import numpy as np

    from ..io.lattice import replicate

    if len(n) == 3:
        matrix = np.array(n, dtype=np.int64)
    elif len(n) == 9:
        matrix = np.array(n, dtype=np.int64).reshape(3, 3)
    else:
        raise click.UsageError(f"replicate-cell needs 3 or 9 integers after INPUT OUTPUT, got {len(n)}")
    counter = _common.Progress("replicated")
    cfgs = (replicate(c, matrix) for c in counter(_common.open_inputs(input, input_format, type_map)))
    out_fmt = _common.output_format_for(output, output_format)
    if out_fmt in _common.SINGLE_CFG_FORMATS:
        from .convert_cfg import write_single_cfg_files

        write_single_cfg_files(output, cfgs, out_fmt, type_map)
    else:
        _common.write_outputs(output, cfgs, out_fmt, type_map=type_map)
    counter.done()
    _common.echo(f"Processed {counter.count} configurations")
