"""``mlp calc-efs pot.mtp in.cfg out.cfg``: energies, forces and stresses with an MTP."""
import click

from ._common import Progress, input_format_option, open_inputs, output_format_for, \
    output_format_option, type_map_option, write_outputs


@click.command("calc-efs")
@click.argument("potential", type=click.Path(dir_okay=False))
@click.argument("input", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@input_format_option
@output_format_option
@type_map_option
@click.option("--lossless", is_flag=True,
              help="Write 17 significant digits (round-trips doubles exactly).")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="OpenMP threads of the kernels (default: OMP_NUM_THREADS or all cores).")
def command(potential, input, output, input_format, output_format, type_map, lossless, threads):
    """Calculates energies, forces and stresses (EFS) of configurations.

    Reads every configuration of INPUT, computes E, F and the PlusStress virial with the
    MTP POTENTIAL and writes them to OUTPUT (text cfg by default).  Features, charges and
    input site energies are kept; the input's EFS are replaced.  Streams: memory does not
    grow with the file size.  As in MLIP-2, EFS are written for non-periodic
    configurations too.

    \b
    Example:
      mlp calc-efs pot.mtp train.cfg out/calculated.cfg
    """
    from ..potential.mtp import MTP

    mtp = MTP(potential, num_threads=threads)
    progress = Progress("calc-efs")

    def evaluated():
        for cfg in progress(open_inputs(input, input_format, type_map)):
            energy, forces, stress, _ = mtp.calc_efs(cfg)
            cfg.energy, cfg.forces, cfg.plus_stress = energy, forces, stress
            yield cfg

    write_outputs(output, evaluated(), output_format_for(output, output_format),
                  lossless=lossless, type_map=type_map)
    progress.done()
