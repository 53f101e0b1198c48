"""Shared fixtures.

Tests that compare against MLIP-2 reference data read ``../shared`` (beside the
checkout; override with MLIP_PY_SHARED).  Without it they skip with a reason, except
under CI (``CI=true``) where a missing reference file is a failure.
"""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from refdata import GOLDEN, MLEARN, REF, ROOT, SAMPLE_DATA, SHARED, UPSTREAM, shared_file  # noqa: E402,F401


@pytest.fixture
def golden():
    """Return a function mapping a file name in golden/ to its path (skips if absent)."""
    return lambda *parts: shared_file("reference", "mlip", "golden", *parts)


@pytest.fixture
def upstream():
    return lambda *parts: shared_file("reference", "mlip", "upstream_examples", *parts)


@pytest.fixture
def rng():
    """A seeded generator (seed from MLIP_PY_TEST_SEED, default 1234)."""
    return np.random.default_rng(int(os.environ.get("MLIP_PY_TEST_SEED", "1234")))
