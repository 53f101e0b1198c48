"""MTP energies, forces and PlusStress against the original MLIP-2 ``mlp calc-efs`` outputs.

golden/README.md "calc-efs" and "mlearn": lossless outputs (16 significant digits) are
compared with energy 1e-10 relative and forces / PlusStress 1e-8 absolute; the
default-precision outputs (energy %20.12f, forces %11.6f, stress %11.5f) at their
printed precision.
"""
import numpy as np
import pytest

from refdata import shared_file
from mlip_py.io.cfg import read_cfg
from mlip_py.potential.mtp import MTP

LOSSLESS = [
    ("Mo_l08.mtp", "efs_set_Mo.cfg", "efs_Mo_l08.lossless.cfg"),
    ("Mo_l10.mtp", "efs_set_Mo.cfg", "efs_Mo_l10.lossless.cfg"),
    ("NaCl_l08.mtp", "efs_set_NaCl.cfg", "efs_NaCl_l08.lossless.cfg"),
    ("PdAg_20g_str.mtp", "efs_set_PdAg_3sp.cfg", "efs_PdAg_20g_3sp.lossless.cfg"),
    ("untrained_08_Mo.mtp", "efs_set_Mo.cfg", "efs_Mo_untrained08.lossless.cfg"),
]
PRINTED = [
    ("Mo_l08.mtp", "test_Mo.cfg", "efs_test_Mo_l08.cfg"),
    ("NaCl_l08.mtp", "train_NaCl.cfg", "efs_train_NaCl_l08.cfg"),
]


def compare(mtp, inputs, expected, f_tol, s_tol):
    assert len(inputs) == len(expected) > 0
    for k, (cfg, ref) in enumerate(zip(inputs, expected)):
        e, f, s, site = mtp.calc_efs(cfg)
        what = f"configuration {k + 1} {cfg.features.get('desc', '')}"
        assert e == pytest.approx(ref.energy, rel=1e-10, abs=1e-12), what
        assert site.sum() == pytest.approx(e, rel=1e-13, abs=1e-13), what
        np.testing.assert_allclose(f, ref.forces, rtol=0, atol=f_tol, err_msg=what)
        np.testing.assert_allclose(s, ref.plus_stress, rtol=0, atol=s_tol, err_msg=what)


@pytest.mark.golden
@pytest.mark.parametrize("pot,inp,out", LOSSLESS)
def test_calc_efs_lossless(golden, pot, inp, out):
    mtp = MTP(golden(pot))
    compare(mtp, read_cfg(golden(inp)), read_cfg(golden(out)), 1e-8, 1e-8)


@pytest.mark.golden
@pytest.mark.parametrize("pot,inp,out", PRINTED)
def test_calc_efs_printed_precision(golden, pot, inp, out):
    mtp = MTP(golden(pot))
    compare(mtp, read_cfg(golden(inp)), read_cfg(golden(out)), 5e-7 + 1e-9, 5e-6 + 1e-8)


@pytest.mark.golden
@pytest.mark.parametrize("element", ["Ni", "Mo"])
def test_mlearn_level20(golden, element):
    pot = shared_file("data", "mlearn", f"{element}_Zuo2020_maml_mtp.2020.01.mtp")
    mtp = MTP(pot)
    compare(mtp, read_cfg(golden("mlearn", f"{element}_test_nolabels.cfg")),
            read_cfg(golden("mlearn", f"efs_mlearn_{element}_test.lossless.cfg")), 1e-8, 1e-8)


@pytest.mark.golden
def test_golden_special_cases(golden):
    """Isolated atom = species coefficient; equivalent cells give equal energy per atom."""
    mtp = MTP(golden("Mo_l08.mtp"))
    cfgs = {c.features["desc"]: c for c in read_cfg(golden("efs_set_Mo.cfg"))}
    e = mtp.calc_efs(cfgs["isolated_atom"])[0]
    assert e == mtp.params.species_coeffs[0]
    per_atom = [mtp.calc_efs(c)[0] / len(c) for d, c in cfgs.items()
                if d.startswith(("conventional_cubic", "primitive_cell", "unwrapped", "rotated"))]
    assert len(per_atom) == 4
    np.testing.assert_allclose(per_atom, -10.845298130532, rtol=0, atol=1e-11)
