"""The mlearn benchmark's own level-20 MTPs reproduce their published predictions.

``data/mlearn/<El>_test.mtp_reference.extxyz`` holds the test sets with the predictions
(``mtp_energy``, ``mtp_forces``, ``mtp_stress``) of ``<El>_Zuo2020_maml_mtp.2020.01.mtp``
(see data/mlearn/README.md).  Positions and forces there are printed with 8 decimals, so
forces agree to that rounding (5e-9 eV/A); energies to 1e-10 relative; stresses to
1e-8 eV/A^3 (= 1e-8 V eV in PlusStress units).
"""
import numpy as np
import pytest

from mlip_py.configuration import Configuration
from mlip_py.potential.mtp import MTP
from refdata import shared_file


@pytest.mark.parametrize("element", ["Ni", "Mo"])
def test_reference_predictions(element):
    import ase.io

    ref = shared_file("data", "mlearn", f"{element}_test.mtp_reference.extxyz")
    mtp = MTP(shared_file("data", "mlearn", f"{element}_Zuo2020_maml_mtp.2020.01.mtp"))
    frames = ase.io.read(ref, ":", format="extxyz")
    assert len(frames) > 20
    worst = np.zeros(3)
    for atoms in frames:
        cfg = Configuration(lattice=atoms.cell[:], positions=atoms.positions,
                            types=np.zeros(len(atoms), dtype=np.int64))
        energy, forces, plus_stress, _ = mtp.calc_efs(cfg)
        e_ref = float(atoms.info["mtp_energy"])
        f_ref = atoms.arrays["mtp_forces"]
        s_ref = np.asarray(atoms.info["mtp_stress"], dtype=float).reshape(3, 3)
        stress = -plus_stress / atoms.get_volume()  # ASE sign, eV/A^3, xx yy zz yz xz xy
        s_ref6 = np.array([s_ref[0, 0], s_ref[1, 1], s_ref[2, 2], s_ref[1, 2], s_ref[0, 2],
                           s_ref[0, 1]])
        worst = np.maximum(worst, [abs(energy - e_ref) / abs(e_ref), np.abs(forces - f_ref).max(),
                                   np.abs(stress - s_ref6).max()])
    assert worst[0] < 1e-10, worst
    assert worst[1] < 1e-8, worst
    assert worst[2] < 1e-8, worst
