"""``mlp calc-errors pot.mtp db.cfg``: errors of a potential on a database (MLIP-2).

As in MLIP-2 this is ``mlp train`` with ``--max-iter=0`` and no output potential: it
prints ``MTPR from <pot>, Database: <db>``, a blank line, ``\\t\\t* * * TRAIN ERRORS * * *``
(sic), a blank line and the error report.  The options of ``train`` are accepted (e.g.
``--valid-cfgs``); the weights do not matter.
"""
import click

from .train import run_train, train_options


@click.command("calc-errors")
@click.argument("potential", type=click.Path(dir_okay=False))
@click.argument("database", type=click.Path(dir_okay=False))
@train_options
def command(potential, database, **kw):
    """Compares EFS calculated by MTP with EFS from the database.

    Prints MLIP-2's error report (maximal, average and RMS absolute differences of
    energies, energies per atom, forces and stresses) of POTENTIAL on DATABASE.

    \b
    Example:
      mlp calc-errors pot.mtp test.cfg
    """
    run_train(potential, database, kw, calc_errors=True)
