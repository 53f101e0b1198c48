"""``mlp``: the command group, lazy command loading and the single error boundary.

Exit codes: 0 success; 1 an error in the input or the run (one line on stderr naming the
file, line and what was expected); 2 a usage error (unknown option, wrong argument
count); 130 interrupted with Ctrl-C.
"""
import gc
import importlib
import sys

import click

from .. import __version__

BANNER = ("mlp (mlip-py {v}), compatible with MLIP-2 mlp by A. V. Shapeev, E. V. Podryabinkin, "
          "K. Gubaev, I. S. Novikov (Skoltech)")

#: command name -> (module in mlip_py.cli, one-line description); the MLIP-2
#: documented commands come first, in the original's ``mlp list`` order.
COMMANDS = {
    "relax": ("relax", "relaxes the configuration(s)"),
    "convert-cfg": ("convert_cfg", "convert a file with configurations from one format to another"),
    "train": ("train", "fits an MTP"),
    "calc-errors": ("calc_errors", "compares EFS calculated by MTP with EFS from the database"),
    "mindist": ("mindist", "reads a cfg file and saves it with added mindist feature"),
    "calc-efs": ("calc_efs", "calculates energies, forces, and stresses (efs) of configurations"),
    "calc-grade": ("calc_grade", "calculates and saves maxvol grades of input configurations"),
    "select-add": ("select_add", "actively selects configurations to be added to the current training set"),
    "filter-nonconv": ("filter_nonconv", "removes configurations whose EFS_by feature says not_converged (in place)"),
    "subsample": ("subsample", "keeps every N-th configuration"),
    "replicate-cell": ("replicate_cell", "replicates the cells of configurations"),
    "make-template": ("make_template", "writes an untrained MTP of a given level (new)"),
    "to-bin": ("to_bin", "converts a cfg file to the binary format"),
    "from-bin": ("from_bin", "converts a binary cfg file to text"),
    "fix-lattice": ("fix_lattice", "reduces, wraps and rotates the lattices (CorrectSupercell)"),
    "fix-cfg": ("fix_cfg", "rewrites a cfg file in place"),
    "invert-stress": ("invert_stress", "negates the stresses in a cfg file (in place)"),
    "to-poscar": ("to_poscar", "writes configurations as POSCAR files"),
    "add-from-outcar-dyn": ("add_from_outcar_dyn", "appends all ionic steps of OUTCARs to a cfg file"),
    "add-from-outcar-last": ("add_from_outcar_last", "appends the last ionic step of OUTCARs to a cfg file"),
    "compress-extend": ("compress_extend", "writes 21 isotropically strained copies of a configuration"),
    "md": ("md", "molecular dynamics with extrapolation control (new)"),
    "label": ("label", "computes reference energies, forces and stresses with an oracle (new)"),
}

#: the order of MLIP-2's ``mlp list``; commands not yet available are skipped
LIST_ORDER = ["relax", "convert-cfg", "train", "calc-errors", "mindist", "select-add",
              "calc-grade", "calc-efs"]

class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx):
        first = [c for c in LIST_ORDER if c in COMMANDS]
        rest = [c for c in COMMANDS if c not in first]
        return first + rest + ["list", "help"]

    def get_command(self, ctx, name):
        if name in ("list", "help"):
            return super().get_command(ctx, name)
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"mlip_py.cli.{COMMANDS[name][0]}")
        # the objects made by the imports so far (modules, functions, classes) live as
        # long as the process: move them out of the cyclic collector's generations, so
        # that its full collections during long reads do not traverse them again
        gc.freeze()
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else "") for name in self.list_commands(ctx)]
        rows = [(n, d or ("lists all the available commands" if n == "list"
                          else "prints the description of a command")) for n, d in rows]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("mlp: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except click.Abort:
            raise
        except Exception as err:  # the one error boundary
            from ..errors import MlipError

            if ctx.obj and ctx.obj.get("traceback"):
                raise
            if isinstance(err, MlipError):
                click.echo(f"mlp: error: {err}", err=True)
                sys.exit(1)
            if isinstance(err, (OSError,)):
                name = getattr(err, "filename", None)
                click.echo(f"mlp: error: {name + ': ' if name else ''}{err.strerror or err}", err=True)
                sys.exit(1)
            if isinstance(err, MemoryError):
                click.echo("mlp: error: out of memory", err=True)
                sys.exit(1)
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mlp (mlip-py)")
@click.option("-v", "--verbose", count=True, help="More output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less output: no progress lines (repeatable).")
@click.option("-T", "--traceback", is_flag=True, help="Show Python tracebacks on errors (debugging).")
@click.pass_context
def cli(ctx, verbose, quiet, traceback):
    """mlp: Moment Tensor Potentials and active learning (mlip-py, MLIP-2 compatible).

    Run 'mlp list' for the commands and 'mlp help COMMAND' (or 'mlp COMMAND --help')
    for one command's usage.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbose - quiet
    ctx.obj["traceback"] = traceback
    from .._log import configure_cli

    configure_cli(verbose, quiet)


@cli.command("list")
def list_command():
    """Lists all the available commands."""
    click.echo(BANNER.format(v=__version__))
    click.echo("List of available commands:")
    for name in cli.list_commands(None):
        if name in COMMANDS:
            click.echo(f"    {name}: {COMMANDS[name][1]}")


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx, command):
    """Prints the description of COMMAND (or the general usage)."""
    click.echo(BANNER.format(v=__version__))
    if command is None:
        click.echo("Usage:\n"
                   "mlp help                 prints this message\n"
                   "mlp list                 lists all the available commands\n"
                   "mlp help [command]       prints the description of the command\n"
                   "mlp [command] [options]  executes the command (with the options)")
        return
    cmd = cli.get_command(ctx, command)
    if cmd is None:
        raise click.UsageError(f"command {command} does not exist. Run 'mlp list'.")
    with click.Context(cmd, info_name=command, parent=ctx.parent) as sub:
        click.echo(cmd.get_help(sub))


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="mlp")


if __name__ == "__main__":  # pragma: no cover
    main()
