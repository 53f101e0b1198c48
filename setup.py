"""Build the Cython extensions of mlip-py (everything else is in pyproject.toml).

Extensions live flat in ``cext/``; the file basename is the module name inside
``mlip_py._cext``.  OpenMP is used when the compiler accepts ``-fopenmp`` and
silently left out otherwise (the kernels then run single-threaded).
Set ``MLIP_PY_CYTHON_DEBUG=1`` to build with bounds checking.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# module name (inside mlip_py._cext) -> sources
EXTENSIONS = {
    "_cfgparse": ["cext/_cfgparse.pyx"],
    "_neighbors": ["cext/_neighbors.pyx"],
    "_mtp": ["cext/_mtp.pyx"],
    "_maxvol": ["cext/_maxvol.pyx"],
}

DEBUG = os.environ.get("MLIP_PY_CYTHON_DEBUG", "0") == "1"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}


def _has_openmp():
    """True when the C compiler can build and link a trivial OpenMP program."""
    if os.environ.get("MLIP_PY_NO_OPENMP") == "1" or sys.platform == "win32":
        return False
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return False
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.c")
        with open(path, "w") as fh:
            fh.write(src)
        res = subprocess.run(
            cc.split() + ["-fopenmp", path, "-o", os.path.join(tmp, "t")],
            capture_output=True,
        )
        return res.returncode == 0


OPENMP = _has_openmp()
# development aid: build only some extensions, e.g. MLIP_PY_BUILD_ONLY=_mtp,_neighbors
ONLY = {x for x in os.environ.get("MLIP_PY_BUILD_ONLY", "").split(",") if x}
compile_args = ["-O3"] + (["-fopenmp"] if OPENMP else [])
link_args = ["-fopenmp"] if OPENMP else []

extensions = [
    Extension(
        f"mlip_py._cext.{name}",
        sources,
        include_dirs=[np.get_include(), "cext"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name, sources in EXTENSIONS.items()
    if os.path.exists(sources[0]) and (not ONLY or name in ONLY)
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["cext"],
        compiler_directives=DIRECTIVES,
        compile_time_env={"HAVE_OPENMP": OPENMP},
    ),
)
