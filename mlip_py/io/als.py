"""MLIP-2 active-learning state files (``.als``), read and written byte-compatibly.

Layout (mlip-formats.md §5.4; native little-endian doubles)::

    <the potential exactly as the .mtp writer prints it, no trailing newline>
    "\\n^"  float64 x 4   selection weights: nbh (site energy), energy, force, stress
    "\\n#"  float64 x n*n A, row-major (row r = maxvol row of the r-th active entry)
            float64 x n*n (A^-1)^T row-major (= A^-1 column-major)
    "\\n"   n lines "<row> <cfg_number>\\n"
            the configurations, lossless text cfg, one per cfg_number in number order
            (unfilled rows point at an empty configuration: Size 0, identity Supercell)

``n`` is the number of potential parameters (maxvol columns).
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct

import numpy as np

from ..configuration import Configuration
from ..errors import FormatError
from ..potential.params import MTPParams
from ._atomic import atomic_open

#: order of the four weights stored in the file
WEIGHT_NAMES = ("nbh", "energy", "force", "stress")


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class ALSState:
    """Contents of an ``.als`` file.

    Attributes
    ----------
    params : MTPParams
        The potential the state belongs to.
    weights : dict
        ``{"nbh": w, "energy": w, "force": w, "stress": w}`` (selection rows, §5.1).
    a : ndarray of shape (n, n)
        Active-set matrix, row r = maxvol row of the r-th active entry.
    inv_a : ndarray of shape (n, n)
        A^-1.
    row_cfg : ndarray of shape (n,)
        Index into ``configurations`` of the configuration occupying each row.
    configurations : list of Configuration
        Unique configurations of the active set (an empty one for unfilled rows).
    """

    params: MTPParams
    weights: dict
    a: np.ndarray
    inv_a: np.ndarray
    row_cfg: np.ndarray
    configurations: list


def empty_configuration():
    """The placeholder configuration MLIP-2 stores for unfilled rows."""
    return Configuration(lattice=np.eye(3))


def write_als(path, state):
    """Write ``state`` to ``path`` (atomically) in MLIP-2's binary layout."""
    with atomic_open(path, "wb") as fh:
        fh.write(format_als(state))


def format_als(state):
    """Return the bytes of an ``.als`` file."""
    from .cfg import format_cfg
    from .mtp import format_mtp

    n = state.params.n_params
    a = np.ascontiguousarray(state.a, dtype="<f8")
    inv_a = np.asarray(state.inv_a, dtype="<f8")
    if a.shape != (n, n) or inv_a.shape != (n, n):
        raise ValueError(f"active-set matrices must be ({n}, {n}), got {a.shape} and {inv_a.shape}")
    rows = np.asarray(state.row_cfg, dtype=np.int64)
    if rows.shape != (n,):
        raise ValueError(f"row_cfg must have {n} entries, got {rows.shape}")
    out = io.BytesIO()
    out.write(format_mtp(state.params).encode())
    out.write(b"\n^")
    out.write(struct.pack("<4d", *(float(state.weights[k]) for k in WEIGHT_NAMES)))
    out.write(b"\n#")
    out.write(a.tobytes())
    out.write(np.ascontiguousarray(inv_a.T).tobytes())
    out.write(b"\n")
    out.write("".join(f"{r} {c}\n" for r, c in enumerate(rows.tolist())).encode())
    for cfg in state.configurations:
        out.write(format_cfg(cfg, lossless=True).encode())
    return out.getvalue()


def read_als(path):
    """Read an ``.als`` file written by MLIP-2 or mlip-py.

    Raises
    ------
    FormatError
        With the file name and what was expected (byte offsets for the binary part).
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    return parse_als(data, path)


def parse_als(data, path="<als>"):
    """Parse the bytes of an ``.als`` file (see :func:`read_als`)."""
    from .cfg import iter_cfg
    from .mtp import parse_mtp

    key = data.find(b"moment_coeffs")
    if key < 0:
        raise FormatError("not an MLIP-2 active-learning state: no potential "
                          "('moment_coeffs = {...}') at the start of the file", path)
    close = data.find(b"}", key)
    if close < 0 or data[close + 1:close + 3] != b"\n^":
        raise FormatError("expected '\\n^' after the potential's moment_coeffs list", path,
                          data.count(b"\n", 0, key) + 1)
    try:
        params = parse_mtp(data[:close + 1].decode(), path)
    except UnicodeDecodeError:
        raise FormatError("the potential part is not text", path) from None
    n = params.n_params
    pos = close + 3
    need = 32 + 2 + 16 * n * n + 1
    if len(data) < pos + need:
        raise FormatError(f"file truncated in the binary part: need {need} bytes after offset "
                          f"{pos} for n = {n} parameters, found {len(data) - pos}", path)
    weights = dict(zip(WEIGHT_NAMES, struct.unpack_from("<4d", data, pos)))
    pos += 32
    if data[pos:pos + 2] != b"\n#":
        raise FormatError(f"expected '\\n#' at byte {pos}, found {data[pos:pos + 2]!r}", path)
    pos += 2
    a = np.frombuffer(data, dtype="<f8", count=n * n, offset=pos).reshape(n, n).astype(np.float64)
    pos += 8 * n * n
    m = np.frombuffer(data, dtype="<f8", count=n * n, offset=pos).reshape(n, n)
    inv_a = np.ascontiguousarray(m.T, dtype=np.float64)
    pos += 8 * n * n
    if data[pos:pos + 1] != b"\n":
        raise FormatError(f"expected a newline at byte {pos} after the matrices", path)
    pos += 1
    try:
        text = data[pos:].decode(errors="strict")
    except UnicodeDecodeError as err:
        raise FormatError(f"the text after the matrices is not UTF-8 (byte {pos + err.start})",
                          path) from None
    lines = text.split("\n", n)
    if len(lines) <= n:
        raise FormatError(f"expected {n} '<row> <cfg>' lines after the matrices", path)
    row_cfg = np.empty(n, dtype=np.int64)
    for r in range(n):
        parts = lines[r].split()
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts) or int(parts[0]) != r:
            raise FormatError(f"row map line {r + 1}: expected '{r} <cfg_number>', found "
                              f"{lines[r]!r}", path)
        row_cfg[r] = int(parts[1])
    try:
        configurations = list(iter_cfg(io.StringIO(lines[n])))
    except FormatError as err:
        where = f"line {err.line} of " if err.line is not None else ""
        raise FormatError(f"{where}the configurations after the row map: {err.message}",
                          path) from None
    if len(row_cfg) and row_cfg.max() >= len(configurations):
        raise FormatError(f"row map refers to configuration {int(row_cfg.max())} but the file "
                          f"holds {len(configurations)}", path)
    return ALSState(params=params, weights=weights, a=a, inv_a=inv_a, row_cfg=row_cfg,
                    configurations=configurations)
