"""The only importer of mlip-py's compiled (Cython) modules.

Everything else in the package imports kernels from here, so that a missing or
stale build fails with one clear message instead of a bare ModuleNotFoundError.
"""
import importlib
import os

# OpenMP threads that wait at a barrier sleep instead of spinning.  With libgomp's
# default (spin, then sleep) a kernel call on a busy or oversubscribed machine (a
# cluster node shared with other jobs, or mlip-py's own worker threads) can stall for a
# scheduler time slice at every barrier: measured 10x slower training on 2 shared cores.
# libgomp reads this when it is loaded, i.e. with the first compiled module below;
# an explicit OMP_WAIT_POLICY from the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: compiled modules the package needs (see setup.py EXTENSIONS)
MODULES = ("_cfgparse", "_neighbors", "_mtp", "_maxvol")

_BUILD_HINT = (
    "mlip-py's compiled extension 'mlip_py._cext.{name}' is not built or failed to load "
    "({err}). Install the package with 'pip install .' (or 'pip install -e .' for "
    "development), or build in place with 'python setup.py build_ext --inplace'; this "
    "needs a C compiler, Cython>=3 and numpy>=2."
)


def load(name):
    """Import and return ``mlip_py._cext.<name>`` or raise an ImportError saying how to build."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise ImportError(_BUILD_HINT.format(name=name, err=err)) from err
