"""``mlp from-bin``: convert a binary cfg file to text (undocumented in MLIP-2)."""
import click

from . import _legacy


@click.command("from-bin", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="INPUT [IGNORED] OUTPUT")
def command(paths):
    """Write the configurations of the binary cfg INPUT to OUTPUT as text cfg.  MLIP-2 takes
    three arguments and ignores the second; both forms are accepted."""
    src, dst = _legacy.in_x_out(paths, "from-bin")
    _legacy.convert(src, dst, "txt", in_fmt="bin")
