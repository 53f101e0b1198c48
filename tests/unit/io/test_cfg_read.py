"""Text cfg reader: every accepted construct, every error with its line, streaming."""
import io
import math

import numpy as np
import pytest

import mlip_py.io.cfg as cfgmod
from mlip_py.configuration import Configuration
from mlip_py.errors import FormatError
from mlip_py.io.cfg import escape_key, format_cfg, iter_cfg, read_cfg, unescape_key, write_cfg
from mlip_py.io.cfgbin import format_cfgbin

BASIC = """BEGIN_CFG
 Size
    2
 Supercell
         3.000000      0.000000      0.000000
         0.000000      3.000000      0.000000
         0.000000      0.000000      3.000000
 AtomData:  id type       cartes_x      cartes_y      cartes_z           fx          fy          fz
             1    0       0.000000      0.000000      0.000000     0.100000   -0.200000    0.300000
             2    1       1.500000      1.500000      1.500000    -0.100000    0.200000   -0.300000
 Energy
        -10.000000000000
 PlusStress:  xx          yy          zz          yz          xz          xy
         1.00000     2.00000     3.00000     4.00000     5.00000     6.00000
 Feature   EFS_by\tVASP
END_CFG

"""


@pytest.fixture(params=["fast", "general"])
def parse(request, monkeypatch):
    """Read text with the C fast path, or with it disabled (the general parser)."""
    if request.param == "general":
        monkeypatch.setattr(cfgmod._TextParser, "_read_fast", lambda self: None)

    def run(text):
        data = text.encode() if isinstance(text, str) else text
        return list(iter_cfg(io.BytesIO(data)))

    return run


def err(parse, text):
    with pytest.raises(FormatError) as info:
        parse(text)
    return info.value


