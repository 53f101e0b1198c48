"""Where the MLIP-2 reference data are, and how tests get them.

Tests import these names from here (``from refdata import GOLDEN, shared_file``), never
from ``conftest`` (several conftest.py files exist; importing them by name is ambiguous).
The data live in ``../shared`` beside the checkout (override with MLIP_PY_SHARED).
Without it, :func:`shared_file` skips with a reason, except under CI (``CI=true``) where
a missing reference file is a failure.
"""
import os
from pathlib import Path

import pytest

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
