"""Every cfg the original mlp wrote is reproduced byte for byte by read + write.

Inputs that mlp did not write (training sets, candidate sets, efs_set_* inputs, perf
inputs, mlearn no-label sets; see golden/README.md) are excluded: their layout is not
MLIP's.  Lossless files (``*.lossless.cfg``, written by the lossless build) are compared in
lossless mode and must also round-trip every double bit-exactly.
"""
import io
import os
from pathlib import Path

import numpy as np
import pytest

from refdata import GOLDEN, UPSTREAM, shared_file
from mlip_py.io.cfg import format_cfg_bytes, iter_cfg, read_cfg, write_cfg
from mlip_py.io.cfgbin import format_cfgbin, iter_cfgbin, read_cfgbin, write_cfgbin

pytestmark = pytest.mark.golden

#: files in golden/ that are inputs (not written by mlp), see golden/README.md
GOLDEN_INPUTS = {
    "train_Mo.cfg", "test_Mo.cfg", "train_NaCl.cfg", "efs_set_Mo.cfg", "efs_set_NaCl.cfg",
    "efs_set_PdAg_3sp.cfg", "candidates_Mo_200.cfg", "relax_in_Mo.cfg", "relax_al_in_Mo.cfg",
    "triclinic_one_Mo.cfg",
    "efs_set_Mo.bin.cfg",  # binary, covered by the binary tests below
}


def _mlp_written_files():
    files = []
    if GOLDEN.is_dir():
        for p in sorted(GOLDEN.glob("*.cfg*")):
            if p.name not in GOLDEN_INPUTS:
                files.append(p)
        files += sorted((GOLDEN / "mlearn").glob("*.lossless.cfg"))
    if UPSTREAM.is_dir():
        files += sorted(UPSTREAM.glob("*/sample_out/*.cfg*"))
        files += sorted(UPSTREAM.glob("*/out_this_build/*.cfg*"))
        files += sorted(UPSTREAM.glob("convert-cfg/*/correct_output.cfg"))
    return files


FILES = _mlp_written_files()
IDS = [os.path.relpath(p, GOLDEN.parent) for p in FILES]


def _require_files():
    if not FILES:
        shared_file("reference", "mlip", "golden", "efs_Mo_l08.cfg")  # skips / fails under CI


def test_the_list_of_written_files_is_complete():
    _require_files()
    names = {p.name for p in FILES}
    for expected in ("efs_Mo_l08.cfg", "efs_Mo_l08.lossless.cfg", "graded_candidates_Mo_l08.cfg",
                     "diff_Mo_l08.cfg", "selected_NaCl_l08.cfg", "mindist_efs_set_Mo.cfg",
                     "preselected_Mo_l08.cfg", "relaxed_Mo_l08.cfg_0", "efs_set_Mo.txt.cfg",
                     "efs_set_Mo.fixlattice.cfg", "efs_set_Mo.from_bin.cfg",
                     "efs_mlearn_Ni_test.lossless.cfg", "calculated.cfg", "graded.cfg",
                     "to-be-computed-on-dft.cfg", "correct_output.cfg"):
        assert expected in names
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_read_write_is_byte_identical(path):
    lossless = ".lossless." in path.name
    data = path.read_bytes()
    cfgs = read_cfg(path)
    out = b"".join(format_cfg_bytes(c, lossless=lossless) for c in cfgs)
    assert out == data
    # the streaming writer gives the same bytes
    buf = io.BytesIO()
    assert write_cfg(buf, iter(cfgs), lossless=lossless) == len(cfgs)
    assert buf.getvalue() == data


def _bits(a):
    return None if a is None else np.asarray(a, dtype=np.float64).view(np.int64).tolist()


def _same_bits(a, b):
    for name in ("lattice", "positions", "forces", "plus_stress", "site_energies", "charges"):
        assert _bits(getattr(a, name)) == _bits(getattr(b, name)), name
    assert a.types.tolist() == b.types.tolist()
    assert _bits(a.energy) == _bits(b.energy)
    assert a.features == b.features


LOSSLESS = [p for p in FILES if ".lossless." in p.name]


@pytest.mark.parametrize("path", LOSSLESS, ids=[p.name for p in LOSSLESS])
def test_lossless_round_trip_is_bit_exact(path, tmp_path):
    cfgs = read_cfg(path)
    out = tmp_path / "x.cfg"
    write_cfg(out, cfgs, lossless=True)
    assert out.read_bytes() == path.read_bytes()
    for a, b in zip(cfgs, read_cfg(out), strict=True):
        _same_bits(a, b)
    # binary round trip keeps every bit as well
    for a, b in zip(cfgs, read_cfgbin(io.BytesIO(b"".join(format_cfgbin(c) for c in cfgs))),
                    strict=True):
        _same_bits(a, b)


