"""The only importer of mlip-py's compiled (Cython) modules.

Everything else in the package imports kernels from here, so that a missing or
stale build fails with one clear message instead of a bare ModuleNotFoundError.
"""
import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types

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


def load_extension_file(name):
    """Load the extension module ``name`` (dotted, e.g. ``"scipy.linalg.cython_blas"``) from
    its file without executing its parent packages' ``__init__``; register it in
    ``sys.modules`` and return it (``None`` when no such file exists).

    SciPy's ``scipy/__init__.py`` and ``scipy/linalg/__init__.py`` import array-API
    compatibility layers, f2py, Cython's shadow module and more: 0.03-0.2 s of start-up
    that every ``mlp calc-grade``/``select-add`` would pay just to reach BLAS/LAPACK.
    Loading the extension file by itself gives the same module.  The module's own
    imports of sibling modules (SciPy's shared Cython utility ``scipy._cyutility``) are
    resolved under a bare stand-in for the top package while it loads; the stand-in is
    removed afterwards, so a later ``import scipy`` imports the real package (which then
    finds the modules loaded here in ``sys.modules``).
    """
    if name in sys.modules:
        return sys.modules[name]
    top, *parts = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = os.path.join(spec.submodule_search_locations[0], *parts)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = base + suffix
        if os.path.exists(path):
            break
    else:
        return None
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    fspec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(fspec)
    with _bare_package(top):
        sys.modules[name] = module
        try:
            fspec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


@contextlib.contextmanager
def _bare_package(top):
    """While the block runs, ``sys.modules[top]`` is a bare module with the package's
    ``__path__`` (its ``__init__`` not executed) unless the package is imported already;
    afterwards the stand-in is removed."""
    stand_in = None
    if top not in sys.modules:
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            stand_in = types.ModuleType(top)
            stand_in.__path__ = list(spec.submodule_search_locations)
            stand_in.__spec__ = spec
            stand_in.__file__ = spec.origin
            sys.modules[top] = stand_in
    try:
        yield
    finally:
        if stand_in is not None and sys.modules.get(top) is stand_in:
            del sys.modules[top]


def _preload_cython_blas():
    """Register ``scipy.linalg.cython_blas`` (cimported by the maxvol kernel, which imports
    it when it loads) without importing all of ``scipy.linalg``; any problem falls back to
    the normal import."""
    try:
        load_extension_file("scipy.linalg.cython_blas")
    except Exception:  # pragma: no cover - the normal import path takes over
        pass


def load(name):
    """Import and return ``mlip_py._cext.<name>`` or raise an ImportError saying how to build."""
    if name in _USES_BLAS:
        _preload_cython_blas()
    try:
        if name in _USES_BLAS:
            # the module's initialisation imports scipy.linalg.cython_blas (registered
            # above) by name, which would otherwise execute scipy/__init__.py first
            with _bare_package("scipy"):
                return importlib.import_module(f"{__name__}.{name}")
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as err:
        raise ImportError(_BUILD_HINT.format(name=name, err=err)) from err
