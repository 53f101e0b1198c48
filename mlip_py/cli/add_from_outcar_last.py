"""``mlp add-from-outcar-last``: append the last ionic step of OUTCARs to a cfg file."""
import click

from . import _legacy


@click.command("add-from-outcar-last", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
@click.argument("outcars", nargs=-1, required=True, type=click.Path(dir_okay=False))
def command(db, outcars):
    """Append the last complete ionic step of each OUTCAR to DB (text cfg, atomically)."""
    _legacy.add_from_outcars(db, outcars, "last")
