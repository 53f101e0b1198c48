"""``mlp fix-cfg``: rewrite a cfg file in place (undocumented in MLIP-2)."""
import click

from . import _common, _legacy


@click.command("fix-cfg", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--no-loss", is_flag=True, help="Write 16-digit scientific numbers (lossless).")
def command(db, no_loss):
    """Read DB and write it back in place (atomically) in the current text layout, which
    normalises old-format, binary or hand-written files."""
    n = _legacy.rewrite_in_place(db, lambda c: c, lossless=no_loss)
    _common.echo(f"Processed {n} configurations")
