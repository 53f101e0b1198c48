"""The format registry: detection, validation, dispatch, atomic and appending writes."""
import subprocess
import sys
import types

import numpy as np
import pytest

import mlip_py.io as mio
from mlip_py.configuration import Configuration
from mlip_py.errors import ConfigError, FormatError
from mlip_py.io import detect_format, iread_configurations, read_configurations, write_configurations


def cfgs(n=3):
    return [Configuration(lattice=np.eye(3) * 4, positions=[[0, 0, 0], [1, 1, 1]], types=[0, 1],
                          energy=-float(i), forces=np.full((2, 3), 0.5 * i), plus_stress=np.arange(6.0),
                          features={"i": str(i)}) for i in range(n)]


@pytest.mark.parametrize("name,fmt", [
    ("a.cfg", "txt"), ("a.cfgs", "txt"), ("relaxed.cfg_0", "txt"), ("noext", "txt"),
    ("x.bin.cfg", "txt"), ("a.h5", "hdf5"), ("a.HDF5", "hdf5"), ("a.xyz", "extxyz"),
    ("a.extxyz", "extxyz"), ("OUTCAR", "vasp-outcar"), ("run1/OUTCAR_relax", "vasp-outcar"),
    ("POSCAR", "vasp-poscar"), ("CONTCAR", "vasp-poscar"), ("triclinic.POSCAR", "vasp-poscar"),
])
def test_detect_by_name(name, fmt):
    assert detect_format(name) == fmt


def test_explicit_name_wins_and_is_validated():
    assert detect_format("a.xyz", "txt") == "txt"
    assert detect_format("a.cfg", "ase:vasp") == "ase:vasp"
    assert detect_format("a.cfg", "") == "txt"
    with pytest.raises(ConfigError) as info:
        detect_format("a.cfg", "xyz")
    msg = str(info.value)
    assert "'xyz'" in msg
    for name in ("txt", "bin", "hdf5", "extxyz", "vasp-outcar", "vasp-poscar", "lammps-datafile",
                 "lammps-dump", "ase:<fmt>"):
        assert name in msg
    with pytest.raises(ConfigError):
        detect_format("a.cfg", "ase:")


def test_hdf5_signature_is_sniffed(tmp_path):
    p = tmp_path / "data.dat"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    assert detect_format(p) == "hdf5"


def test_txt_and_bin_round_trip(tmp_path):
    data = cfgs()
    txt = tmp_path / "a.cfg"
    assert write_configurations(txt, iter(data)) == 3
    assert [c.energy for c in read_configurations(txt)] == [0.0, -1.0, -2.0]
    b = tmp_path / "a.bin"
    assert write_configurations(b, data, fmt="bin") == 3
    assert b.read_bytes()[:1] == b"n"
    back = read_configurations(b, fmt="bin")
    assert [c.features for c in back] == [{"i": "0"}, {"i": "1"}, {"i": "2"}]
    # txt input reads the binary file too (MLIP auto-detection)
    assert len(read_configurations(b)) == 3


def test_lossless_and_append(tmp_path):
    p = tmp_path / "a.cfg"
    write_configurations(p, cfgs(1), lossless=True)
    assert "0.0000000000000000e+00" in p.read_text()
    write_configurations(p, cfgs(2), append=True)
    assert [c.features["i"] for c in read_configurations(p)] == ["0", "0", "1"]
    write_configurations(p, cfgs(1)[0])  # a single Configuration is accepted
    assert len(read_configurations(p)) == 1


def test_generator_is_lazy_and_validates_early(tmp_path):
    with pytest.raises(ConfigError):
        iread_configurations(tmp_path / "a.cfg", fmt="nope")
    with pytest.raises(ConfigError) as info:
        iread_configurations(tmp_path / "POSCAR")
    assert "can only be written" in str(info.value)
    with pytest.raises(ConfigError) as info:
        write_configurations(tmp_path / "OUTCAR", cfgs())
    assert "can only be read" in str(info.value)
    gen = iread_configurations(tmp_path / "missing.cfg")
    with pytest.raises(FileNotFoundError):
        next(gen)


def test_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "a.cfg"
    write_configurations(p, cfgs(2))
    before = p.read_bytes()

    def broken():
        yield cfgs(1)[0]
        raise RuntimeError("oracle died")

    with pytest.raises(RuntimeError):
        write_configurations(p, broken())
    assert p.read_bytes() == before
    assert list(tmp_path.iterdir()) == [p]


