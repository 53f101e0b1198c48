"""``mlp to-bin``: convert a cfg file to MLIP's binary format (undocumented in MLIP-2)."""
import click

from . import _legacy


@click.command("to-bin", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="INPUT [IGNORED] OUTPUT")
def command(paths):
    """Write the configurations of INPUT to OUTPUT as binary cfg (same as convert-cfg
    --output-format=bin).  MLIP-2 takes three arguments and ignores the second; both
    forms are accepted."""
    src, dst = _legacy.in_x_out(paths, "to-bin")
    _legacy.convert(src, dst, "bin")