# ------------------------------------------------------------------------ accepted input
def test_basic(parse):
    (c,) = parse(BASIC)
    assert c.types.tolist() == [0, 1]
    assert c.types.dtype == np.int64
    np.testing.assert_array_equal(c.positions, [[0, 0, 0], [1.5, 1.5, 1.5]])
    np.testing.assert_array_equal(c.forces, [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
    assert c.energy == -10.0
    np.testing.assert_array_equal(c.plus_stress, [1, 2, 3, 4, 5, 6])
    assert c.features == {"EFS_by": "VASP"}
    np.testing.assert_array_equal(c.lattice, 3 * np.eye(3))
    assert format_cfg(c) == BASIC


def test_columns_in_any_order_and_stress_components_in_any_order(parse):
    text = """BEGIN_CFG
Size 2
SuperCell 3 0 0 0 3 0 0 0 3
AtomData: fz type cartes_z charge fy cartes_x site_en fx cartes_y id
 3 1 0.3 0.5 2 0.1 -1.25 1 0.2 1
 6 0 0.6 -0.5 5 0.4 -2.5 4 0.5 2
Energy -1.5
PlusStress: xy xx zz yz xz yy
  6 1 3 4 5 2
END_CFG
"""
    (c,) = parse(text)
    np.testing.assert_array_equal(c.positions, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    np.testing.assert_array_equal(c.forces, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(c.site_energies, [-1.25, -2.5])
    np.testing.assert_array_equal(c.charges, [0.5, -0.5])
    assert c.types.tolist() == [1, 0]
    np.testing.assert_array_equal(c.plus_stress, [1, 2, 3, 4, 5, 6])
    out = format_cfg(c)
    assert " AtomData:  id type       cartes_x      cartes_y      cartes_z    site_en" \
           "           fx          fy          fz      charge\n" in out
    assert "             1    1       0.100000      0.200000      0.300000    -1.250000000000" \
           "     1.000000    2.000000    3.000000      0.5000\n" in out


def test_no_type_column_means_type_zero_and_no_id_column(parse):
    (c,) = parse("BEGIN_CFG Size 2 AtomData: cartes_x cartes_y cartes_z\n1 2 3\n4 5 6\nEND_CFG\n")
    assert c.types.tolist() == [0, 0]
    assert c.forces is None and c.energy is None and c.plus_stress is None
    assert not c.pbc.any()


@pytest.mark.parametrize("rows", [0, 1, 2, 3])
def test_zero_to_three_supercell_rows(parse, rows):
    lat = np.array([[3.0, 0.1, 0], [0.2, 4.0, 0], [0, 0.3, 5.0]])
    numbers = " ".join(repr(x) for x in lat[:rows].ravel().tolist())
    (c,) = parse(f"BEGIN_CFG\n Size\n 1\n Supercell {numbers}\n AtomData: id type cartes_x cartes_y "
                 f"cartes_z\n 1 0 0 0 0\nEND_CFG\n")
    expect = np.zeros((3, 3))
    expect[:rows] = lat[:rows]
    np.testing.assert_array_equal(c.lattice, expect)
    assert c.pbc.tolist() == [i < rows for i in range(3)]
    out = format_cfg(c)
    assert out.count("\n    ") == 2 + rows  # Size line + lattice rows + the atom row
    assert ("Supercell" in out) == (rows > 0)


def test_zero_row_between_nonzero_rows_is_written():
    c = Configuration(lattice=[[3, 0, 0], [0, 0, 0], [0, 0, 5]], positions=[[0, 0, 0]], types=[0])
    out = format_cfg(c)
    assert (" Supercell\n         3.000000      0.000000      0.000000\n"
            "         0.000000      0.000000      0.000000\n"
            "         0.000000      0.000000      5.000000\n") in out
    c.lattice[2] = 0
    assert format_cfg(c).split(" AtomData")[0].endswith(" Supercell\n         3.000000      0.000000      0.000000\n")


def test_direct_coordinates_are_converted_like_mlip(parse):
    lat = np.array([[3.1, 0.2, -0.1], [0.3, 2.9, 0.05], [-0.2, 0.1, 3.3]])
    frac = np.array([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    text = ("BEGIN_CFG\nSize\n3\nSupercell\n" + "\n".join(" ".join(repr(x) for x in r) for r in lat.tolist())
            + "\nAtomData: id type direct_x direct_y direct_z\n"
            + "\n".join(f"{i + 1} 0 {' '.join(repr(x) for x in f)}" for i, f in enumerate(frac.tolist()))
            + "\nEND_CFG\n")
    (c,) = parse(text)
    expect = [(0.0 + f[0] * lat[0]) + f[1] * lat[1] + f[2] * lat[2] for f in frac]
    assert np.asarray(c.positions).view(np.int64).tolist() == np.asarray(expect).view(np.int64).tolist()
    # 0 + (-0.0) = +0.0 as in MLIP's vector * matrix
    assert all(math.copysign(1, v) == 1 for v in c.positions[2])


def test_direct_coordinates_need_a_periodic_cell(parse):
    e = err(parse, "BEGIN_CFG\nSize\n1\nSupercell 3 0 0 0 3 0\nAtomData: id type direct_x direct_y "
                   "direct_z\n1 0 0.1 0.1 0.1\nEND_CFG\n")
    assert "fractional" in e.message and e.line is not None


def test_virial_is_divided_by_volume(parse):
    text = BASIC.replace(" PlusStress:", " Virial:")
    (c,) = parse(text)
    np.testing.assert_array_equal(c.plus_stress, np.arange(1, 7) * (1.0 / 27.0))


def test_feature_unescape_and_multiline(parse):
    text = BASIC.replace(" Feature   EFS_by\tVASP\n",
                         " Feature   my\\_key\\tx\tfirst line\n"
                         " Feature   my\\_key\\tx\tsecond  line \n"
                         " Feature   other value with spaces\n"
                         " Feature   empty\n"
                         " Feature   a\\b\tv\n")
    (c,) = parse(text)
    assert c.features == {"my key\tx": "first line\nsecond  line ", "other": "value with spaces",
                          "empty": "", "a\\b": "v"}
    feats = [ln for ln in format_cfg(c).split("\n") if ln.startswith(" Feature")]
    # sorted by bytes, keys escaped, the empty value dropped, multi-line values split
    assert feats == [" Feature   a\\b\tv",
                     " Feature   my\\_key\\tx\tfirst line", " Feature   my\\_key\\tx\tsecond  line ",
                     " Feature   other\tvalue with spaces"]


def test_feature_lines_written_like_mlip():
    c = Configuration(positions=[[0, 0, 0]], types=[0],
                      features={"b": "x\n\ny\n", "a b": "1", "": "ignored", "e": "", "Z": "z",
                                "\u00e9": "accent"})
    lines = format_cfg(c).split("\n")
    feats = [ln for ln in lines if ln.startswith(" Feature")]
    assert feats == [" Feature   Z\tz", " Feature   a\\_b\t1", " Feature   b\tx",
                     " Feature   b\t", " Feature   b\ty", " Feature   b\t",
                     " Feature   \u00e9\taccent"]
    (back,) = read_cfg(io.StringIO(format_cfg(c)))
    assert back.features == {"Z": "z", "a b": "1", "b": "x\n\ny\n", "\u00e9": "accent"}


def test_escape_unescape_inverse():
    for key in ["a b", "tab\there", "nl\nx", "cr\rx", "back\\slash", "\\_literal"]:
        if "\\_" in key:
            continue  # "\\_" is ambiguous in MLIP's scheme (backslash is not escaped)
        assert unescape_key(escape_key(key)) == key
    assert unescape_key("\\\\_") == "\\ "  # same left-to-right scan as MLIP


def test_legacy_features_block(parse):
    text = BASIC.replace(" Feature   EFS_by\tVASP\n", " Features:  alpha beta\n   one two\n")
    (c,) = parse(text)
    assert c.features == {"alpha": "one", "beta": "two"}


def test_old_format(parse):
    text = """BEGIN
Size\t2
Lattice
\t4.0 0.0 0.0
\t0.0 4.0 0.0
\t0.0 0.0 4.0
AtomPos
\t0.0 0.0 0.0
\t2.0 2.0 2.0
AtomTypes
\t0
\t1
AtomForces
\t0.1 0.2 0.3
\t-0.1 -0.2 -0.3
Energy\t-5.5
Stress 1 2 3 4 5 6
SiteEnergies -2.5 -3
Charges 1 -1
Feature from old_file
END
"""
    (c,) = parse(text)
    np.testing.assert_array_equal(c.lattice, 4 * np.eye(3))
    np.testing.assert_array_equal(c.positions, [[0, 0, 0], [2, 2, 2]])
    assert c.types.tolist() == [0, 1]
    np.testing.assert_array_equal(c.forces, [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    # old "Stress" xx yy zz xy yz xz, negated
    np.testing.assert_array_equal(c.plus_stress, [-1, -2, -3, -5, -6, -4])
    np.testing.assert_array_equal(c.site_energies, [-2.5, -3])
    np.testing.assert_array_equal(c.charges, [1, -1])
    assert c.energy == -5.5 and c.features == {"from": "old_file"}


def test_old_format_atmdata_and_minusstress(parse):
    text = ("BEGIN Size 1 Lattice 1 0 0 0 1 0 0 0 1 AtmData 0.5 0.5 0.5 1 2 3 "
            "MinusStress 1 2 3 4 5 6 END\n" + BASIC)
    c, d = parse(text)
    np.testing.assert_array_equal(c.forces, [[1, 2, 3]])
    np.testing.assert_array_equal(c.plus_stress, [1, 2, 3, 5, 6, 4])
    assert d.energy == -10.0


def test_old_format_errors(parse):
    e = err(parse, "BEGIN\nSize 2\nLattice 1 0 0 0 1 0 0 0 1\nAtomPos 0 0 0\nEND\n")
    assert "Size 2" in e.message and "1 positions" in e.message
    e = err(parse, "BEGIN\nAtomPos 0 0 0\nEND\n")
    assert "Lattice" in e.message
    e = err(parse, "BEGIN\nLattice 1 0 0 0 1 0 0 0 1\nAtomPos 0 0 0\nBogus\nEND\n")
    assert e.line == 4 and "Bogus" in e.message


@pytest.mark.parametrize("token,value", [("1e-05", 1e-05), ("-0.000000", -0.0), ("+.5", 0.5),
                                         ("5.", 5.0), ("1E+3", 1000.0), ("-nan", None),
                                         ("inf", math.inf), ("1_0", 10.0), ("1e400", math.inf),
                                         ("0.30000000000000004", 0.30000000000000004),
                                         ("2.2997000000000001e-01", 0.22997)])
def test_number_syntax_of_python_float(parse, token, value):
    (c,) = parse(f"BEGIN_CFG Size 1 AtomData: id type cartes_x cartes_y cartes_z\n"
                 f"1 0 {token} 0 0\nEND_CFG\n")
    x = c.positions[0, 0]
    ref = float(token)
    assert np.float64(x).view(np.int64) == np.float64(ref).view(np.int64)
    if value is not None:
        assert x == value or (math.isnan(x) and math.isnan(value))


def test_negative_zero_and_nan_sign_survive_a_round_trip(parse):
    text = ("BEGIN_CFG\n Size\n    1\n Supercell\n             -nan      0.000000     -0.000000\n"
            " AtomData:  id type       cartes_x      cartes_y      cartes_z\n"
            "             1    0      -0.000000           nan           inf\n END_CFG\n")
    (c,) = parse(text)
    assert math.copysign(1, c.positions[0, 0]) == -1
    out = format_cfg(c)
    assert "         -nan      0.000000     -0.000000\n" in out
    assert "      -0.000000           nan           inf\n" in out
    assert "-nan" in format_cfg(c, lossless=True)


def test_crlf_line_endings(parse):
    (c,) = parse(BASIC.replace("\n", "\r\n"))
    assert c.energy == -10.0 and c.positions.shape == (2, 3)
    assert c.features == {"EFS_by": "VASP\r"}  # getline keeps the CR, as in MLIP


def test_empty_configuration_and_no_trailing_newline(parse):
    text = "BEGIN_CFG\n Size\n    0\n AtomData:  id type       cartes_x      cartes_y      cartes_z\nEND_CFG"
    (c,) = parse(text)
    assert len(c) == 0 and c.positions.shape == (0, 3)
    assert format_cfg(c) == text + "\n\n"


def test_several_configurations_and_blank_lines(parse):
    cfgs = parse("\n\n" + BASIC + "\n   \n" + BASIC.replace("-10.0", "-11.0") + "\n")
    assert [c.energy for c in cfgs] == [-10.0, -11.0]


def test_binary_records_inside_a_text_file(parse):
    (c,) = parse(BASIC)
    c.features["k"] = "v"
    data = BASIC.encode() + format_cfgbin(c) + b"\n" + BASIC.encode() + format_cfgbin(c)
    out = parse(data)
    assert len(out) == 4
    assert out[1].features == {"EFS_by": "VASP", "k": "v"}
    np.testing.assert_array_equal(out[3].forces, c.forces)


def test_string_and_text_file_objects(tmp_path):
    (c,) = read_cfg(io.StringIO(BASIC))
    assert c.energy == -10.0
    p = tmp_path / "a.cfg"
    p.write_text(BASIC)
    with open(p) as fh:
        assert read_cfg(fh)[0].energy == -10.0


# ------------------------------------------------------------------------ errors
def test_stress_is_rejected_with_a_conversion_hint(parse):
    e = err(parse, BASIC.replace(" PlusStress:", " Stress:"))
    assert e.line == 13
    assert "PlusStress" in e.message and "negat" in e.message


def test_truncated_file(parse):
    e = err(parse, BASIC[:BASIC.index(" Energy")])
    assert "END_CFG" in e.message and "line 1" in e.message
    e = err(parse, BASIC[:BASIC.index("             2 ")])
    assert e.line == 10 and "1 of 2" in e.message
    e = err(parse, BASIC[:BASIC.index("-0.300000\n")])
    assert e.line == 10 and "expected 8 values, found 7" in e.message


def test_fewer_rows_than_size(parse):
    e = err(parse, BASIC.replace("    2\n", "    3\n", 1))
    assert e.line == 11
    assert "row 3 of 3" in e.message and "'Energy'" in e.message and "fewer rows than Size" in e.message


def test_more_rows_than_size(parse):
    e = err(parse, BASIC.replace("    2\n", "    1\n", 1))
    assert e.line == 10 and "unknown field '2'" in e.message and "more AtomData rows" in e.message


def test_size_mismatch_and_bad_size(parse):
    e = err(parse, BASIC.replace(" Energy", " Size 3\n Energy"))
    assert e.line == 11 and "does not match" in e.message
    e = err(parse, BASIC.replace("    2\n", "    2.5\n", 1))
    assert e.line == 3 and "integer" in e.message
    e = err(parse, BASIC.replace("    2\n", "    -1\n", 1))
    assert e.line == 3
    e = err(parse, "BEGIN_CFG\n AtomData: id type cartes_x cartes_y cartes_z\n 1 0 0 0 0\nEND_CFG\n")
    assert e.line == 2 and "Size" in e.message


def test_bad_numbers_in_atom_rows(parse):
    e = err(parse, BASIC.replace("-0.200000", "-0.2O0000"))
    assert e.line == 9 and "column fy" in e.message and "'-0.2O0000'" in e.message
    e = err(parse, BASIC.replace("1.500000      1.500000      1.500000", "1.500000      1.5x      1.5"))
    assert e.line == 10 and "column cartes_y" in e.message and "'1.5x'" in e.message


def test_bad_scalar_numbers(parse):
    e = err(parse, BASIC.replace("-10.000000000000", "-10.0.0"))
    assert e.line == 12 and "energy" in e.message and "'-10.0.0'" in e.message
    e = err(parse, BASIC.replace("5.00000", "5.0e"))
    assert e.line == 14 and "xz" in e.message


def test_too_many_values_on_a_row(parse):
    e = err(parse, BASIC.replace("0.300000\n", "0.300000 7\n", 1))
    assert e.line == 9 and "found more" in e.message and "'7'" in e.message


def test_wrong_id_order_and_non_integer_type(parse):
    e = err(parse, BASIC.replace("             2    1", "             3    1"))
    assert e.line == 10 and "wrong order of ids" in e.message
    e = err(parse, BASIC.replace("             2    1", "             2  1.5"))
    assert e.line == 10 and "integer" in e.message


@pytest.mark.parametrize("header,what", [
    ("id type cartes_x cartes_y cartes_w", "unknown AtomData column 'cartes_w'"),
    ("id type cartes_x cartes_y cartes_y", "given twice"),
    ("id type", "no atom positions"),
    ("id type cartes_x cartes_y direct_z", "wrong atom position"),
    ("id type cartes_x cartes_y cartes_z fx fy", "wrong force"),
    ("id type cartes_x cartes_y cartes_z nbh_grades", "unknown AtomData column 'nbh_grades'"),
])
def test_bad_atomdata_headers(parse, header, what):
    e = err(parse, f"BEGIN_CFG\nSize\n1\nAtomData: {header}\n1 0 0 0 0\nEND_CFG\n")
    assert e.line == 4 and what in e.message


def test_unknown_field_and_missing_end(parse):
    e = err(parse, BASIC.replace(" Energy", " Enrgy"))
    assert e.line == 11 and "unknown field 'Enrgy'" in e.message
    e = err(parse, BASIC.replace("END_CFG", "") + BASIC)
    assert e.line == 18 and "BEGIN_CFG" in e.message and "END_CFG" in e.message
    e = err(parse, "HELLO\n")
    assert e.line == 1 and "BEGIN_CFG" in e.message


def test_stress_header_errors(parse):
    e = err(parse, BASIC.replace("yz          xz          xy", "yz          xz"))
    assert e.line == 14 and "more values" in e.message
    e = err(parse, BASIC.replace("xz          xy", "xz          xq"))
    assert e.line == 13 and "'xq'" in e.message
    e = err(parse, BASIC.replace("     6.00000\n", "\n"))
    assert e.line == 15 and "xy" in e.message


def test_supercell_needs_whole_rows(parse):
    e = err(parse, BASIC.replace("         0.000000      0.000000      3.000000\n", "         0.000000\n"))
    assert e.line == 4 and "found 7" in e.message


def test_upstream_erroneous_files(upstream):
    from pathlib import Path

    d = Path(upstream("..", "upstream_self_test", "configurations", "errorneous"))
    expected_lines = {1: 138, 2: 139, 3: 8, 4: 8, 5: 8, 6: 11, 7: 10, 8: 10, 9: 12}
    for i, line in expected_lines.items():
        with pytest.raises(FormatError) as info:
            read_cfg(d / f"{i}.cfg")
        assert info.value.line == line, (i, str(info.value))
        assert info.value.path.endswith(f"{i}.cfg")


def test_error_names_the_file(tmp_path):
    p = tmp_path / "broken.cfg"
    p.write_text(BASIC.replace(" Energy", " Enrgy"))
    with pytest.raises(FormatError) as info:
        read_cfg(p)
    assert str(info.value).startswith(f"{p}:11: ")


# ------------------------------------------------------------------------ streaming
class CountingReader(io.RawIOBase):
    """A binary file object that records how many bytes were handed out."""

    def __init__(self, data):
        self.data = data
        self.served = 0

    def readable(self):
        return True

    def read(self, n=-1):
        if n is None or n < 0:
            n = len(self.data) - self.served
        chunk = self.data[self.served:self.served + n]
        self.served += len(chunk)
        return chunk


def _many(n_cfgs, n_atoms, rng):
    return [Configuration(lattice=np.eye(3) * 10, positions=rng.random((n_atoms, 3)) * 10,
                          types=rng.integers(0, 3, n_atoms), energy=float(i),
                          forces=rng.normal(size=(n_atoms, 3)), features={"i": str(i)})
            for i in range(n_cfgs)]


def test_streaming_yields_before_reading_the_whole_file(rng):
    buf = io.BytesIO()
    write_cfg(buf, _many(300, 50, rng))
    data = buf.getvalue()
    assert len(data) > 1_000_000
    src = CountingReader(data)
    gen = iter_cfg(src, block_size=1 << 14)
    first = next(gen)
    assert first.energy == 0.0
    assert src.served <= 2 * (1 << 14)  # one or two blocks, not the file
    tenth = [next(gen) for _ in range(9)][-1]
    assert tenth.energy == 9.0
    assert src.served < len(data) / 10
    rest = list(gen)
    assert len(rest) == 290 and src.served == len(data)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_tiny_blocks_give_the_same_result(rng, block):
    cfgs = _many(4, 9, rng)
    cfgs[1].plus_stress = np.arange(6.0)
    cfgs[2].site_energies = np.ones(9)
    text = "".join(format_cfg(c) for c in cfgs)
    data = (text + BASIC.replace(" PlusStress:", " Virial:")).encode() + format_cfgbin(cfgs[3])
    ref = list(iter_cfg(io.BytesIO(data)))
    got = list(iter_cfg(io.BytesIO(data), block_size=block))
    assert len(got) == len(ref) == 6
    for a, b in zip(ref, got):
        assert format_cfg(a, lossless=True) == format_cfg(b, lossless=True)


def test_error_line_numbers_with_tiny_blocks(parse):
    text = BASIC * 3 + BASIC.replace("-0.200000", "-0.2O0000")
    with pytest.raises(FormatError) as info:
        list(iter_cfg(io.BytesIO(text.encode()), block_size=5))
    assert info.value.line == 3 * 17 + 9
