"""mlip-py: Moment Tensor Potentials and D-optimality active learning, compatible with MLIP-2.

The public API is imported lazily so that ``import mlip_py`` (and the ``mlp`` command)
starts fast.
"""
__version__ = "0.1.0"

_LAZY = {
    "Configuration": "mlip_py.configuration",
    "MTPParams": "mlip_py.potential.params",
    "MlipError": "mlip_py.errors",
    "FormatError": "mlip_py.errors",
    "ConfigError": "mlip_py.errors",
    "SelectionError": "mlip_py.errors",
    "ExtrapolationError": "mlip_py.errors",
    "read_configurations": "mlip_py.io",
    "iread_configurations": "mlip_py.io",
    "write_configurations": "mlip_py.io",
    "read_mtp": "mlip_py.io.mtp",
    "write_mtp": "mlip_py.io.mtp",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlip_py' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
