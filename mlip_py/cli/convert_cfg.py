"""``mlp convert-cfg``: convert a file with configurations from one format to another."""
from __future__ import annotations

import click

from . import _common


def last_only(cfgs):
    """Yield only the last configuration of ``cfgs`` (nothing if empty)."""
    last = None
    for cfg in cfgs:
        last = cfg
    if last is not None:
        yield last


def write_single_cfg_files(output, cfgs, fmt, type_map=None):
    """Write ``vasp-poscar``/``lammps-datafile``: ``output`` for one configuration,
    ``output0``, ``output1``, ... for several.  Returns the number written."""
    from ..io.lammps import write_lammps_data
    from ..io.vasp import write_poscar

    cfgs = list(cfgs)
    for path, cfg in zip(_common.numbered_outputs(output, len(cfgs)), cfgs):
        if fmt == "vasp-poscar":
            write_poscar(path, cfg, type_map=type_map)
        else:
            write_lammps_data(path, cfg)
    return len(cfgs)


@click.command("convert-cfg", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@_common.input_format_option
@_common.output_format_option
@click.option("--append", is_flag=True, help="Append to OUTPUT instead of replacing it.")
@click.option("--last", is_flag=True, help="Convert only the last configuration of INPUT.")
@click.option("--fix-lattice", is_flag=True,
              help="Reduce the lattice (Gauss), wrap the atoms into the cell and rotate it to a "
                   "lower-triangular lattice (forces and stresses rotated too), as MLIP-2's "
                   "CorrectSupercell. Configurations that are not periodic in all three "
                   "directions are left unchanged (MLIP-2 writes NaN for them).")
@_common.type_map_option
@click.option("--lossless", is_flag=True,
              help="Text cfg output with 16-digit scientific numbers (MLIP's lossless layout) "
                   "instead of the default fixed-point precision.")
def command(input, output, input_format, output_format, append, last, fix_lattice, type_map,
            lossless):
    """Convert the configurations in INPUT to OUTPUT.

    Formats: txt (MLIP text cfg; reading also accepts binary cfg), bin (MLIP binary cfg),
    vasp-outcar (input: every ionic step), vasp-poscar and lammps-datafile (output; with
    more than one configuration OUTPUT0, OUTPUT1, ... are written), hdf5, extxyz,
    lammps-dump, ase:<fmt> (anything ASE reads or writes).  Prints "Processed <n>
    configurations".  OUTPUT is replaced only after the whole conversion succeeded.
    """
    out_fmt = _common.output_format_for(output, output_format)
    cfgs = _common.open_inputs(input, input_format, type_map)
    progress = _common.Progress("read")
    cfgs = progress(cfgs)
    if last:
        cfgs = last_only(cfgs)
    if fix_lattice:
        from ..io.lattice import fix_lattice as _fix

        cfgs = (_fix(c) for c in cfgs)
    if out_fmt in _common.SINGLE_CFG_FORMATS:
        if append:
            raise click.UsageError(f"--append cannot be used with --output-format={out_fmt} "
                                   "(one configuration per file)")
        write_single_cfg_files(output, cfgs, out_fmt, type_map)
    else:
        _common.write_outputs(output, cfgs, out_fmt, append=append, lossless=lossless,
                              type_map=type_map)
    progress.done()
    _common.echo(f"Processed {progress.count} configurations")
