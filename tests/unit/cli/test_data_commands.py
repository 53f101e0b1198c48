"""mindist, filter-nonconv, subsample, replicate-cell and the undocumented data commands."""
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mlip_py.cli.main import cli
from mlip_py.configuration import Configuration
from mlip_py.io.cfg import format_cfg, read_cfg, write_cfg
from mlip_py.io.lattice import MINDIST_NONE, mindist, replicate


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(res):
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def copy(src, dst):
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return dst


# --------------------------------------------------------------------------- mindist
def test_mindist_golden(golden, tmp_path):
    db = copy(golden("efs_set_Mo.cfg"), tmp_path / "db.cfg")
    res = ok(run("mindist", db))
    assert res.stdout == golden("mindist_efs_set_Mo.stdout").read_text()
    assert db.read_bytes() == golden("mindist_efs_set_Mo.cfg").read_bytes()
    # the isolated atom: 9.9e99 written like std::to_string
    assert "Feature   mindist\t99000000000000007208126" in db.read_text()


def test_mindist_no_overwrite(golden, tmp_path):
    db = copy(golden("efs_set_Mo.cfg"), tmp_path / "db.cfg")
    before = db.read_bytes()
    res = ok(run("mindist", db, "--no-overwrite"))
    assert res.stdout == "Global mindist: 1.6\n"
    assert db.read_bytes() == before


def test_mindist_brute_force(rng):
    lat = np.array([[3.1, 0.2, 0.0], [0.4, 2.9, 0.1], [0.3, -0.2, 3.3]])
    cfg = Configuration(lattice=lat, positions=rng.uniform(0, 1, (5, 3)) @ lat, types=np.zeros(5))
    best = np.inf
    for i in range(5):
        for j in range(5):
            for n in np.ndindex(3, 3, 3):
                shift = (np.array(n) - 1) @ lat
                if i == j and not shift.any():
                    continue
                best = min(best, np.linalg.norm(cfg.positions[j] + shift - cfg.positions[i]))
    assert mindist(cfg) == pytest.approx(best, rel=1e-14)
    assert mindist(Configuration(positions=[[0, 0, 0]], types=[0])) == MINDIST_NONE
    wire = Configuration(lattice=[[2.5, 0, 0], [0, 0, 0], [0, 0, 0]], positions=[[0, 0, 0]], types=[0])
    assert mindist(wire) == 2.5


def test_mindist_bad_file(tmp_path):
    db = tmp_path / "db.cfg"
    db.write_text("BEGIN_CFG\n Size\n    x\nEND_CFG\n")
    res = run("mindist", db)
    assert res.exit_code == 1
    assert "db.cfg:3" in res.stderr
    assert db.read_text() == "BEGIN_CFG\n Size\n    x\nEND_CFG\n"


# --------------------------------------------------------------------------- filter-nonconv
def _cfgs_with_efs_by(values):
    out = []
    for k, v in enumerate(values):
        cfg = Configuration(lattice=np.eye(3) * 3, positions=[[0, 0, 0]], types=[0], energy=-k)
        if v is not None:
            cfg.features["EFS_by"] = v
        out.append(cfg)
    return out


def test_filter_nonconv(tmp_path):
    cfgs = _cfgs_with_efs_by(["VASP", "VASP_not_converged", None, "not_converged_x", "VASP"])
    db = tmp_path / "db.cfg"
    write_cfg(db, cfgs)
    res = ok(run("filter-nonconv", db))
    assert "Removed 2 of 5" in res.stdout
    kept = read_cfg(db)
    assert [c.energy for c in kept] == [0.0, -2.0, -4.0]
    assert db.read_text() == "".join(format_cfg(c) for c in (cfgs[0], cfgs[2], cfgs[4]))


def test_filter_nonconv_outcar(upstream, tmp_path):
    text = upstream("00.convert_vasp_outcar", "OUTCAR").read_text()
    (tmp_path / "OUTCAR").write_text(text.replace("NELM   =     80;", "NELM   =      6;"))
    db = tmp_path / "db.cfg"
    ok(run("convert-cfg", tmp_path / "OUTCAR", db, "--input-format=vasp-outcar"))
    ok(run("filter-nonconv", db))
    assert [c.features["EFS_by"] for c in read_cfg(db)] == ["VASP", "VASP"]


# --------------------------------------------------------------------------- subsample
def test_subsample(golden, tmp_path):
    res = ok(run("subsample", golden("efs_set_Mo.cfg"), tmp_path / "out.cfg", 5))
    assert "Written 5 configurations" in res.stdout
    src = golden("efs_set_Mo.txt.cfg").read_text().split("BEGIN_CFG")[1:]
    assert (tmp_path / "out.cfg").read_text() == "".join("BEGIN_CFG" + b for b in src[::5])
    assert run("subsample", golden("efs_set_Mo.cfg"), tmp_path / "o2.cfg", 0).exit_code == 2


