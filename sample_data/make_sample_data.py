"""Generate the bundled sample data (deterministic; run from anywhere).

    python sample_data/make_sample_data.py [OUTDIR]

Every file is labelled by ASE's EMT calculator (Jacobsen, Stoltze, Norskov 1996), the
embedded oracle of mlip-py: energies (eV), forces (eV/A) and the PlusStress virial
(eV, MLIP-2 sign: S = -V * sigma).  Seeded, so rerunning reproduces the files.

Files
-----
cu_train.cfg     24 fcc Cu cells (2x2x2 conventional, 32 atoms), random strain <= 2 %,
                 Gaussian rattle 0.02-0.12 A; type 0 = Cu
cu_test.cfg      12 more of the same kind (independent draws)
cu_start.cfg     1 perfect fcc Cu 2x2x2 cell (start of the active-learning MD)
cuni_train.cfg   20 random Cu-Ni alloy cells (32 atoms, x(Ni) 0.25-0.75); type 0 = Cu, 1 = Ni
"""
import os
import sys

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mlip_py.configuration import Configuration  # noqa: E402
from mlip_py.io import write_configurations  # noqa: E402

SEED = 20261127


def _perturbed(rng, atoms, strain, rattle):
    a = atoms.copy()
    eps = rng.uniform(-strain, strain, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    a.set_cell(a.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    a.positions += rng.normal(scale=rattle, size=a.positions.shape)
    return a


def _label(atoms, type_map):
    atoms.calc = EMT()
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    cfg = Configuration.from_atoms(atoms, type_map)
    cfg.site_energies = None  # DFT gives no site energies; keep the data DFT-like
    cfg.features["EFS_by"] = "EMT"
    return cfg


def make(outdir):
    rng = np.random.default_rng(SEED)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    train = []
    for k in range(24):
        c = _label(_perturbed(rng, cu, 0.02, rng.uniform(0.02, 0.12)), ["Cu"])
        c.features["sample"] = f"cu_train_{k}"
        train.append(c)
    test = []
    for k in range(12):
        c = _label(_perturbed(rng, cu, 0.02, rng.uniform(0.02, 0.12)), ["Cu"])
        c.features["sample"] = f"cu_test_{k}"
        test.append(c)
    start = Configuration.from_atoms(cu.copy(), ["Cu"])
    start.features["sample"] = "cu_start"
    alloy = []
    for k in range(20):
        a = _perturbed(rng, cu, 0.02, rng.uniform(0.02, 0.1))
        x = rng.uniform(0.25, 0.75)
        a.numbers = np.where(rng.random(len(a)) < x, 28, 29)
        c = _label(a, ["Cu", "Ni"])
        c.features["sample"] = f"cuni_train_{k}"
        alloy.append(c)
    os.makedirs(outdir, exist_ok=True)
    write_configurations(os.path.join(outdir, "cu_train.cfg"), train)
    write_configurations(os.path.join(outdir, "cu_test.cfg"), test)
    write_configurations(os.path.join(outdir, "cu_start.cfg"), [start])
    write_configurations(os.path.join(outdir, "cuni_train.cfg"), alloy)


if __name__ == "__main__":
    make(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
