"""The command oracle and the journal: contract, results, failures, resuming, chunks."""
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from refdata import shared_file
from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError
from mlip_py.io import read_configurations
from mlip_py.oracles import get_oracle
from mlip_py.oracles.journal import Journal, parse_chunk, run_batch

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "oracles" / "emt_command.py"
TYPE_MAP = ["Cu", "Ni"]


def example(*args):
    return "command:" + " ".join(shlex.quote(str(a)) for a in (sys.executable, EXAMPLE, *args))


def cu_ni(seed, fail=False):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.numbers[::3] = 28
    atoms.rattle(0.05, seed=seed)
    cfg = Configuration.from_atoms(atoms, TYPE_MAP)
    cfg.features["seed"] = str(seed)
    if fail:
        cfg.features["fail"] = "1"
    return cfg


def emt(cfg):
    oracle = get_oracle("emt")
    oracle.prepare(TYPE_MAP)
    return oracle.label(cfg, 0)


def oracle_for(spec, type_map=TYPE_MAP, **opts):
    oracle = get_oracle(spec, **opts)
    oracle.prepare(type_map)
    return oracle


def run_all(cfgs, oracle, workdir, **kw):
    return list(run_batch(cfgs, oracle, journal=Journal(workdir), **kw))


def counts(path):
    return sorted(int(x) for x in Path(path).read_text().split()) if Path(path).exists() else []


def test_example_program_labels_like_emt_and_failure_is_recorded(tmp_path):
    cfgs = [cu_ni(0), cu_ni(1, fail=True), cu_ni(2)]
    counter = tmp_path / "counter"
    out = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "work")
    assert [o.ok for o in out] == [True, False, True]
    for o in (out[0], out[2]):
        ref = emt(cfgs[o.index])
        assert o.cfg.energy == pytest.approx(ref.energy, abs=1e-12)
        np.testing.assert_allclose(o.cfg.forces, ref.forces, atol=1e-12)
        np.testing.assert_allclose(o.cfg.plus_stress, ref.plus_stress, atol=1e-12)
        assert o.cfg.features == {"seed": str(o.index), "EFS_by": "command"}
    err = out[1].cfg.features["label_error"]
    assert "status 3" in err and "fail=1" in err and out[1].cfg.features["label_index"] == "1"
    assert counts(counter) == [0, 2]
    d = tmp_path / "work" / "000000"
    for name in ("input.cfg", "POSCAR", "input.extxyz", "output.cfg", "result.cfg",
                 "mlp_command.status"):
        assert (d / name).exists(), name
    assert not (tmp_path / "work" / "000001" / "result.cfg").exists()
    assert (tmp_path / "work" / "000001" / "failed.cfg").exists()

    # rerun: nothing runs again, results and the failure are re-used
    again = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "work")
    assert [(o.ok, o.reused) for o in again] == [(True, True), (False, True), (True, True)]
    assert again[0].cfg.energy == out[0].cfg.energy
    assert counts(counter) == [0, 2]
    # --retry-failed runs only the failed one (it fails again)
    retry = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "work",
                    retry_failed=True)
    assert [(o.ok, o.reused) for o in retry] == [(True, True), (False, False), (True, True)]


def test_environment_and_extxyz_result(tmp_path):
    cfgs = [cu_ni(3)]
    env = tmp_path / "env.txt"
    cmd = (f'echo "$MLIP_PY_TYPE_MAP $MLIP_PY_CFG_INDEX $PWD $MLIP_PY_START_DIR" > '
           f'{shlex.quote(str(env))} && ' + example("--extxyz")[len("command:"):])
    (o,) = run_all(cfgs, oracle_for("command:" + cmd, efs_by="EMT-ext"), tmp_path / "w")
    assert o.ok, o.cfg.features
    tm, idx, cwd, start = env.read_text().split()
    assert (tm, idx) == ("Cu,Ni", "0") and os.path.samefile(cwd, tmp_path / "w" / "000000")
    assert os.path.samefile(start, os.getcwd())
    ref = emt(cfgs[0])
    assert o.cfg.energy == pytest.approx(ref.energy, abs=1e-9)
    np.testing.assert_allclose(o.cfg.forces, ref.forces, atol=1e-7)  # ASE's extxyz precision
    np.testing.assert_allclose(o.cfg.plus_stress, ref.plus_stress, atol=1e-6)
    assert o.cfg.features["EFS_by"] == "EMT-ext"


