"""``mlp to-poscar``: write configurations as POSCAR files (undocumented in MLIP-2)."""
import click

from . import _common


@click.command("to-poscar", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("poscar", required=False, default="POSCAR")
@_common.type_map_option
def command(db, poscar, type_map):
    """Write the configurations of DB as POSCAR (default name POSCAR; with several
    configurations POSCAR0, POSCAR1, ...).  With --type-map a species line is added."""
    from .convert_cfg import write_single_cfg_files

    n = write_single_cfg_files(poscar, _common.open_inputs(db), "vasp-poscar", type_map)
    _common.echo(f"Processed {n} configurations")
