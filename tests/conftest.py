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

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLIP_PY_SHARED", ROOT.parent / "shared"))
REF = SHARED / "reference" / "mlip"
GOLDEN = REF / "golden"
UPSTREAM = REF / "upstream_examples"
MLEARN = SHARED / "data" / "mlearn"
SAMPLE_DATA = ROOT / "sample_data"


def shared_file(*parts):
    """Path of a reference file in ../shared; skip (fail under CI) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference file missing under CI: {path}")
        pytest.skip(f"reference data not available: {path} (needs ../shared beside the checkout)")
    return path


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