def test_outcar_result_in_poscar_order(tmp_path):
    """An OUTCAR's atoms (POSCAR order = sorted by type) are mapped back to the input order."""
    outcar = shared_file("reference", "mlip", "upstream_examples", "convert-cfg", "07.convert-cfg",
                         "OUTCAR")
    step = read_configurations(outcar, fmt="vasp-outcar")[-1]
    # interleave the species, keeping the order within each (what a POSCAR sorts back)
    slots = np.random.default_rng(5).permutation(step.types)
    perm = np.empty(len(step), dtype=int)
    for t in np.unique(step.types):
        perm[slots == t] = np.flatnonzero(step.types == t)
    assert not np.array_equal(perm, np.arange(len(step)))
    cfg = Configuration(lattice=step.lattice, positions=step.positions[perm], types=step.types[perm])
    oracle = oracle_for(f"command:cp {shlex.quote(str(outcar))} OUTCAR", type_map=None)
    (o,) = run_all([cfg], oracle, tmp_path / "w")
    assert o.ok, o.cfg.features
    assert o.cfg.energy == step.energy
    np.testing.assert_array_equal(o.cfg.forces, step.forces[perm])
    np.testing.assert_array_equal(o.cfg.plus_stress, step.plus_stress)
    assert o.cfg.features["EFS_by"] == step.features["EFS_by"]
    poscar = (tmp_path / "w" / "000000" / "POSCAR").read_text().splitlines()
    assert poscar[5].split() == ["1", "16", "32"]  # no species line without a type map
    assert not (tmp_path / "w" / "000000" / "input.extxyz").exists()


@pytest.mark.parametrize("command, message", [
    ("exit 7", "status 7"),
    ("no_such_program_xyz", "status 127"),
    ("true", "wrote none of output.cfg, OUTCAR, output.extxyz"),
    ("echo garbage > output.cfg", "cannot read the result output.cfg"),
    ("cp input.cfg output.cfg", "has no energy"),
])
def test_command_failures_are_recorded(tmp_path, command, message):
    (o,) = run_all([cu_ni(4)], oracle_for("command:" + command), tmp_path / "w")
    assert not o.ok
    assert message in o.cfg.features["label_error"]


def test_relaxed_or_reordered_result_is_refused(tmp_path):
    script = ("import sys; from mlip_py.io import read_configurations, write_configurations; "
              "(c,) = read_configurations('input.cfg'); c.energy = 1.0; "
              "c.positions[1, 0] += 0.1; write_configurations('output.cfg', [c])")
    cmd = f"command:{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    (o,) = run_all([cu_ni(4)], oracle_for(cmd), tmp_path / "w")
    assert not o.ok and "atom 1 in output.cfg is 0.1 A away" in o.cfg.features["label_error"]


def test_timeout_kills_the_command(tmp_path):
    marker = tmp_path / "after"
    oracle = oracle_for(f"command:sleep 20; touch {shlex.quote(str(marker))}", timeout=0.3)
    (o,) = run_all([cu_ni(4)], oracle, tmp_path / "w")
    assert not o.ok and "timed out after 0.3 s" in o.cfg.features["label_error"]
    assert not marker.exists()


def test_finished_but_uncommitted_command_is_not_run_again(tmp_path):
    """A command that completed after mlp died: its status file and output are taken."""
    counter = tmp_path / "counter"
    cfgs = [cu_ni(6)]
    (first,) = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "w")
    os.unlink(tmp_path / "w" / "000000" / "result.cfg")  # as if killed before the commit
    (second,) = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "w")
    assert second.ok and not second.reused
    assert second.cfg.energy == first.cfg.energy
    assert counts(counter) == [0]
    # without the status file the attempt counts as unfinished: it runs again
    os.unlink(tmp_path / "w" / "000000" / "result.cfg")
    os.unlink(tmp_path / "w" / "000000" / "mlp_command.status")
    (third,) = run_all(cfgs, oracle_for(example("--counter", counter)), tmp_path / "w")
    assert third.ok and counts(counter) == [0, 0]


def test_journal_of_another_input_is_refused(tmp_path):
    oracle = oracle_for("emt")
    run_all([cu_ni(0)], oracle, tmp_path / "w")
    with pytest.raises(ConfigError, match="belongs to a different input"):
        run_all([cu_ni(1)], oracle, tmp_path / "w")


def test_chunks_partition_the_input(tmp_path):
    cfgs = [cu_ni(k) for k in range(7)]
    oracle = oracle_for("emt")
    seen = []
    for i in (1, 2, 3):
        seen += [o.index for o in run_batch(cfgs, oracle, chunk=(i, 3))]
        assert [o.index for o in run_batch(cfgs, oracle, chunk=(i, 3))] == list(range(i - 1, 7, 3))
    assert sorted(seen) == list(range(7))
    assert parse_chunk("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "1/0", "a/b", "3"):
        with pytest.raises(ConfigError):
            parse_chunk(bad)


def test_command_oracle_requires_a_workdir():
    with pytest.raises(ConfigError, match="work directory"):
        list(run_batch([cu_ni(0)], oracle_for("command:true")))
