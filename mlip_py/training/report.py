"""Error report of predicted versus reference energies, forces and stresses.

Reproduces MLIP-2's ``ErrorMonitor`` report (mlip-formats.md §6), the layout printed by
``mlp train`` and ``mlp calc-errors``; numbers are printed like C++ streams (``%g``, 6
significant digits).  :meth:`ErrorMonitor.as_dict` gives the same figures (plus MAE and
RMSE per component) for ``--report-json``.

Definitions (as the original computes them):

* energy: max, mean and RMS of |E - E_ref| over configurations with both energies;
  per atom the same of |E - E_ref| / N;
* forces: over atoms, with d_i = |F_i - F_ref,i| (vector norm): max d_i, sum d_i / (3 n),
  sqrt(sum d_i^2 / (3 n)), max d_i / max |F_ref,i|, sqrt(sum d_i^2 / sum |F_ref,i|^2);
* stresses: over configurations, with D = ||S - S_ref||_F (all 9 components): max D,
  sum D / (9 n), sqrt(sum D^2 / (9 n)), max D / max ||S_ref||, sqrt(sum D^2 / sum ||S_ref||^2);
  in GPa each S is first multiplied by 160.2176487 / |det L|.
"""
from __future__ import annotations

import math

import numpy as np

EV_A3_TO_GPA = 160.2176487


def _g(x):
    """Format like a C++ ostream with default settings (``%g``)."""
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return "%g" % x


def _full(s6):
    xx, yy, zz, yz, xz, xy = s6
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


class _Acc:
    """Accumulates max / sum / sum of squares of a difference and of the reference."""

    __slots__ = ("n", "max_d", "sum_d", "sum_d2", "max_ref", "sum_ref2", "sum_abs_comp",
                 "sum_sq_comp", "n_comp")

    def __init__(self):
        self.n = 0
        self.max_d = 0.0
        self.sum_d = 0.0
        self.sum_d2 = 0.0
        self.max_ref = 0.0
        self.sum_ref2 = 0.0
        self.sum_abs_comp = 0.0
        self.sum_sq_comp = 0.0
        self.n_comp = 0

    def add(self, d, ref, comps=None):
        self.n += 1
        self.max_d = max(self.max_d, d)
        self.sum_d += d
        self.sum_d2 += d * d
        self.max_ref = max(self.max_ref, ref)
        self.sum_ref2 += ref * ref
        if comps is not None:
            comps = np.abs(np.asarray(comps, dtype=np.float64)).ravel()
            self.sum_abs_comp += float(comps.sum())
            self.sum_sq_comp += float((comps * comps).sum())
            self.n_comp += comps.size

    def add_many(self, d, ref, comps):
        if len(d) == 0:
            return
        self.n += len(d)
        self.max_d = max(self.max_d, float(d.max()))
        self.sum_d += float(d.sum())
        self.sum_d2 += float((d * d).sum())
        self.max_ref = max(self.max_ref, float(ref.max()))
        self.sum_ref2 += float((ref * ref).sum())
        comps = np.abs(comps).ravel()
        self.sum_abs_comp += float(comps.sum())
        self.sum_sq_comp += float((comps * comps).sum())
        self.n_comp += comps.size

    def ratio(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.float64(a) / np.float64(b))

    def state(self):
        """The accumulator as a list of len(__slots__) floats."""
        return [float(getattr(self, f)) for f in self.__slots__]

    def merge(self, state):
        """Add another accumulator's :meth:`state` (sums added, maxima combined)."""
        n, max_d, sum_d, sum_d2, max_ref, sum_ref2, sum_abs, sum_sq, n_comp = state
        self.n += int(n)
        self.max_d = max(self.max_d, max_d)
        self.sum_d += sum_d
        self.sum_d2 += sum_d2
        self.max_ref = max(self.max_ref, max_ref)
        self.sum_ref2 += sum_ref2
        self.sum_abs_comp += sum_abs
        self.sum_sq_comp += sum_sq
        self.n_comp += int(n_comp)


