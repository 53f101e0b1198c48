"""The number kernels agree bit for bit with Python's float() and C printf."""
import glob

import numpy as np
import pytest

import mlip_py.io.cfg as cfgmod
from refdata import GOLDEN
from mlip_py._cext import load

k = load("_cfgparse")


def _values(rng, n):
    bits = rng.integers(0, 2**63, n, dtype=np.int64) | (rng.integers(0, 2, n, dtype=np.int64) << 63)
    raw = bits.view(np.float64)
    raw = raw[np.isfinite(raw)]
    return np.concatenate([
        raw, rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, n), rng.normal(size=n) * 10,
        np.round(rng.normal(size=n), 6), np.round(rng.normal(size=n), 7) + 5e-7,
        rng.integers(0, 10**17, n) / 1e16,
        [0.0, -0.0, 0.5e-6, 2.5e-6, -2.5e-6, 1.5, 0.125, 1e300, -1e-300, 5e-324, 1e23, 9.5],
    ]).tolist()


def test_fixed_formatting_matches_printf(rng):
    vals = _values(rng, 20000)
    for width, prec in [(13, 6), (17, 12), (11, 6), (8, 4), (20, 12), (11, 5)]:
        bad = [x for x in vals if k.format_fixed(x, width, prec).decode() != "%*.*f" % (width, prec, x)]
        assert bad == []
    assert k.format_fixed(float("-nan"), 13, 6) == b"         -nan"
    assert k.format_fixed(float("-inf"), 11, 5) == b"       -inf"


def test_scientific_formatting_matches_printf(rng):
    vals = _values(rng, 20000)
    assert [x for x in vals if k.format_sci(x).decode() != "%.16e" % x] == []
    assert k.format_sci(float("-nan")) == b"-nan"


def test_parsing_matches_float(rng):
    vals = _values(rng, 10000)
    toks = ["%.16e" % x for x in vals] + [repr(x) for x in vals] + ["%.6f" % x for x in vals[:5000]]
    digits = rng.integers(0, 10, (20000, 19))
    exps = rng.integers(-40, 40, 20000)
    for i in range(20000):
        nd = 1 + i % 19
        frac = "." + "".join(map(str, digits[i, nd:])) if i % 3 else ""
        toks.append("".join(map(str, digits[i, :nd])) + frac + f"e{exps[i]}")
    toks += ["9007199254740993", "18014398509481985", "2.2250738585072011e-308", "1e23",
             "0.1000000000000000055511151231257827", "-0", "+.5e-3", "5.", "-nan", "Infinity"]
    # tokens of 80 characters or more (e.g. '%.6f' of 1e300) are handed back to the
    # Python caller, which converts them with float(): checked separately below
    toks = [t for t in toks if len(t) < 80]
    data = ("\n".join(toks) + "\n").encode()
    out = np.empty((len(toks), 1))
    status = k.parse_rows(data, 0, True, out, 0, 0)
    assert status[0] == k.STATUS["done"] and status[4] == len(toks)
    ref = np.array([float(t) for t in toks])
    assert np.flatnonzero(ref.view(np.int64) != out[:, 0].view(np.int64)).tolist() == []
    long = ("%.6f" % 1e300).encode()
    status = k.parse_rows(b"1 " + long + b"\n", 0, True, np.empty((1, 2)), 0, 0)
    assert status[0] == k.STATUS["token"] and status[1:4] == (2, 0, 1)


def test_fast_and_general_parsers_agree_on_every_reference_file(monkeypatch):
    files = sorted(glob.glob(str(GOLDEN / "*.cfg*"))) + sorted(glob.glob(str(GOLDEN / "mlearn" / "*.cfg")))
    if not files:
        pytest.skip("reference data not available")
    fast = {f: [cfgmod.format_cfg_bytes(c, True) for c in cfgmod.read_cfg(f)] for f in files}
    monkeypatch.setattr(cfgmod._TextParser, "_read_fast", lambda self: None)
    for f in files:
        assert [cfgmod.format_cfg_bytes(c, True) for c in cfgmod.read_cfg(f)] == fast[f], f
