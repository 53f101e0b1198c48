"""Package-level checks: every module imports alone, every extension loads, public API."""
import importlib
import pkgutil
import subprocess
import sys

import pytest

import mlip_py
from mlip_py import _cext


def _all_modules():
    names = []
    for info in pkgutil.walk_packages(mlip_py.__path__, "mlip_py."):
        names.append(info.name)
    return names


@pytest.mark.parametrize("name", _cext.MODULES)
def test_extension_loads(name):
    mod = _cext.load(name)
    assert mod.__name__ == f"mlip_py._cext.{name}"


def test_missing_extension_message():
    with pytest.raises(ImportError, match="pip install"):
        _cext.load("_does_not_exist")


@pytest.mark.parametrize("name", [n for n in _all_modules() if "._cext." not in n])
def test_module_imports_alone(name):
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, capture_output=True)


def test_public_api():
    for name in mlip_py.__all__:
        assert getattr(mlip_py, name) is not None


def test_dependency_rules():
    """io and potential.params never import the CLI; nothing in the library imports cli."""
    code = ("import sys, mlip_py.io, mlip_py.potential.params, mlip_py.configuration\n"
            "bad = [m for m in sys.modules if m.startswith('mlip_py.cli')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