def test_read_errors_are_format_errors(tmp_path):
    p = tmp_path / "bad.cfg"
    p.write_text("BEGIN_CFG\n Size\n    x\nEND_CFG\n")
    with pytest.raises(FormatError) as info:
        read_configurations(p)
    assert info.value.line == 3


@pytest.fixture
def fake_modules(monkeypatch):
    """Replace the format modules of the other helpers by recorders."""
    calls = []

    def rec(name, result=None):
        def f(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result
        return f

    mods = {
        "hdf5": {"iter_hdf5": rec("iter_hdf5", iter(["h"])), "write_hdf5": rec("write_hdf5", 7)},
        "vasp": {"iter_outcar": rec("iter_outcar", iter(["o"])), "write_poscar": rec("write_poscar")},
        "lammps": {"write_lammps_data": rec("write_lammps_data"),
                   "iter_lammps_dump": rec("iter_lammps_dump", iter(["d"])),
                   "write_lammps_dump": rec("write_lammps_dump", 5)},
        "asefmt": {"iter_ase": rec("iter_ase", iter(["a"])), "write_ase": rec("write_ase", 4)},
    }
    for name, funcs in mods.items():
        m = types.ModuleType(f"mlip_py.io.{name}")
        for fname, f in funcs.items():
            setattr(m, fname, f)
        monkeypatch.setitem(sys.modules, f"mlip_py.io.{name}", m)
        monkeypatch.setattr(mio, name, m, raising=False)
    return calls


def test_dispatch_reading(fake_modules):
    calls = fake_modules
    assert list(iread_configurations("x.h5")) == ["h"]
    assert list(iread_configurations("OUTCAR")) == ["o"]
    assert list(iread_configurations("d.txt", fmt="lammps-dump", type_map=["Cu"])) == ["d"]
    assert list(iread_configurations("a.xyz", type_map=["Mo"])) == ["a"]
    iread_configurations("a.traj", fmt="ase:traj", type_map=["Na", "Cl"])
    assert calls == [
        ("iter_hdf5", ("x.h5",), {}),
        ("iter_outcar", ("OUTCAR",), {}),
        ("iter_lammps_dump", ("d.txt",), {"type_map": ["Cu"]}),
        ("iter_ase", ("a.xyz", "extxyz", ["Mo"]), {}),
        ("iter_ase", ("a.traj", "traj", ["Na", "Cl"]), {}),
    ]


def test_dispatch_writing(fake_modules, tmp_path):
    calls = fake_modules
    data = cfgs(3)
    assert write_configurations("x.h5", data, append=True) == 7
    assert write_configurations("a.xyz", data, type_map=["Mo", "Nb"]) == 4
    assert write_configurations("a.traj", data, fmt="ase:traj", type_map=["Mo", "Nb"], append=True) == 4
    assert write_configurations("d", data, fmt="lammps-dump") == 5
    base = str(tmp_path / "POSCAR")
    assert write_configurations(base, iter(data), type_map=["Mo", "Nb"]) == 3
    assert write_configurations(base + "_one", data[:1], fmt="vasp-poscar") == 1
    assert write_configurations("data.lmp", data[:2], fmt="lammps-datafile") == 2
    assert write_configurations("none.lmp", [], fmt="lammps-datafile") == 0
    with pytest.raises(ConfigError):
        write_configurations(base, data, append=True)
    assert [(n, a[0]) for n, a, _ in calls] == [
        ("write_hdf5", "x.h5"), ("write_ase", "a.xyz"), ("write_ase", "a.traj"),
        ("write_lammps_dump", "d"),
        ("write_poscar", base + "0"), ("write_poscar", base + "1"), ("write_poscar", base + "2"),
        ("write_poscar", base + "_one"),
        ("write_lammps_data", "data.lmp0"), ("write_lammps_data", "data.lmp1"),
    ]
    assert calls[0][2] == {"append": True}
    assert calls[1][1][2:] == ("extxyz", ["Mo", "Nb"], False)
    assert calls[2][1][2:] == ("traj", ["Mo", "Nb"], True)
    assert calls[4][2] == {"type_map": ["Mo", "Nb"]}


def test_import_is_cheap():
    code = ("import sys, mlip_py.io; "
            "print(sorted(m for m in ('numpy', 'h5py', 'ase', 'scipy', 'mlip_py.io.cfg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