def test_default_written_values_are_the_rounded_lossless_ones(golden):
    # the default and lossless outputs of the same run describe the same numbers
    full = read_cfg(golden("efs_Mo_l08.lossless.cfg"))
    assert b"".join(format_cfg_bytes(c) for c in full) == golden("efs_Mo_l08.cfg").read_bytes()


def test_text_to_binary_matches_mlp(golden):
    cfgs = read_cfg(golden("efs_set_Mo.cfg"))
    assert b"".join(format_cfgbin(c) for c in cfgs) == golden("efs_set_Mo.bin.cfg").read_bytes()


def test_binary_to_text_matches_mlp(golden, tmp_path):
    cfgs = read_cfgbin(golden("efs_set_Mo.bin.cfg"))
    assert len(cfgs) == 22
    out = tmp_path / "t.cfg"
    write_cfg(out, cfgs)
    assert out.read_bytes() == golden("efs_set_Mo.from_bin.cfg").read_bytes()
    # the text reader detects the binary records by itself (MLIP's txt input does too)
    again = read_cfg(golden("efs_set_Mo.bin.cfg"))
    assert b"".join(format_cfg_bytes(c) for c in again) == out.read_bytes()


def test_binary_write_via_file(golden, tmp_path):
    out = tmp_path / "b.cfg"
    assert write_cfgbin(out, iter_cfg(golden("efs_set_Mo.cfg"))) == 22
    assert out.read_bytes() == golden("efs_set_Mo.bin.cfg").read_bytes()


def test_upstream_convert_cfg_03_text_to_binary(upstream):
    d = upstream("convert-cfg", "03.convert-cfg")
    cfgs = read_cfg(d / "input.cfg")  # old BEGIN/END format
    assert b"".join(format_cfgbin(c) for c in cfgs) == (d / "correct_output.bin.cfg").read_bytes()


def test_upstream_convert_cfg_04_binary_to_text(upstream):
    d = upstream("convert-cfg", "04.convert-cfg")
    cfgs = list(iter_cfgbin(d / "input.bin.cfg"))
    assert len(cfgs) == 4 and cfgs[0].charges is not None
    assert b"".join(format_cfg_bytes(c) for c in cfgs) == (d / "correct_output.cfg").read_bytes()
    # and back to binary, byte-identical to the input
    assert b"".join(format_cfgbin(c) for c in cfgs) == (d / "input.bin.cfg").read_bytes()


def test_upstream_convert_cfg_08_outcar_to_binary(upstream):
    # test 08 has no input of its own: it converts 07's OUTCAR (default ISMEAR rules, like
    # 07) to binary.  Its binary output must decode to exactly 07's expected text output and
    # be reproduced byte for byte when written back.
    out08 = upstream("convert-cfg", "08.convert-cfg", "correct_output.bin.cfg")
    cfgs = read_cfgbin(out08)
    assert len(cfgs) == 1
    assert cfgs[0].features == {"EFS_by": "VASP"}
    expected = upstream("convert-cfg", "07.convert-cfg", "correct_output.cfg").read_bytes()
    assert format_cfg_bytes(cfgs[0]) == expected
    assert format_cfgbin(cfgs[0]) == out08.read_bytes()


def test_self_test_binary_sample(upstream):
    path = Path(upstream("..", "upstream_self_test", "configurations", "binary_sample.cfg"))
    (cfg,) = read_cfg(path)
    assert cfg.features == {"test_feature": "ABC"}
    assert cfg.plus_stress is not None and cfg.energy is None
    assert format_cfgbin(cfg) == path.read_bytes()


def test_upstream_convert_cfg_08_from_the_outcar_through_the_registry(upstream, tmp_path):
    pytest.importorskip("mlip_py.io.vasp")
    from mlip_py.io import read_configurations, write_configurations

    outcar = upstream("convert-cfg", "07.convert-cfg", "OUTCAR")
    out = tmp_path / "out.bin.cfg"
    assert write_configurations(out, read_configurations(outcar), fmt="bin") == 1
    assert out.read_bytes() == upstream("convert-cfg", "08.convert-cfg", "correct_output.bin.cfg").read_bytes()