# --------------------------------------------------------------------------- replicate-cell
def test_replicate_cell_diagonal(golden, tmp_path):
    src = golden("efs_test_Mo_l08.cfg")
    ok(run("replicate-cell", src, tmp_path / "out.cfg", 2, 1, 3))
    a, b = read_cfg(src), read_cfg(tmp_path / "out.cfg")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(y) == 6 * len(x)
        np.testing.assert_allclose(y.lattice, np.diag([2, 1, 3]) @ x.lattice, atol=1e-6)
        assert y.energy == pytest.approx(6 * x.energy, abs=1e-9)
        np.testing.assert_allclose(y.plus_stress, 6 * x.plus_stress, atol=1e-4)
        np.testing.assert_allclose(y.forces, np.tile(x.forces, (6, 1)), atol=1e-6)
        assert y.features == x.features


def test_replicate_general_matrix(rng):
    lat = np.array([[3.0, 0.1, 0.0], [0.2, 3.2, 0.0], [0.1, 0.3, 2.9]])
    cfg = Configuration(lattice=lat, positions=rng.uniform(0, 1, (3, 3)) @ lat, types=[0, 1, 1],
                        energy=-3.0)
    m = np.array([[1, 1, 0], [-1, 1, 0], [0, 0, 2]])
    sup = replicate(cfg, m)
    assert len(sup) == 4 * len(cfg) and sup.energy == -12.0
    np.testing.assert_allclose(sup.lattice, m @ lat)
    # every image position is a lattice translate of an original atom, and all are distinct
    frac = np.linalg.solve(lat.T, (sup.positions - np.tile(cfg.positions, (4, 1))).T).T
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    sfrac = np.linalg.solve(sup.lattice.T, sup.positions.T).T % 1.0
    assert len(np.unique(np.round(sfrac, 6), axis=0)) == len(sup)
    assert mindist(sup) == pytest.approx(mindist(cfg))


def test_replicate_cell_nine_integers_equal_three(golden, tmp_path):
    src = golden("triclinic_one_Mo.cfg")
    ok(run("replicate-cell", src, tmp_path / "a.cfg", 2, 2, 1))
    ok(run("replicate-cell", src, tmp_path / "b.cfg", 2, 0, 0, 0, 2, 0, 0, 0, 1))
    assert (tmp_path / "a.cfg").read_bytes() == (tmp_path / "b.cfg").read_bytes()
    assert run("replicate-cell", src, tmp_path / "c.cfg", 2, 2).exit_code == 2
    res = run("replicate-cell", src, tmp_path / "c.cfg", 1, 0, 0, 1, 0, 0, 0, 0, 1)
    assert res.exit_code == 1 and "singular" in res.stderr


def test_replicate_non_periodic_rows(tmp_path):
    slab = Configuration(lattice=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], positions=[[0, 0, 0]], types=[0])
    assert len(replicate(slab, [2, 2, 1])) == 4
    with pytest.raises(Exception, match="not periodic"):
        replicate(slab, [1, 1, 2])


# --------------------------------------------------------------------------- undocumented
def test_to_bin_from_bin_fix_lattice(golden, tmp_path):
    ok(run("to-bin", golden("efs_set_Mo.cfg"), "ignored", tmp_path / "a.bin"))
    assert (tmp_path / "a.bin").read_bytes() == golden("efs_set_Mo.bin.cfg").read_bytes()
    ok(run("from-bin", tmp_path / "a.bin", tmp_path / "b.cfg"))
    assert (tmp_path / "b.cfg").read_bytes() == golden("efs_set_Mo.from_bin.cfg").read_bytes()
    ok(run("fix-lattice", golden("triclinic_one_Mo.cfg"), "x", tmp_path / "c.cfg"))
    assert (tmp_path / "c.cfg").read_bytes() == golden("triclinic_one_Mo.fixlattice.cfg").read_bytes()
    assert run("to-bin", golden("efs_set_Mo.cfg")).exit_code == 2


def test_fix_cfg_and_invert_stress(golden, tmp_path):
    db = copy(golden("efs_set_Mo.bin.cfg"), tmp_path / "db.cfg")
    ok(run("fix-cfg", db))
    assert db.read_bytes() == golden("efs_set_Mo.txt.cfg").read_bytes()
    db2 = copy(golden("efs_test_Mo_l08.cfg"), tmp_path / "db2.cfg")
    ok(run("fix-cfg", db2, "--no-loss"))
    a, b = read_cfg(golden("efs_test_Mo_l08.cfg")), read_cfg(db2)
    assert all((x.positions == y.positions).all() for x, y in zip(a, b))
    res = ok(run("invert-stress", db2))
    assert f"Inverted the stress of {len(a)} of {len(a)}" in res.stdout
    assert all((y.plus_stress == -x.plus_stress).all() for x, y in zip(a, read_cfg(db2)))


