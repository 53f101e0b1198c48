"""Untrained MTP templates (mlip_py.potential.templates) and ``mlp make-template``.

The generator must reproduce MLIP-2's shipped ``untrained_mtps/LL.mtp`` exactly (every
index of every list), the shipped ``configs/untrained/LL.mtp`` must be its output, and
independently of MLIP-2 the basis functions must be rotation-invariant contractions
whose levels obey the level rule.
"""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from refdata import ROOT, shared_file
from mlip_py.cli.main import cli
from mlip_py.io.mtp import format_mtp, read_mtp
from mlip_py.potential.templates import LEVELS, basic_types, make_template, template_structure

FAST_LEVELS = [lv for lv in LEVELS if lv <= 24]
SLOW_LEVELS = [26, 28]


def upstream(level):
    return read_mtp(shared_file("reference", "mlip", "untrained_mtps", f"{level:02d}.mtp"))


def assert_same_structure(p, ref):
    assert p.alpha_moments_count == ref.alpha_moments_count
    assert p.radial_funcs_count == ref.radial_funcs_count
    np.testing.assert_array_equal(p.alpha_index_basic, ref.alpha_index_basic)
    assert p.alpha_index_times.shape == ref.alpha_index_times.shape
    np.testing.assert_array_equal(p.alpha_index_times, ref.alpha_index_times)
    np.testing.assert_array_equal(p.alpha_moment_mapping, ref.alpha_moment_mapping)


@pytest.mark.golden
@pytest.mark.parametrize("level", FAST_LEVELS)
def test_reproduces_upstream_template(level):
    assert_same_structure(make_template(level), upstream(level))


@pytest.mark.golden
@pytest.mark.slow
@pytest.mark.parametrize("level", SLOW_LEVELS)
def test_reproduces_upstream_template_large(level):
    assert_same_structure(make_template(level), upstream(level))


@pytest.mark.parametrize("level", FAST_LEVELS)
def test_shipped_configs_are_generator_output(level):
    path = ROOT / "configs" / "untrained" / f"{level:02d}.mtp"
    assert path.read_text() == format_mtp(make_template(level))
    p = read_mtp(path)
    assert not p.is_trained and p.species_count == 1
    assert (p.min_dist, p.max_dist, p.radial_basis_size) == (2.0, 5.0, 8)


def test_sizes_table():
    # mlip-formats.md §3.4 (moments, basic, times, scalars, K) for a few levels
    table = {2: (1, 1, 0, 1, 1), 8: (18, 11, 14, 9, 2), 16: (350, 130, 969, 92, 4),
             20: (1352, 295, 6349, 288, 5)}
    for level, (nmom, nbasic, ntimes, nscal, k) in table.items():
        p = make_template(level)
        assert (p.alpha_moments_count, len(p.alpha_index_basic), len(p.alpha_index_times),
                p.alpha_scalar_moments, p.radial_funcs_count) == (nmom, nbasic, ntimes, nscal, k)
        assert p.n_params == k * 8 + 1 + nscal


def _moment_levels(p):
    lev = np.full(p.alpha_moments_count, -1)
    b = p.alpha_index_basic
    lev[:len(b)] = 2 + 4 * b[:, 0] + b[:, 1:].sum(axis=1)
    for i0, i1, mult, k in p.alpha_index_times:
        assert lev[i0] >= 0 and lev[i1] >= 0 and mult >= 1
        assert lev[k] in (-1, lev[i0] + lev[i1])
        lev[k] = lev[i0] + lev[i1]
    return lev


@pytest.mark.parametrize("level", [2, 6, 12, 18])
def test_level_rule(level):
    p = make_template(level)
    lev = _moment_levels(p)
    assert (lev >= 0).all()
    basis = lev[p.alpha_moment_mapping]
    assert basis.max() <= level
    assert set(basis.tolist()) == set(range(2, level + 1, 2))
    assert len(set(p.alpha_moment_mapping.tolist())) == p.alpha_scalar_moments
    assert [tuple(t) for t in basic_types(level)] == sorted(
        {(mu, a + b + c) for mu, a, b, c in p.alpha_index_basic.tolist()})


def _basis_values(p, units, weights):
    """Basis functions for neighbour unit vectors (n_samples, n_nb, 3) and radial weights."""
    b = p.alpha_index_basic
    mom = np.zeros((p.alpha_moments_count, units.shape[0]))
    for i, (mu, a, bb, c) in enumerate(b):
        mom[i] = (weights[:, mu] * units[..., 0] ** a * units[..., 1] ** bb
                  * units[..., 2] ** c).sum(axis=1)
    for i0, i1, mult, k in p.alpha_index_times:
        mom[k] += mult * mom[i0] * mom[i1]
    return mom[p.alpha_moment_mapping]


