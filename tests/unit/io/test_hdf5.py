"""HDF5 configuration store: lossless round trip, append, lazy access, pickling, errors."""
import pickle

import h5py
import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import FormatError
from mlip_py.io.hdf5 import FORMAT, ConfigurationStore, iter_hdf5, read_hdf5, write_hdf5


def _random_cfgs(rng, n=30):
    out = []
    for k in range(n):
        size = int(rng.integers(0, 9))
        lat = rng.normal(size=(3, 3)) * 4
        if k % 5 == 1:
            lat[:] = 0.0  # cluster
        elif k % 5 == 2:
            lat[2] = 0.0  # slab
        cfg = Configuration(lattice=lat, positions=rng.normal(size=(size, 3)) * 3,
                            types=rng.integers(0, 3, size))
        if k % 2 == 0:
            cfg.energy = float(rng.normal()) * 1e3
        if k % 3 != 0:
            cfg.forces = rng.normal(size=(size, 3))
        if k % 4 == 0:
            cfg.plus_stress = rng.normal(size=6)
        if k % 6 == 0:
            cfg.site_energies = rng.normal(size=size)
        if k % 7 == 0:
            cfg.charges = rng.normal(size=size)
        cfg.features = {"z_last": f"v{k}", "EFS_by": "VASP", "multi line": "a\nb\tc ü"} if k % 2 else {}
        out.append(cfg)
    return out


def assert_same(a, b):
    assert np.array_equal(a.lattice, b.lattice)
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.types, b.types)
    assert a.energy == b.energy
    for name in ("forces", "plus_stress", "site_energies", "charges"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert np.array_equal(x, y), name
    assert list(a.features.items()) == list(b.features.items())


def test_round_trip_is_bit_exact(tmp_path, rng):
    cfgs = _random_cfgs(rng)
    path = tmp_path / "db.h5"
    assert write_hdf5(path, cfgs) == len(cfgs)
    back = read_hdf5(path)
    assert len(back) == len(cfgs)
    for a, b in zip(cfgs, back):
        assert_same(a, b)


def test_layout_and_attributes(tmp_path, rng):
    cfgs = _random_cfgs(rng, 5)
    path = tmp_path / "db.h5"
    write_hdf5(path, cfgs)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT
        assert int(f.attrs["format_version"]) == 1
        assert "virial" in f.attrs["units"]
        n_atoms = sum(len(c) for c in cfgs)
        assert f["offsets"].dtype == np.int64
        assert list(f["offsets"][:]) == [0, *np.cumsum([len(c) for c in cfgs])]
        assert f["positions"].shape == (n_atoms, 3)
        assert f["lattice"].shape == (5, 3, 3)
        assert f["positions"].chunks is not None and f["positions"].compression == "gzip"
        assert list(f["has_energy"][:]) == [c.energy is not None for c in cfgs]


def test_append(tmp_path, rng):
    cfgs = _random_cfgs(rng, 12)
    path = tmp_path / "db.h5"
    write_hdf5(path, cfgs[:5])
    write_hdf5(path, cfgs[5:], append=True)
    back = read_hdf5(path)
    assert len(back) == 12
    for a, b in zip(cfgs, back):
        assert_same(a, b)
    # appending to a missing file creates it
    write_hdf5(tmp_path / "new.h5", cfgs[:2], append=True)
    assert len(read_hdf5(tmp_path / "new.h5")) == 2


def test_store_lazy_access_and_pickle(tmp_path, rng):
    cfgs = _random_cfgs(rng, 25)
    path = tmp_path / "db.h5"
    write_hdf5(path, cfgs, block=7)  # several write blocks
    with ConfigurationStore(path, block=4) as store:
        assert len(store) == 25
        assert store.n_atoms == sum(len(c) for c in cfgs)
        assert list(store.sizes()) == [len(c) for c in cfgs]
        assert_same(store[3], cfgs[3])
        assert_same(store[-1], cfgs[-1])
        sl = store[5:11]
        assert len(sl) == 6
        for a, b in zip(sl, cfgs[5:11]):
            assert_same(a, b)
        for a, b in zip(store[1:20:6], cfgs[1:20:6]):
            assert_same(a, b)
        assert store[30:40] == []
        for a, b in zip(store, cfgs):  # iteration in blocks of 4
            assert_same(a, b)
        with pytest.raises(IndexError):
            store[25]
        clone = pickle.loads(pickle.dumps(store))
        assert len(clone) == 25
        assert_same(clone[12], cfgs[12])
        clone.close()


def test_wrong_format_attribute_is_format_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something.else"
        f.attrs["format_version"] = 1
    with pytest.raises(FormatError, match="other.h5") as err:
        list(iter_hdf5(path))
    assert "something.else" in str(err.value)
    with h5py.File(tmp_path / "noattr.h5", "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(FormatError, match="noattr.h5"):
        ConfigurationStore(tmp_path / "noattr.h5")


def test_wrong_version_is_format_error(tmp_path, rng):
    path = tmp_path / "db.h5"
    write_hdf5(path, _random_cfgs(rng, 2))
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(FormatError, match="version"):
        ConfigurationStore(path)
    with pytest.raises(FormatError, match="db.h5"):
        write_hdf5(path, _random_cfgs(rng, 1), append=True)


def test_not_hdf5_is_format_error(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("BEGIN_CFG\n")
    with pytest.raises(FormatError, match="text.h5"):
        ConfigurationStore(path)


def test_failed_write_leaves_existing_file(tmp_path, rng):
    cfgs = _random_cfgs(rng, 4)
    path = tmp_path / "db.h5"
    write_hdf5(path, cfgs)
    before = path.read_bytes()

    def broken():
        yield cfgs[0]
        raise FormatError("bad input", "in.cfg", 7)

    for append in (False, True):
        with pytest.raises(FormatError):
            write_hdf5(path, broken(), append=append, block=1)
        assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["db.h5"]  # no temporary left


def test_golden_training_set_round_trip(tmp_path, golden):
    from mlip_py.io.cfg import format_cfg, read_cfg

    src = golden("train_NaCl.cfg")
    cfgs = read_cfg(src)
    write_hdf5(tmp_path / "t.h5", cfgs)
    back = read_hdf5(tmp_path / "t.h5")
    assert "".join(format_cfg(c, lossless=True) for c in back) == \
        "".join(format_cfg(c, lossless=True) for c in cfgs)


def test_empty_store(tmp_path):
    path = tmp_path / "empty.h5"
    assert write_hdf5(path, []) == 0
    with ConfigurationStore(path) as store:
        assert len(store) == 0 and store.n_atoms == 0
        assert list(store) == [] and store[0:3] == []
    write_hdf5(path, [Configuration(positions=[[0, 0, 0]], types=[0])], append=True)
    assert len(read_hdf5(path)) == 1
