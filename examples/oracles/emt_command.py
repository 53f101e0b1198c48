#!/usr/bin/env python3
"""Example external program for ``mlp label --oracle=command:...``; it stands in for VASP.

``mlp label`` runs it in the work directory of one configuration (see the contract in
``mlp label --help`` and ``mlip_py/oracles/command.py``)::

    mlp label in.cfg out.cfg --type-map=Cu,Ni \\
        --oracle="command:python /path/to/examples/oracles/emt_command.py"

Default mode: reads ``input.cfg`` (written by mlp) with mlip_py, takes the elements from
``$MLIP_PY_TYPE_MAP``, computes energy, forces and (for periodic configurations) the stress
with ASE's EMT and writes ``output.cfg`` (PlusStress = -volume * ASE stress), atomically.

``--extxyz``: the recipe for any ASE calculator without mlip_py: read ``input.extxyz`` with
``ase.io.read``, write ``output.extxyz`` with ``ase.io.write``.

Options for demonstrations and tests:

``--sleep S``      wait S seconds first (a slow DFT code);
``--counter FILE`` after the result is written, append ``$MLIP_PY_CFG_INDEX`` to FILE (one
                   line per completed calculation);
a configuration with the feature ``fail`` = ``1`` makes the program exit with status 3
(default mode only), to show how failures are recorded.

A real wrapper for VASP would instead copy INCAR/KPOINTS, build POTCAR from
``$MLIP_PY_TYPE_MAP``, use the ``POSCAR`` written by mlp, run VASP and leave the OUTCAR.
"""
import argparse
import os
import sys
import time


def compute_default():
    import numpy as np
    from ase.calculators.emt import EMT

    from mlip_py.io import read_configurations, write_configurations

    type_map = [s for s in os.environ.get("MLIP_PY_TYPE_MAP", "").split(",") if s]
    if not type_map:
        print("emt_command: MLIP_PY_TYPE_MAP is empty (give mlp label --type-map)", file=sys.stderr)
        return 2
    (cfg,) = read_configurations("input.cfg")
    if cfg.features.get("fail") == "1":
        print("emt_command: this configuration asks to fail (feature fail=1)", file=sys.stderr)
        return 3
    atoms = cfg.to_atoms(type_map)
    atoms.calc = EMT()
    out = cfg.copy()
    out.energy = float(atoms.get_potential_energy())
    out.forces = np.array(atoms.get_forces())
    if all(cfg.pbc):
        out.plus_stress = -np.array(atoms.get_stress(voigt=True)) * atoms.get_volume()
    write_configurations("output.cfg", [out], fmt="txt", lossless=True)  # atomic
    return 0


def compute_extxyz():
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = ase.io.read("input.extxyz", format="extxyz")
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if all(atoms.pbc):
        results["stress"] = atoms.get_stress(voigt=True)
    atoms.calc = SinglePointCalculator(atoms, **results)
    ase.io.write("output.extxyz.tmp", atoms, format="extxyz")
    os.replace("output.extxyz.tmp", "output.extxyz")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--counter", default=None)
    parser.add_argument("--extxyz", action="store_true")
    args = parser.parse_args(argv)
    if args.sleep > 0:
        time.sleep(args.sleep)
    status = compute_extxyz() if args.extxyz else compute_default()
    if status == 0 and args.counter:
        with open(args.counter, "a") as fh:  # O_APPEND: one whole line per call
            fh.write(os.environ.get("MLIP_PY_CFG_INDEX", "?") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    return status


if __name__ == "__main__":
    sys.exit(main())
