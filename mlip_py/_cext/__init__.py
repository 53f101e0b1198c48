"""The only importer of mlip-py's compiled (Cython) modules.

Everything else in the package imports kernels from here, so that a missing or
stale build fails with one clear message instead of a bare ModuleNotFoundError.
"""
import importlib

#: compiled modules the package needs (see setup.py EXTENSIONS)
MODULES = ("_cfgparse", "_neighbors", "_mtp", "_maxvol")

_BUILD_HINT = (
    "mlip-py's compiled extension 'mlip_py._cext.{name}' is not built or failed to load "
    "({err}). Install the package with 'pip install .' (or 'pip install -e .' for "
    "development), or build in place with 'python setup.py build_ext --inplace'; this "
    "needs a C compiler, Cython>=3, numpy>=2 and scipy."
)


def load(name):
    """Import and return ``mlip_py._cext.<name>`` or raise an ImportError saying how to build."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise ImportError(_BUILD_HINT.format(name=name, err=err)) from err
