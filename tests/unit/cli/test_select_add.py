"""mlp select-add: stdout, diff and selected files against MLIP-2's golden outputs;
--batch-size, --cost, errors, MPI."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.io import read_configurations
from mlip_py.io.als import read_als
from mlip_py.potential.mtp import MTP


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def stage(tmp_path, monkeypatch, src, *names):
    for name in names:
        os.symlink(src(name), tmp_path / name)
    monkeypatch.chdir(tmp_path)


GOLDEN_RUNS = [
    ("Mo_l08.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "Mo_l08", []),
    ("Mo_l08.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "Mo_l08_lim5", ["--selection-limit=5"]),
    ("Mo_l08.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "Mo_l08_structures",
     ["--weighting=structures"]),
    ("Mo_l10.mtp", "train_Mo.cfg", "candidates_Mo_200.cfg", "Mo_l10", []),
]


def golden_args(tag, pot, train, new, extra):
    return [pot, train, new, f"diff_{tag}.cfg", *extra, f"--als-filename=select_{tag}.als",
            f"--selected-filename=selected_{tag}.cfg"]


def check_als_layout(ours, want):
    """Same bytes except for the two matrices (last-bit differences allowed)."""
    a, b = ours.read_bytes(), want.read_bytes()
    n = read_als(want).params.n_params
    i = b.index(b"\n#") + 2
    j = i + 16 * n * n
    assert len(a) == len(b) and a[:i] == b[:i] and a[j:] == b[j:]
    sa, sb = read_als(ours), read_als(want)
    assert np.abs(sa.a - sb.a).max() <= 1e-12 * np.abs(sb.a).max()


@pytest.mark.parametrize("pot,train,new,tag,extra", GOLDEN_RUNS)
def test_golden_identical(tmp_path, monkeypatch, golden, pot, train, new, tag, extra):
    stage(tmp_path, monkeypatch, golden, pot, train, new)
    res = run("select-add", *golden_args(tag, pot, train, new, extra))
    assert res.exit_code == 0, res.output
    assert res.output == golden(f"select_add_{tag}.stdout").read_text()
    for name in (f"diff_{tag}.cfg", f"selected_{tag}.cfg"):
        assert (tmp_path / name).read_bytes() == golden(name).read_bytes(), name
    check_als_layout(tmp_path / f"select_{tag}.als", golden(f"select_{tag}.als"))


def test_golden_nacl_up_to_exact_ties(tmp_path, monkeypatch, golden):
    """NaCl: the efs set holds three copies of one crystal (conventional cell, unwrapped
    positions, rotated cell) whose rows are equal up to rounding; which copy wins the tie
    depends on the last bits.  Everything else is identical."""
    tag = "NaCl_l08"
    stage(tmp_path, monkeypatch, golden, "NaCl_l08.mtp", "train_NaCl.cfg", "efs_set_NaCl.cfg")
    res = run("select-add", *golden_args(tag, "NaCl_l08.mtp", "train_NaCl.cfg",
                                         "efs_set_NaCl.cfg", []))
    assert res.exit_code == 0, res.output
    assert res.output == golden(f"select_add_{tag}.stdout").read_text()
    mtp = MTP(golden("NaCl_l08.mtp"))
    for name in (f"diff_{tag}.cfg", f"selected_{tag}.cfg"):
        ours, want = read_configurations(name), read_configurations(golden(name))
        assert len(ours) == len(want)
        ties = 0
        for o, w in zip(ours, want):
            if o.features == w.features and np.array_equal(o.positions, w.positions):
                continue
            go, gw = mtp.energy_gradient(o) / len(o), mtp.energy_gradient(w) / len(w)
            assert np.abs(go - gw).max() <= 1e-12 * np.abs(gw).max()
            ties += 1
        assert ties <= 1


def test_upstream_example_identical(tmp_path, monkeypatch, upstream):
    ex = lambda *p: upstream("05.select-add", *p)  # noqa: E731
    stage(tmp_path, monkeypatch, ex, "pot.mtp", "train.cfg", "candidate.cfg")
    os.mkdir("out")
    res = run("select-add", "pot.mtp", "train.cfg", "candidate.cfg",
              "./out/to-be-computed-on-dft.cfg", "--als-filename=./out/state.als",
              "--selected-filename=./out/selected.cfg")
    assert res.exit_code == 0, res.output
    assert res.output == ex("sample_out", "stdout.log").read_text()
    for name in ("to-be-computed-on-dft.cfg", "selected.cfg"):
        assert (tmp_path / "out" / name).read_bytes() == ex("sample_out", name).read_bytes()
    check_als_layout(tmp_path / "out" / "state.als", ex("sample_out", "state.als"))


def test_batch_size_and_cost(tmp_path, golden):
    base = [golden("Mo_l08.mtp"), golden("train_Mo.cfg"), golden("candidates_Mo_200.cfg")]
    for k in (1, 3):
        d, s = tmp_path / f"d{k}.cfg", tmp_path / f"s{k}.cfg"
        res = run("select-add", *base, d, f"--batch-size={k}", f"--selected-filename={s}",
                  f"--als-filename={tmp_path}/a{k}.als")
        assert res.exit_code == 0, res.output
        assert f"TS increased by {k} configs" in res.output
        diff = read_configurations(d)
        assert len(diff) == k and all("ID" not in c.features for c in diff)
        sel_cands = [c for c in read_configurations(s) if "ID" not in c.features]
        assert [c.features["cand"] for c in sel_cands] == [c.features["cand"] for c in diff]
    # with the N^3 cost the chosen configurations are on average smaller
    d = tmp_path / "dc.cfg"
    res = run("select-add", *base, d, "--batch-size=3", "--cost=atoms3",
              f"--selected-filename={tmp_path}/sc.cfg", f"--als-filename={tmp_path}/ac.als")
    assert res.exit_code == 0, res.output
    cheap = read_configurations(d)
    plain = read_configurations(tmp_path / "d3.cfg")
    assert len(cheap) == 3
    assert sum(len(c) for c in cheap) <= sum(len(c) for c in plain)


def test_errors(tmp_path, golden):
    base = [golden("Mo_l08.mtp"), golden("train_Mo.cfg"), golden("candidates_Mo_200.cfg"),
            tmp_path / "d.cfg"]
    res = run("select-add", *base[:3])
    assert res.exit_code == 2 and "4 arguments required" in res.output
    res = run("select-add", *base, "--batch-size=2", "--selection-limit=3")
    assert res.exit_code == 1 and "cannot be combined" in res.output
    res = run("select-add", *base, "--cost=gold")
    assert res.exit_code == 2 and "atoms3" in res.output
    res = run("select-add", *base, "--select-threshold=0.9")
    assert res.exit_code == 1 and "invalid threshold value" in res.output
    res = run("select-add", *base, "--batch-size=0")
    assert res.exit_code == 2
    assert not (tmp_path / "d.cfg").exists()


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_mpi_same_output_as_serial(tmp_path, golden):
    pytest.importorskip("mpi4py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [str(golden("Mo_l08.mtp")), str(golden("train_Mo.cfg")),
            str(golden("candidates_Mo_200.cfg")), str(tmp_path / "d.cfg"),
            f"--als-filename={tmp_path}/s.als", f"--selected-filename={tmp_path}/s.cfg"]
    res = subprocess.run(["mpirun", "-n", "2", sys.executable, "-m", "mlip_py.cli.main",
                          "select-add", *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    want = golden("select_add_Mo_l08.stdout").read_text().splitlines()
    assert res.stdout.splitlines()[1:6] == want[1:6]
    assert (tmp_path / "d.cfg").read_bytes() == golden("diff_Mo_l08.cfg").read_bytes()
    assert (tmp_path / "s.cfg").read_bytes() == golden("selected_Mo_l08.cfg").read_bytes()
