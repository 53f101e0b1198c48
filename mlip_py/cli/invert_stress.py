"""``mlp invert-stress``: negate the stresses in place (undocumented in MLIP-2)."""
import click

from . import _common, _legacy


@click.command("invert-stress", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("db", type=click.Path(dir_okay=False))
def command(db):
    """Multiply the PlusStress of every configuration of DB by -1 (in place, atomically),
    e.g. to repair files written with the old negative stress convention."""
    count = [0]

    def flip(cfg):
        if cfg.plus_stress is not None:
            cfg.plus_stress = -cfg.plus_stress
            count[0] += 1
        return cfg

    n = _legacy.rewrite_in_place(db, flip)
    _common.echo(f"Inverted the stress of {count[0]} of {n} configurations")