@pytest.mark.parametrize("level", [8, 14, 20])
def test_basis_functions_are_rotation_invariant(level, rng):
    p = make_template(level)
    n_s, n_nb = 4, 7
    u = rng.standard_normal((n_s, n_nb, 3))
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    weights = rng.standard_normal((n_s, p.radial_funcs_count, n_nb))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    base = _basis_values(p, u, weights)
    rotated = _basis_values(p, u @ q.T, weights)
    np.testing.assert_allclose(rotated, base, rtol=1e-9, atol=1e-9 * np.abs(base).max())
    # the check is not vacuous: a vector moment (here M_{0,1} x) does change
    vec = p.copy()
    vec.alpha_moment_mapping = np.array([1])
    assert not np.allclose(_basis_values(vec, u @ q.T, weights), _basis_values(vec, u, weights))


def test_species_count_only_changes_species_fields():
    p1, p3 = make_template(10), make_template(10, species_count=3, min_dist=1.5, max_dist=6.0,
                                             radial_basis_size=6, potential_name="X")
    assert_same_structure(p3, p1)
    assert (p3.species_count, p3.min_dist, p3.max_dist, p3.radial_basis_size,
            p3.potential_name) == (3, 1.5, 6.0, 6, "X")
    assert p3.n_params == 9 * 3 * 6 + 3 + 16
    assert not p3.is_trained


def test_structure_results_are_copies():
    a = template_structure(8)[2]
    a[:] = -1
    assert (template_structure(8)[2] >= 0).all()


@pytest.mark.parametrize("level", [0, 1, 3, 30, -2, 2.5, True])
def test_bad_level(level):
    with pytest.raises(ValueError, match="even integer in 2..28"):
        make_template(level)


@pytest.mark.parametrize("kw", [dict(species_count=0), dict(radial_basis_size=0),
                                dict(min_dist=5.0, max_dist=5.0), dict(radial_basis_type="RBX"),
                                dict(potential_name="a b"), dict(min_dist=float("nan"))])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        make_template(8, **kw)


# ----------------------------------------------------------------------------- CLI
def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_writes_template(tmp_path):
    out = tmp_path / "t.mtp"
    res = run("make-template", "--level=16", "--species=2", "--min-dist=2.2",
              "--max-dist=5.5", "--radial-basis-size=10", str(out))
    assert res.exit_code == 0, res.output
    p = read_mtp(out)
    assert res.output == f"Wrote level-16 MTP template (2 species, n_params={p.n_params}) to {out}\n"
    assert p.n_params == 4 * 4 * 10 + 2 + 92
    expected = make_template(16, species_count=2, min_dist=2.2, max_dist=5.5, radial_basis_size=10)
    assert out.read_text() == format_mtp(expected)


def test_cli_options(tmp_path):
    out = tmp_path / "t.mtp"
    res = run("make-template", "--level", "4", "--radial-basis-type", "RBChebyshev_repuls",
              "--potential-name", "Mine", str(out))
    assert res.exit_code == 0, res.output
    p = read_mtp(out)
    assert (p.radial_basis_type, p.potential_name, p.species_count) == ("RBChebyshev_repuls",
                                                                        "Mine", 1)


@pytest.mark.parametrize("args", [["--level=15"], ["--level=30"], ["--level=0"], ["--level=x"],
                                  [], ["--level=8", "--species=0"],
                                  ["--level=8", "--min-dist=5", "--max-dist=4"],
                                  ["--level=8", "--radial-basis-size=0"],
                                  ["--level=8", "--radial-basis-type=RBShapeev"],
                                  ["--level=8", "--potential-name=a b"]])
def test_cli_usage_errors(args, tmp_path):
    out = tmp_path / "t.mtp"
    res = run("make-template", *args, str(out))
    assert res.exit_code == 2, res.output
    assert not out.exists()


def test_cli_does_not_clobber_on_failure(tmp_path):
    out = tmp_path / "t.mtp"
    out.write_text("keep")
    res = run("make-template", "--level=7", str(out))
    assert res.exit_code == 2 and out.read_text() == "keep"


def test_cli_unwritable_directory(tmp_path):
    res = run("make-template", "--level=4", str(Path(tmp_path) / "missing" / "t.mtp"))
    assert res.exit_code == 1
    assert "missing" in res.output
