"""Binary cfg records: layout, round trips, errors."""
import io
import struct

import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.errors import FormatError
from mlip_py.io.cfg import read_cfg
from mlip_py.io.cfgbin import format_cfgbin, iter_cfgbin, read_cfgbin, write_cfgbin


def full_cfg(rng, n=5):
    return Configuration(
        lattice=rng.normal(size=(3, 3)), positions=rng.normal(size=(n, 3)),
        types=rng.integers(0, 4, n), energy=float(rng.normal()), forces=rng.normal(size=(n, 3)),
        plus_stress=rng.normal(size=6), site_energies=rng.normal(size=n), charges=rng.normal(size=n),
        features={"zeta": "last", "alpha": "first\nsecond", "": "empty key", "e": ""})


def test_layout_and_tag_order(rng):
    c = full_cfg(rng, 2)
    b = format_cfgbin(c)
    n = 2
    assert b[:5] == b"n" + struct.pack("<i", n)
    off = 5
    for tag, size in [(b"l", 72), (b"p", 24 * n), (b"t", 4 * n), (b"f", 24 * n), (b"v", 8 * n),
                      (b"c", 8 * n), (b"s", 48), (b"e", 8)]:
        assert b[off:off + 1] == tag
        off += 1 + size
    s = struct.unpack_from("<6d", b, off - 9 - 49 + 1)
    xx, yy, zz, yz, xz, xy = c.plus_stress
    assert s == (xx, yy, zz, xy, yz, xz)  # binary order xx yy zz xy yz xz
    # features sorted by key bytes, all of them (MLIP's binary writer skips none)
    keys = []
    p = off
    while b[p:p + 1] == b"F":
        (lk,) = struct.unpack_from("<i", b, p + 1)
        keys.append(b[p + 5:p + 5 + lk])
        (lv,) = struct.unpack_from("<i", b, p + 5 + lk)
        p += 9 + lk + lv
    assert keys == [b"", b"alpha", b"e", b"zeta"]
    assert b[p:] == b"#"


def test_round_trip_is_exact(rng, tmp_path):
    cfgs = [full_cfg(rng, n) for n in (0, 1, 7)]
    cfgs.append(Configuration(positions=rng.normal(size=(3, 3)), types=[0, 1, 2]))
    path = tmp_path / "x.bin.cfg"
    assert write_cfgbin(path, iter(cfgs)) == 4
    back = read_cfgbin(path)
    assert len(back) == 4
    for a, b in zip(cfgs, back):
        for name in ("lattice", "positions", "forces", "plus_stress", "site_energies", "charges"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None)
            if x is not None:
                assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
        assert a.types.tolist() == b.types.tolist() and b.types.dtype == np.int64
        assert a.energy == b.energy
        assert b.features == {k: v for k, v in sorted(a.features.items())}
    assert format_cfgbin(back[2]) == format_cfgbin(cfgs[2])
    # the text reader reads binary files as well
    assert [len(c) for c in read_cfg(path)] == [0, 1, 7, 3]


def test_append(rng, tmp_path):
    path = tmp_path / "x.bin.cfg"
    write_cfgbin(path, [full_cfg(rng, 2)])
    write_cfgbin(path, [full_cfg(rng, 3)], append=True)
    assert [len(c) for c in read_cfgbin(path)] == [2, 3]


def test_tags_in_any_order_whitespace_and_default_types():
    rec = (b"  \n n" + struct.pack("<i", 1) + b" e" + struct.pack("<d", -1.5)
           + b"p" + struct.pack("<3d", 1, 2, 3) + b"\tl" + struct.pack("<9d", *range(9)) + b"#\n")
    (c,) = read_cfgbin(io.BytesIO(rec))
    assert c.energy == -1.5 and c.types.tolist() == [0]
    np.testing.assert_array_equal(c.positions, [[1, 2, 3]])
    np.testing.assert_array_equal(c.lattice, np.arange(9).reshape(3, 3))


@pytest.mark.parametrize("cut", [1, 3, 5, 20, 77, 100])
def test_truncated(rng, cut):
    b = format_cfgbin(full_cfg(rng, 2))
    with pytest.raises(FormatError) as info:
        read_cfgbin(io.BytesIO(b[:-cut]))
    assert "truncated" in info.value.message and "byte" in info.value.message


def test_unknown_tag_and_missing_records(rng):
    b = format_cfgbin(full_cfg(rng, 1))
    with pytest.raises(FormatError) as info:
        read_cfgbin(io.BytesIO(b[:-1] + b"Q#"))
    assert "unknown tag 'Q'" in info.value.message and f"byte {len(b) - 1}" in info.value.message
    rec = b"n" + struct.pack("<i", 1) + b"p" + struct.pack("<3d", 1, 2, 3) + b"#"
    with pytest.raises(FormatError) as info:
        read_cfgbin(io.BytesIO(rec))
    assert "lattice" in info.value.message
    with pytest.raises(FormatError) as info:
        read_cfgbin(io.BytesIO(b"n" + struct.pack("<i", -3) + b"#"))
    assert "negative" in info.value.message
    with pytest.raises(FormatError) as info:
        read_cfgbin(io.BytesIO(b"BEGIN_CFG\n"))
    assert "expected tag 'n'" in info.value.message


def test_streaming(rng):
    data = b"".join(format_cfgbin(full_cfg(rng, 50)) for _ in range(200))
    fh = io.BytesIO(data)
    gen = iter_cfgbin(fh, block_size=4096)
    next(gen)
    assert fh.tell() <= 2 * 4096 + len(data) // 200
    assert len(list(gen)) == 199