class ErrorMonitor:
    """Accumulate differences configuration by configuration; print MLIP-2's report."""

    def __init__(self):
        self.energy = _Acc()
        self.energy_pa = _Acc()
        self.forces = _Acc()
        self.stress = _Acc()
        self.stress_gpa = _Acc()

    def add(self, ref, pred):
        """Compare prediction ``pred`` with reference ``ref`` (two Configurations)."""
        self.add_values(ref, pred.energy, pred.forces, pred.plus_stress)

    def add_values(self, ref, energy, forces, virial):
        """Like :meth:`add` with the prediction given as arrays.

        ``virial`` is the predicted (3, 3) PlusStress matrix (used as is, all nine
        components, as MLIP-2 does) or a (6,) PlusStress vector.
        """
        n = len(ref)
        if ref.energy is not None and energy is not None:
            d = abs(energy - ref.energy)
            self.energy.add(d, abs(ref.energy), [energy - ref.energy])
            self.energy_pa.add(d / n if n else float("nan"), abs(ref.energy) / n if n else 0.0,
                               [(energy - ref.energy) / n] if n else None)
        if ref.forces is not None and forces is not None and n:
            diff = np.asarray(forces) - ref.forces
            self.forces.add_many(np.linalg.norm(diff, axis=1), np.linalg.norm(ref.forces, axis=1),
                                 diff)
        if ref.plus_stress is not None and virial is not None:
            v = np.asarray(virial, dtype=np.float64)
            sp = _full(v) if v.shape == (6,) else v.reshape(3, 3)
            sr = _full(ref.plus_stress)
            diff = sp - sr
            self.stress.add(float(np.linalg.norm(diff)), float(np.linalg.norm(sr)), diff)
            with np.errstate(divide="ignore", invalid="ignore"):
                k = EV_A3_TO_GPA / ref.volume
                self.stress_gpa.add(float(np.linalg.norm(diff * k)), float(np.linalg.norm(sr * k)),
                                    diff * k)

    def _accs(self):
        return (self.energy, self.energy_pa, self.forces, self.stress, self.stress_gpa)

    def state(self):
        """All accumulators as one (45,) float array (see :meth:`merge_state`)."""
        return np.array([v for acc in self._accs() for v in acc.state()])

    def merge_state(self, state):
        """Add the :meth:`state` of another monitor.

        Merging the states of single-configuration monitors in configuration order gives
        exactly the sums of adding the configurations to one monitor in that order.
        """
        state = np.asarray(state, dtype=np.float64).reshape(len(self._accs()), -1)
        for acc, st in zip(self._accs(), state):
            acc.merge(st.tolist())

    def report(self):
        """The report text exactly as MLIP-2 prints it (ends with a blank line)."""
        out = ["_________________Errors report_________________"]

        def three(acc, what, denom=1):
            n = acc.n
            return [f"\tErrors checked for {n} {what}",
                    f"\tMaximal absolute difference = {_g(acc.max_d)}",
                    f"\tAverage absolute difference = {_g(acc.ratio(acc.sum_d, denom * n))}",
                    f"\tRMS     absolute difference = "
                    f"{_g(math.sqrt(acc.ratio(acc.sum_d2, denom * n)) if n else float('nan'))}"]

        out += ["Energy:"] + three(self.energy, "configurations") + [""]
        out += ["Energy per atom:"] + three(self.energy_pa, "configurations") + [""]
        f = self.forces
        out += ["Forces:"] + three(f, "atoms", 3)
        out += [f"\tMax(ForceDiff) / Max(Force) = {_g(f.ratio(f.max_d, f.max_ref))}",
                f"\tRMS(ForceDiff) / RMS(Force) = {_g(math.sqrt(f.ratio(f.sum_d2, f.sum_ref2)) if f.sum_ref2 or f.sum_d2 else float('nan'))}",
                ""]
        for title, acc in (("Stresses (in eV):", self.stress), ("Stresses (in GPa):", self.stress_gpa)):
            out += [title] + three(acc, "configurations", 9)
            rr = acc.ratio(acc.sum_d2, acc.sum_ref2)
            out += [f"\tMax(StresDiff) / Max(Stres) = {_g(acc.ratio(acc.max_d, acc.max_ref))}",
                    f"\tRMS(StresDiff) / RMS(Stres) = {_g(math.sqrt(rr) if rr == rr and rr >= 0 else rr)}",
                    ""]
        out[-1] = "_______________________________________________"
        return "\n".join(out) + "\n\n"

    # ------------------------------------------------------------------ json
    def as_dict(self):
        """The same figures (and per-component MAE/RMSE) as a JSON-ready dict."""
        def block(acc, denom, unit):
            n = acc.n
            d = {"count": n, "unit": unit, "max_abs": acc.max_d,
                 "mlip_average": acc.ratio(acc.sum_d, denom * n) if n else None,
                 "mlip_rms": math.sqrt(acc.ratio(acc.sum_d2, denom * n)) if n else None,
                 "mae": acc.sum_abs_comp / acc.n_comp if acc.n_comp else None,
                 "rmse": math.sqrt(acc.sum_sq_comp / acc.n_comp) if acc.n_comp else None}
            return d

        return {
            "energy": block(self.energy, 1, "eV"),
            "energy_per_atom": block(self.energy_pa, 1, "eV/atom"),
            "forces": block(self.forces, 3, "eV/A"),
            "stress": block(self.stress, 9, "eV"),
            "stress_gpa": block(self.stress_gpa, 9, "GPa"),
        }
