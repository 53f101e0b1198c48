"""Reading and writing ``.mtp`` potential files (mlip_py.io.mtp).

Files written by MLIP-2's own writer must come back byte for byte; hand-edited files
(PdAg, learned/unlearned, the untrained golden inputs, the mlearn potentials) are
checked value by value against an independent regex extraction of their numbers.
"""
import re

import numpy as np
import pytest

from refdata import shared_file
from mlip_py.errors import FormatError
from mlip_py.io.mtp import format_mtp, parse_mtp, read_mtp, write_mtp
from mlip_py.potential.params import MTPParams

# written by MLIP-2's MLMTPR::Save (trained potentials)
WRITER_FILES = [
    ("golden", "Mo_l08.mtp"),
    ("golden", "Mo_l10.mtp"),
    ("golden", "NaCl_l08.mtp"),
    ("golden", "NaCl_l08_randominit.mtp"),
] + [("upstream_examples", d, "pot.mtp") for d in (
    "02.calc-efs", "03.calc-errors", "04.calc-grade", "05.select-add", "06.relax",
    "07.relax-active-learning")]

# hand-written or written by other tools: values must survive, layout differs
OTHER_FILES = [
    ("reference", "mlip", "golden", "PdAg_20g_str.mtp"),
    ("reference", "mlip", "datasets", "PdAg_20g_str.mtp"),
    ("reference", "mlip", "datasets", "learned.mtp"),
    ("reference", "mlip", "datasets", "unlearned.mtp"),
    ("reference", "mlip", "datasets", "unlearned3.mtp"),
    ("reference", "mlip", "golden", "untrained_08_Mo.mtp"),
    ("reference", "mlip", "golden", "untrained_08_NaCl.mtp"),
    ("reference", "mlip", "golden", "untrained_10_Mo.mtp"),
    ("reference", "mlip", "upstream_examples", "01.train", "06.mtp"),
    ("data", "mlearn", "Mo_Zuo2020_maml_mtp.2020.01.mtp"),
    ("data", "mlearn", "Ni_Zuo2020_maml_mtp.2020.01.mtp"),
]


def ref_path(*parts):
    return shared_file("reference", "mlip", *parts)


