""".als files: MLIP-2's byte layout field by field, round trips, errors, and our A versus
the original's A (same rows, last-bit differences only)."""
import struct

import numpy as np
import pytest

from mlip_py.errors import FormatError
from mlip_py.io.als import format_als, parse_als, read_als
from mlip_py.io.cfg import format_cfg, iter_cfg
from mlip_py.io.mtp import format_mtp
from mlip_py.selection.active_set import ActiveSet
from mlip_py.selection.rows import RowWeights

GOLDEN_ALS = ["Mo_l08.als", "Mo_l08_nbh.als", "Mo_l10.als", "NaCl_l08.als", "select_Mo_l08.als",
              "select_Mo_l08_lim5.als", "select_Mo_l08_structures.als", "select_Mo_l10.als",
              "select_NaCl_l08.als"]
UPSTREAM_ALS = ["04.calc-grade", "05.select-add"]


def als_paths(golden, upstream):
    return [golden(f) for f in GOLDEN_ALS] + [upstream(d, "sample_out", "state.als")
                                              for d in UPSTREAM_ALS]


def check_layout(data, state):
    """Walk the bytes of an .als file field by field against the decoded state."""
    n = state.params.n_params
    head = format_mtp(state.params).encode()
    assert data.startswith(head)
    assert not head.endswith(b"\n") and head.rstrip().endswith(b"}")
    pos = len(head)
    assert data[pos:pos + 2] == b"\n^"
    pos += 2
    w = struct.unpack_from("<4d", data, pos)
    assert w == (state.weights["nbh"], state.weights["energy"], state.weights["force"],
                 state.weights["stress"])
    pos += 32
    assert data[pos:pos + 2] == b"\n#"
    pos += 2
    a = np.frombuffer(data, "<f8", n * n, pos).reshape(n, n)
    np.testing.assert_array_equal(a, state.a)  # row-major A
    pos += 8 * n * n
    m = np.frombuffer(data, "<f8", n * n, pos).reshape(n, n)
    np.testing.assert_array_equal(m, state.inv_a.T)  # (A^-1)^T row-major
    pos += 8 * n * n
    assert data[pos:pos + 1] == b"\n"
    pos += 1
    for r in range(n):
        end = data.index(b"\n", pos)
        assert data[pos:end] == f"{r} {int(state.row_cfg[r])}".encode()
        pos = end + 1
    # cfg numbers: order of first appearance over the rows
    firsts = list(dict.fromkeys(state.row_cfg.tolist()))
    assert firsts == list(range(len(state.configurations)))
    for cfg in state.configurations:
        text = format_cfg(cfg, lossless=True).encode()
        assert data[pos:pos + len(text)] == text
        pos += len(text)
    assert pos == len(data)


def test_golden_files_parse_and_reformat_byte_identical(golden, upstream):
    for path in als_paths(golden, upstream):
        data = path.read_bytes()
        state = read_als(path)
        n = state.params.n_params
        assert state.a.shape == (n, n)
        # A (A^-1) = I as stored by MLIP-2
        assert np.abs(state.a @ state.inv_a - np.eye(n)).max() < 1e-6
        check_layout(data, state)
        assert format_als(state) == data, path.name
        # unfilled rows point at one shared empty configuration (Size 0, identity cell)
        for r, c in enumerate(state.row_cfg.tolist()):
            if len(state.configurations[c]) == 0:
                assert np.array_equal(state.a[r], np.eye(n)[r] * state.a[r, r])
                np.testing.assert_array_equal(state.configurations[c].lattice, np.eye(3))


def test_written_state_layout_and_round_trip(tmp_path, golden):
    aset = ActiveSet(golden("Mo_l08.mtp"))
    aset.select(lambda: iter_cfg(golden("train_Mo.cfg")))
    path = tmp_path / "s.als"
    aset.save(path)
    data = path.read_bytes()
    state = read_als(path)
    check_layout(data, state)
    np.testing.assert_array_equal(state.a, aset.maxvol.A)
    np.testing.assert_array_equal(state.inv_a, aset.maxvol.invA)
    again = ActiveSet.load(path)
    np.testing.assert_array_equal(again.maxvol.A, aset.maxvol.A)
    np.testing.assert_array_equal(again.maxvol.invA, aset.maxvol.invA)
    assert again.weights == aset.weights
    # same owners up to renumbering, same configurations per slot
    for c1, c2 in zip(again.slot_configurations(), aset.slot_configurations()):
        np.testing.assert_array_equal(c1.positions, c2.positions)
    assert format_als(again.state()) == data


@pytest.mark.parametrize("pot,train,ref,weights", [
    ("Mo_l08.mtp", "train_Mo.cfg", "Mo_l08.als", RowWeights()),
    ("Mo_l10.mtp", "train_Mo.cfg", "Mo_l10.als", RowWeights()),
    ("NaCl_l08.mtp", "train_NaCl.cfg", "NaCl_l08.als", RowWeights()),
    ("Mo_l08.mtp", "train_Mo.cfg", "Mo_l08_nbh.als", RowWeights(energy=0, nbh=1)),
])
def test_our_state_equals_original_but_last_bits(golden, pot, train, ref, weights):
    """Same layout and configurations byte for byte; A and A^-1 agree numerically."""
    aset = ActiveSet(golden(pot), weights)
    aset.select(lambda: iter_cfg(golden(train)))
    ours = format_als(aset.state())
    data = golden(ref).read_bytes()
    want = read_als(golden(ref))
    n = want.params.n_params
    i = data.index(b"\n#") + 2
    j = i + 16 * n * n
    assert len(ours) == len(data)
    assert ours[:i] == data[:i]
    assert ours[j:] == data[j:]
    st = aset.state()
    np.testing.assert_array_equal(st.row_cfg, want.row_cfg)
    scale_a = np.abs(want.a).max()
    scale_i = np.abs(want.inv_a).max()
    assert np.abs(st.a - want.a).max() <= 1e-12 * scale_a
    assert np.abs(st.inv_a - want.inv_a).max() <= 1e-8 * scale_i


def test_errors_name_file_and_position(golden, tmp_path):
    data = golden("Mo_l08.als").read_bytes()
    with pytest.raises(FormatError, match="no potential"):
        parse_als(b"hello", "x.als")
    with pytest.raises(FormatError, match="truncated"):
        parse_als(data[:2000], "x.als")
    i = data.index(b"\n#")
    with pytest.raises(FormatError, match="'\\\\n#'"):
        parse_als(data[:i] + b"\nX" + data[i + 2:], "x.als")
    n = 26
    k = i + 2 + 16 * n * n + 1
    bad = data[:k] + b"7 0\n" + data[k + 4:]
    with pytest.raises(FormatError, match="row map line 1"):
        parse_als(bad, "x.als")
    with pytest.raises(FormatError) as err:
        parse_als(data[:i], "x.als")
    assert str(err.value).startswith("x.als")
    with pytest.raises(FormatError, match="x.als: line 3 of the configurations after the row "
                                          "map: .*Size"):
        parse_als(data.replace(b" Size\n    54\n", b" Size\n    oops\n", 1), "x.als")
    with pytest.raises(FormatError, match="not UTF-8"):
        parse_als(data[:k] + b"\xff" + data[k + 1:], "x.als")
