"""The command group: list, help, --help for every command, exit codes."""
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlip_py.cli.main import COMMANDS, cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_list_names_every_command():
    res = run("list")
    assert res.exit_code == 0
    assert "List of available commands:" in res.output
    for name in COMMANDS:
        assert f"    {name}: " in res.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    res = run(name, "--help")
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    res2 = run("help", name)
    assert res2.exit_code == 0
    assert "Usage:" in res2.output


def test_unknown_command_is_usage_error():
    res = run("no-such-command")
    assert res.exit_code == 2


def test_help_unknown_command():
    res = run("help", "no-such-command")
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_unknown_option_is_usage_error():
    res = run("mindist", "x.cfg", "--no-such-option=1")
    assert res.exit_code == 2


def test_version():
    res = run("--version")
    assert res.exit_code == 0
    assert "mlip-py" in res.output


def test_help_does_not_import_numpy():
    code = ("import sys; from mlip_py.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'numpy' not in sys.modules, 'numpy imported by mlp --help'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_calc_grade_start_up_imports(tmp_path):
    """The selection hot path imports neither SciPy (numpy's BLAS and LAPACK serve the
    maxvol kernels) nor logging: start-up time of every calc-grade/select-add in a bash
    loop."""
    root = Path(__file__).resolve().parents[2]
    pot = root / "configs" / "untrained" / "08.mtp"
    cfg = root / "sample_data" / "cu_train.cfg"
    code = (
        "import sys; from mlip_py.cli.main import main\n"
        f"argv = ['-q', 'calc-grade', {str(pot)!r}, {str(cfg)!r}, {str(cfg)!r}, "
        f"{str(tmp_path / 'out.cfg')!r}, '--als-filename={tmp_path / 's.als'}']\n"
        "try:\n    main(argv)\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted(m for m in ('scipy', 'logging', 'Cython') if m in sys.modules)\n"
        "assert not bad, bad\n"
        "assert not [m for m in sys.modules if m.startswith('scipy')]\n"
        "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("ok")
    assert (tmp_path / "out.cfg").stat().st_size > 0
