"""Simulations with an MTP: relaxation (``mlp relax``) and molecular dynamics (``mlp md``),
both with MLIP-2's extrapolation control.

* :mod:`.extrapolation` -- :class:`ExtrapolationControl`: grade every evaluated
  configuration against an active set, keep those above ``threshold`` (preselected,
  ``Feature MV_grade``), raise :class:`~mlip_py.errors.ExtrapolationError` above
  ``threshold_break``.
* :mod:`.relax` -- :class:`Relaxer` / :func:`relax`: BFGS over atoms and cell of the
  enthalpy ``E + pV`` with MLIP-2's options and stopping rules.
* :mod:`.md` -- :class:`MDRunner`: ASE integrators (NVE, Langevin, MTK NPT) driven by
  :class:`~mlip_py.potential.calculator.MTPCalculator` with ``active_set=``.

The submodules are imported lazily (``from mlip_py.simulate import relax`` works without
importing ASE's MD machinery).
"""
import importlib

__all__ = ["ExtrapolationControl", "PreselectedWriter", "Relaxer", "RelaxOptions",
           "RelaxResult", "MDRunner", "MDResult"]

_WHERE = {
    "ExtrapolationControl": "extrapolation", "PreselectedWriter": "extrapolation",
    "Relaxer": "relax", "RelaxOptions": "relax", "RelaxResult": "relax",
    "MDRunner": "md", "MDResult": "md",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
