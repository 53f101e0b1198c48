"""``mlp compress-extend``: isotropically strained copies of a configuration."""
import click

from . import _common


@click.command("compress-extend", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
def command(input, output):
    """Write 21 copies of the first configuration of INPUT to OUTPUT, with lattice and
    positions scaled by 1 + 0.01 i for i = -10 ... 10 (diagonal strain -10 % ... +10 %);
    energies, forces and stresses are removed, features kept."""
    first = next(iter(_common.open_inputs(input)), None)
    if first is None:
        raise click.ClickException(f"{input}: no configuration")

    def copies():
        for i in range(-10, 11):
            cfg = first.copy()
            cfg.clear_efs()
            cfg.site_energies = None
            scale = 1.0 + 0.01 * i
            cfg.lattice = cfg.lattice * scale
            cfg.positions = cfg.positions * scale
            yield cfg

    _common.write_outputs(output, copies(), "txt")
    _common.echo("Written 21 configurations")