def test_to_poscar(upstream, tmp_path):
    d = upstream("convert-cfg", "05.convert-cfg")
    ok(run("to-poscar", d / "input.bin.cfg", tmp_path / "P"))
    for i in range(4):
        assert (tmp_path / f"P{i}").read_bytes() == (d / f"correct_POSCAR{i}").read_bytes()


def test_add_from_outcar(upstream, tmp_path):
    outcar = upstream("00.convert_vasp_outcar", "OUTCAR")
    db = tmp_path / "db.cfg"
    ok(run("add-from-outcar-dyn", db, outcar))
    assert db.read_bytes() == upstream("00.convert_vasp_outcar", "out_this_build", "relax.cfg").read_bytes()
    ok(run("add-from-outcar-last", db, outcar, outcar))
    cfgs = read_cfg(db)
    assert len(cfgs) == 5
    assert format_cfg(cfgs[3]) == format_cfg(cfgs[2]) == format_cfg(cfgs[4])


def test_compress_extend(golden, tmp_path):
    ok(run("compress-extend", golden("efs_test_Mo_l08.cfg"), tmp_path / "out.cfg"))
    first = read_cfg(golden("efs_test_Mo_l08.cfg"))[0]
    cfgs = read_cfg(tmp_path / "out.cfg")
    assert len(cfgs) == 21
    assert all(c.energy is None and c.forces is None and c.plus_stress is None for c in cfgs)
    np.testing.assert_allclose(cfgs[0].lattice, 0.9 * first.lattice, atol=1e-6)
    np.testing.assert_allclose(cfgs[10].positions, first.positions, atol=1e-6)
    np.testing.assert_allclose(cfgs[20].positions, 1.1 * first.positions, atol=1e-6)


def test_mindist_tree_agrees_with_direct_search(rng):
    lat = np.array([[9.0, 0.3, 0.0], [0.5, 8.5, 0.2], [0.1, -0.4, 9.5]])
    cfg = Configuration(lattice=lat, positions=rng.uniform(-0.2, 1.2, (300, 3)) @ lat, types=np.zeros(300))
    direct = mindist(cfg, tree_above=10**9)
    assert mindist(cfg, tree_above=1) == pytest.approx(direct, rel=1e-15)
    slab = Configuration(lattice=[lat[0], lat[1], [0, 0, 0]], positions=cfg.positions, types=cfg.types)
    assert mindist(slab, tree_above=1) == pytest.approx(mindist(slab, tree_above=10**9), rel=1e-15)


def test_inplace_commands_refuse_other_formats(golden, tmp_path):
    ok(run("convert-cfg", golden("efs_set_Mo.cfg"), tmp_path / "a.xyz", "--type-map=Mo"))
    before = (tmp_path / "a.xyz").read_bytes()
    for cmd in ("mindist", "filter-nonconv", "fix-cfg", "invert-stress"):
        res = run(cmd, tmp_path / "a.xyz")
        assert res.exit_code == 1 and "convert-cfg" in res.stderr, cmd
    assert (tmp_path / "a.xyz").read_bytes() == before
    ok(run("mindist", tmp_path / "a.xyz", "--no-overwrite"))


def test_mindist_hdf5_in_place(golden, tmp_path):
    ok(run("convert-cfg", golden("efs_set_Mo.cfg"), tmp_path / "a.h5"))
    res = ok(run("mindist", tmp_path / "a.h5"))
    assert res.stdout == golden("mindist_efs_set_Mo.stdout").read_text()
    ok(run("convert-cfg", tmp_path / "a.h5", tmp_path / "b.cfg"))
    assert (tmp_path / "b.cfg").read_bytes() == golden("mindist_efs_set_Mo.cfg").read_bytes()


def test_progress_printer(capsys):
    from mlip_py.cli._common import Progress

    p = Progress("read", interval=0.0, enabled=True)
    assert list(p(range(3))) == [0, 1, 2]
    p.done()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("read: 1 configurations") and err[-1].endswith("done")
    q = Progress("read", interval=0.0, enabled=False)
    list(q(range(3)))
    q.done()
    assert capsys.readouterr().err == "" and q.count == 3


def test_quiet_flag_silences_progress(golden, tmp_path, monkeypatch):
    import mlip_py.cli._common as common

    seen = []
    real = common.Progress.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.append(self.enabled)

    monkeypatch.setattr(common.Progress, "__init__", spy)
    ok(run("-q", "convert-cfg", golden("triclinic_one_Mo.cfg"), tmp_path / "a.cfg"))
    ok(run("convert-cfg", golden("triclinic_one_Mo.cfg"), tmp_path / "b.cfg"))
    assert seen == [False, True]