def same(p, q):
    """Field-by-field exact equality of two MTPParams."""
    for name in ("potential_name", "scaling", "species_count", "potential_tag",
                 "radial_basis_type", "min_dist", "max_dist", "radial_basis_size",
                 "radial_funcs_count", "alpha_moments_count"):
        assert getattr(p, name) == getattr(q, name), name
    for name in ("alpha_index_basic", "alpha_index_times", "alpha_moment_mapping",
                 "radial_coeffs", "species_coeffs", "moment_coeffs"):
        a, b = getattr(p, name), getattr(q, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape and np.array_equal(a, b), name


# ------------------------------------------------------------------ round trips
@pytest.mark.golden
@pytest.mark.parametrize("parts", WRITER_FILES, ids=lambda p: "/".join(p))
def test_writer_files_round_trip_byte_identical(parts, tmp_path):
    path = ref_path(*parts)
    original = path.read_bytes()
    params = read_mtp(path)
    assert params.is_trained
    assert format_mtp(params).encode() == original
    out = tmp_path / "out.mtp"
    write_mtp(out, params)
    assert out.read_bytes() == original


def _numbers_after(text, key):
    m = re.search(r"^\s*" + key + r"\s*=\s*\{([^}]*)\}", text, re.M)
    return [float(x) for x in m.group(1).split(",")] if m else None


@pytest.mark.golden
@pytest.mark.parametrize("parts", OTHER_FILES, ids=lambda p: p[-1])
def test_hand_edited_files_keep_every_value(parts, tmp_path):
    path = shared_file(*parts)
    text = path.read_text()
    p = read_mtp(path)
    # independent extraction of the values
    for key in ("min_dist", "max_dist"):
        assert getattr(p, key) == float(re.search(key + r"\s*=\s*(\S+)", text).group(1))
    scal = [float(x) for x in re.findall(r"scaling\s*=\s*(\S+)", text)]
    assert p.scaling == (np.prod(scal) if scal else 1.0)
    assert p.species_count == int(re.search(r"species_count\s*=\s*(\d+)", text).group(1))
    basic = [int(x) for x in re.findall(r"-?\d+", re.search(r"alpha_index_basic = (.*)", text).group(1))]
    assert p.alpha_index_basic.ravel().tolist() == basic
    if p.is_trained:
        rows = re.findall(r"^\s*\{([-+0-9.eE, ]+)\}\s*$", text, re.M)
        radial = np.array([[float(x) for x in r.split(",")] for r in rows])
        assert np.array_equal(p.radial_coeffs.reshape(-1, p.radial_basis_size), radial)
        assert p.species_coeffs.tolist() == _numbers_after(text, "species_coeffs")
        assert p.moment_coeffs.tolist() == _numbers_after(text, "moment_coeffs")
    else:
        assert p.radial_coeffs is None and p.species_coeffs is None and p.moment_coeffs is None
    # lossless writing keeps every double; the writer's own output is a fixed point
    q = parse_mtp(format_mtp(p, lossless=True))
    same(p, q)
    once = format_mtp(p)
    assert format_mtp(parse_mtp(once)) == once


def test_pdag_values_spot_check(golden):
    p = read_mtp(golden("PdAg_20g_str.mtp"))
    assert p.min_dist == 1.95 and p.max_dist == 5.0
    assert p.radial_basis_type == "RBChebyshev_repuls"
    assert p.species_count == 3 and p.radial_coeffs.shape == (3, 3, 5, 8)
    assert p.species_coeffs.tolist() == [-2.213750092380752, -1.469375005157891, -1.469375005157891]
    assert p.potential_name == "MTP47_20g"


def test_scaling_inside_radial_block_is_multiplied_in():
    text = ref_path("datasets", "unlearned.mtp").read_text()
    p = parse_mtp(text)
    assert p.scaling == 0.1
    both = text.replace("species_count", "scaling = 3\nspecies_count", 1)
    assert parse_mtp(both).scaling == 3 * 0.1
    out = format_mtp(p)
    assert "\nscaling = 1.000000000000000e-01\n" in out  # written globally, as MLIP-2 does


def test_lossless_round_trips_random_doubles_bit_exactly(rng):
    c, k, r = 2, 3, 5
    n_theta = c * c * k * r + c + 7
    bits = rng.integers(0, 2 ** 64, size=n_theta + 1, dtype=np.uint64)
    vals = bits.view(np.float64)
    vals = np.where(np.isfinite(vals), vals, rng.standard_normal(vals.size))
    vals[:4] = [5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 0.1]
    p = MTPParams(species_count=c, radial_funcs_count=k, radial_basis_size=r, scaling=vals[-1],
                  min_dist=float(np.nextafter(1.0, 2.0)), max_dist=5.0 + 1e-15,
                  alpha_moments_count=7, alpha_index_basic=[[mu, 0, 0, 0] for mu in range(k)],
                  alpha_index_times=[[0, 1, 1, 3], [0, 2, 1, 4], [1, 1, 1, 5], [0, 0, 2, 6]],
                  alpha_moment_mapping=list(range(7)))
    p.set_params(vals[:-1])
    q = parse_mtp(format_mtp(p, lossless=True))
    same(p, q)
    assert np.array_equal(p.get_params().view(np.uint64), q.get_params().view(np.uint64))
    # the MLIP-2 precision (16 significant digits) is within one unit of the 16th digit
    # (DBL_MAX itself rounds up to an overflowing 1.797693134862316e+308 there)
    theta = p.get_params()
    theta[2] = 1e308
    p.set_params(theta)
    q15 = parse_mtp(format_mtp(p))
    np.testing.assert_allclose(q15.get_params(), theta, rtol=1e-15, atol=0)


# ------------------------------------------------------------------------ writer
def test_writer_layout_of_untrained_potential():
    p = parse_mtp(ref_path("golden", "untrained_08_Mo.mtp").read_text())
    out = format_mtp(p)
    lines = out.split("\n")
    assert lines[:7] == ["MTP", "version = 1.1.0", "potential_name = MTP1m", "species_count = 1",
                         "potential_tag = ", "radial_basis_type = RBChebyshev",
                         "\tmin_dist = 1.800000000000000e+00"]
    assert "scaling" not in out and "radial_coeffs" not in out and "species_coeffs" not in out
    assert not out.endswith("\n")
    assert lines[-1] == "alpha_moment_mapping = {0, 10, 11, 12, 13, 14, 15, 16, 17}"
    assert "alpha_index_times = {{0, 0, 1, 11}, {1, 1, 1, 12}," in out


def test_writer_empty_times_list():
    p = MTPParams()
    assert "\nalpha_index_times_count = 0\nalpha_index_times = {}\n" in format_mtp(p)
    same(parse_mtp(format_mtp(p)), p)


def test_write_is_atomic_on_error(tmp_path):
    out = tmp_path / "x.mtp"
    out.write_text("old")
    p = MTPParams()
    p.alpha_index_basic = np.zeros((1, 3), dtype=np.int64)  # malformed: writer fails
    with pytest.raises(Exception):
        write_mtp(out, p)
    assert out.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.mtp"]


# ------------------------------------------------------------------------ reader
def test_crlf_extra_whitespace_and_template_comments():
    text = ref_path("golden", "untrained_08_Mo.mtp").read_text().replace("\r\n", "\n")
    ref = parse_mtp(text)
    messy = text.replace("\n", "\r\n").replace(" = ", "  =   ").replace(", ", " ,\t")
    same(parse_mtp(messy), ref)
    commented = (text.replace("species_count = 1", "species_count = 1 <<< number of components")
                 .replace("min_dist = 1.8", "min_dist = 1.8 <<< minimal distance, angstrom")
                 .replace("radial_basis_size = 8", "radial_basis_size = 8 <<< 8,6,10,4,12"))
    same(parse_mtp(commented), ref)


def test_upstream_templates_are_read():
    p = read_mtp(ref_path("untrained_mtps", "28.mtp"))
    assert p.alpha_moments_count == 17366 and p.alpha_index_times.shape == (180069, 4)
    assert p.alpha_scalar_moments == 2445 and p.radial_funcs_count == 6
    assert not p.is_trained


@pytest.mark.parametrize("name", ["MTP9.mtp", "MTP61.mtp"])
def test_old_rbshapeev_files_are_rejected_like_mlip2(name):
    # radial_funcs_count = 8 but only mu <= 1 / mu <= 3 are used: MLIP-2's loader refuses
    path = ref_path("datasets", name)
    with pytest.raises(FormatError, match="Wrong number of radial functions specified") as err:
        read_mtp(path)
    assert err.value.line == 9 and err.value.path == str(path)


def _trained_text():
    return ref_path("golden", "NaCl_l08.mtp").read_text()


def _untrained():
    return ref_path("golden", "untrained_08_Mo.mtp").read_text()


def _mutate(old, new, count=1):
    text = _trained_text()
    assert old in text
    return text.replace(old, new, count)


def _line_of(text, needle):
    return text[:text.index(needle)].count("\n") + 1


MALFORMED = [
    # (description, mutation -> text, expected line or callable, message regex)
    ("first line", lambda: _mutate("MTP\n", "MTPX\n"), 1, "expected 'MTP'"),
    ("version", lambda: _mutate("version = 1.1.0", "version = 1.0.0"), 2, 'version "1.1.0"'),
    ("missing species_count", lambda: _mutate("species_count = 2\n", ""), 5,
     r"expected 'species_count = \.\.\.', found 'potential_tag'"),
    ("bad min_dist", lambda: _mutate("min_dist = 2.2", "min_dist = 2.2x"), 8,
     "expected a number for 'min_dist', found '2.2x"),
    ("python-only float syntax", lambda: _mutate("min_dist = 2.2", "min_dist = 2_2"), 8,
     "expected a number"),
    ("bad integer", lambda: _mutate("radial_basis_size = 8", "radial_basis_size = 8.0"), 10,
     "expected an integer value of 'radial_basis_size'"),
    ("unknown radial basis", lambda: _mutate("RBChebyshev", "RBFoo"), 7, "unknown radial_basis_type"),
    ("max below min", lambda: _mutate("max_dist = 5.000000000000000e+00", "max_dist = 1"), 9,
     "must be larger than min_dist"),
    ("short radial row", lambda: _mutate(", 1.648295418184598e-02}", "}"), 14,
     r"expected 8 radial coefficients .* found 7"),
    ("wrong block label", lambda: _mutate("\t\t0-1\n", "\t\t1-0\n"), 16,
     "expected the radial coefficient block label '0-1', found '1-0'"),
    ("K vs max mu", lambda: _untrained().replace("radial_funcs_count = 2", "radial_funcs_count = 3"),
     10, "Wrong number of radial functions specified"),
    ("radial block shorter than K", lambda: _mutate("radial_funcs_count = 2", "radial_funcs_count = 3"),
     16, "expected '{' opening the list 'radial_coeffs 0-0', found '0-1'"),
    ("basic count", lambda: _mutate("alpha_index_basic_count = 11", "alpha_index_basic_count = 12"),
     27, "alpha_index_basic_count = 12 but alpha_index_basic has 11 entries"),
    ("basic entry width", lambda: _mutate("{0, 1, 0, 0}, ", "{0, 1, 0}, "), 27,
     "expected 4 integers per entry of 'alpha_index_basic'"),
    ("times count", lambda: _mutate("alpha_index_times_count = 14", "alpha_index_times_count = 15"),
     29, "alpha_index_times_count = 15 but alpha_index_times has 14 entries"),
    ("times index range", lambda: _mutate("{0, 15, 1, 17}", "{0, 18, 1, 17}"), 29,
     "alpha_index_times entry 14"),
    ("truncated times list", lambda: _mutate("{0, 15, 1, 17}}", "{0, 15, 1, 17}"), 30,
     "expected ',' or '}' in the list 'alpha_index_times', found 'alpha_scalar_moments'"),
    ("scalar count", lambda: _mutate("alpha_scalar_moments = 9", "alpha_scalar_moments = 8"), 31,
     "alpha_scalar_moments = 8 but alpha_moment_mapping has 9 entries"),
    ("species coeff count", lambda: _mutate("species_coeffs = {", "species_coeffs = {1.0, "), 32,
     r"expected 2 species_coeffs \(species_count\), found 3"),
    ("bad coefficient", lambda: _mutate("moment_coeffs = {", "moment_coeffs = {abc, "), 33,
     "expected a number in 'moment_coeffs', found 'abc'"),
    ("overflowing coefficient", lambda: _mutate("moment_coeffs = {", "moment_coeffs = {1e999, "), 33,
     "a number in 'moment_coeffs' overflows a double"),
    ("overflowing scaling", lambda: _mutate("scaling = 5.949668222563499e-02", "scaling = -1e400"), 4,
     "'scaling' = -1e400 overflows a double"),
    ("trailing garbage", lambda: _trained_text() + "\nfoo = 1", 34, "unexpected 'foo'"),
]


@pytest.mark.parametrize("desc,make,line,msg", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_name_the_line(desc, make, line, msg):
    text = make()
    with pytest.raises(FormatError, match=msg) as err:
        parse_mtp(text, path="pot.mtp")
    e = err.value
    assert e.path == "pot.mtp" and str(e).startswith(f"pot.mtp:{line}: ")
    assert e.line == line


def test_error_lines_inside_blocks():
    text = _mutate(", 3.029884142369842e-02", "")
    with pytest.raises(FormatError, match="block 0-1, found 7") as err:
        parse_mtp(text)
    assert err.value.line == _line_of(text, "{-1.873978964735938e-02")  # that radial row
    text = _mutate("{0, 15, 1, 17}", "{0, 15, x, 17}")
    with pytest.raises(FormatError, match="found 'x'") as err:
        parse_mtp(text)
    assert err.value.line == _line_of(text, "alpha_index_times =")


def test_truncated_file_reports_end_of_file():
    text = _trained_text()
    cut = text[:text.index("alpha_index_times_count")]
    with pytest.raises(FormatError, match="found end of file") as err:
        parse_mtp(cut, path="t.mtp")
    assert err.value.line == cut.count("\n") + 1
    with pytest.raises(FormatError, match="expected 'moment_coeffs"):
        parse_mtp(text[:text.index("moment_coeffs")])


def test_binary_garbage_is_a_format_error(tmp_path):
    path = tmp_path / "bad.mtp"
    path.write_bytes(b"MTP\nversion = 1.1.0\n\xff\xfe")
    with pytest.raises(FormatError, match="not a text file") as err:
        read_mtp(path)
    assert err.value.line == 3
