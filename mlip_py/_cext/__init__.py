"""The only importer of mlip-py's compiled (Cython) modules.

Everything else in the package imports kernels from here, so that a missing or
stale build fails with one clear message instead of a bare ModuleNotFoundError.
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys

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
    "needs a C compiler, Cython>=3, numpy>=2 and scipy."
)


#: compiled modules that cimport scipy.linalg.cython_blas
_USES_BLAS = ("_maxvol",)


def _preload_cython_blas():
    """Register ``scipy.linalg.cython_blas`` without executing ``scipy/linalg/__init__.py``.

    A Cython module that cimports BLAS from SciPy imports that extension when it loads;
    the normal import runs all of ``scipy.linalg``'s package imports (array-API
    compatibility layers, f2py, ...), 0.1-0.2 s of start-up that every ``mlp calc-grade``
    would pay.  Loading the extension file by itself gives the same module.  Any problem
    falls back to the normal import.
    """
    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return
    try:
        import scipy

        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "cython_blas" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader(name, path)
                spec = importlib.util.spec_from_file_location(name, path, loader=loader)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception:
                    del sys.modules[name]
                    raise
                return
    except Exception:  # pragma: no cover - the normal import path takes over
        return


def load(name):
    """Import and return ``mlip_py._cext.<name>`` or raise an ImportError saying how to build."""
    if name in _USES_BLAS:
        _preload_cython_blas()
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise ImportError(_BUILD_HINT.format(name=name, err=err)) from err
