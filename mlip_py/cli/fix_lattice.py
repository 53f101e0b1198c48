"""``mlp fix-lattice``: CorrectSupercell on every configuration (undocumented in MLIP-2)."""
import click

from . import _legacy


@click.command("fix-lattice", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="INPUT [IGNORED] OUTPUT")
def command(paths):
    """Same as convert-cfg --fix-lattice INPUT OUTPUT: Gauss-reduce the lattice, wrap the
    atoms into the cell, rotate to a lower-triangular lattice.  Configurations that are not
    periodic in all three directions are left unchanged.  MLIP-2 takes three arguments and
    ignores the second; both forms are accepted."""
    from ..io.lattice import fix_lattice

    src, dst = _legacy.in_x_out(paths, "fix-lattice")
    _legacy.convert(src, dst, "txt", transform=fix_lattice)
