"""MLIP-2 settings file (``mlip.ini``) used by ``mlp relax`` and the MD driver.

Syntax (mlip-formats.md §7): one ``key value [anything]`` per line, whitespace
separated; a line whose key starts with ``#`` is a comment; text after the value is
ignored; booleans are exactly ``TRUE`` or ``FALSE``.  Unlike MLIP-2, an unknown key or a
malformed value is an error naming the file and line (MLIP-2 ignores unknown keys).
"""
from __future__ import annotations

import dataclasses
import os

from ..errors import FormatError


def _bool(text):
    if text == "TRUE":
        return True
    if text == "FALSE":
        return False
    raise ValueError("expected TRUE or FALSE")


#: key -> (attribute, parser, default)
KEYS = {
    "mtp-filename": ("mtp_filename", str, ""),
    "calculate-efs": ("calculate_efs", _bool, True),
    "fit": ("fit", _bool, False),
    "fit:save": ("fit_save", str, ""),
    "fit:energy-weight": ("fit_energy_weight", float, 1.0),
    "fit:force-weight": ("fit_force_weight", float, 0.0),
    "fit:stress-weight": ("fit_stress_weight", float, 0.0),
    "fit:scale-by-force": ("fit_scale_by_force", float, 0.0),
    "fit:log": ("fit_log", str, ""),
    "select": ("select", _bool, False),
    "select:threshold-init": ("select_threshold_init", float, 1e-7),
    "select:threshold": ("select_threshold", float, 1.001),
    "select:threshold-swap": ("select_threshold_swap", float, 1.001),
    "select:threshold-break": ("select_threshold_break", float, 0.0),
    "select:site-en-weight": ("select_site_en_weight", float, 0.0),
    "select:energy-weight": ("select_energy_weight", float, 1.0),
    "select:force-weight": ("select_force_weight", float, 0.0),
    "select:stress-weight": ("select_stress_weight", float, 0.0),
    "select:weighting": ("select_weighting", str, "vibrations"),
    "select:save-selected": ("select_save_selected", str, ""),
    "select:save-state": ("select_save_state", str, ""),
    "select:load-state": ("select_load_state", str, ""),
    "select:log": ("select_log", str, ""),
    "select:efs-ignored": ("select_efs_ignored", _bool, False),
    "write-cfgs": ("write_cfgs", str, ""),
    "write-cfgs:skip": ("write_cfgs_skip", int, 0),
    "check-errors": ("check_errors", str, ""),
    "log": ("log", str, ""),
    "abinitio": ("abinitio", str, "null"),
}

MlipIni = dataclasses.make_dataclass(
    "MlipIni",
    [(attr, object, dataclasses.field(default=default)) for attr, _, default in KEYS.values()]
    + [("path", object, dataclasses.field(default=None)),
       ("extra", dict, dataclasses.field(default_factory=dict)),
       ("lines", dict, dataclasses.field(default_factory=dict))],
    slots=True, kw_only=True,
)
MlipIni.__doc__ = """Settings of an mlip.ini file (attribute = key with '-'/':' -> '_').

``path`` is the file read, ``extra`` the accepted driver sub-keys (``abinitio:*`` ...)
kept verbatim, and ``lines`` maps every key given in the file to its 1-based line number
(for error messages about values that parse but cannot be used, see :func:`ini_error`).
"""

#: sub-keys of abinitio drivers accepted and kept verbatim in ``extra``
_EXTRA_PREFIXES = ("abinitio:", "lj:", "vasp:", "lammps:", "mtp:")


def read_mlip_ini(path):
    """Parse an mlip.ini file into :class:`MlipIni`.

    Relative file names in the settings are resolved later by the caller (MLIP-2 resolves
    them against the working directory, and so do we).
    """
    path = os.fspath(path)
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        raise FormatError("not a text file", path) from None
    values = {}
    extra = {}
    where = {}
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0]
        if len(parts) < 2 or parts[1].startswith("#"):
            raise FormatError(f"key '{key}' has no value", path, lineno)
        raw = parts[1]
        where[key] = lineno
        if key not in KEYS:
            if key.startswith(_EXTRA_PREFIXES):
                extra[key] = raw
                continue
            raise FormatError(f"unknown key '{key}' (known keys: {', '.join(KEYS)})", path, lineno)
        attr, parse, _ = KEYS[key]
        try:
            values[attr] = parse(raw)
        except ValueError as err:
            raise FormatError(f"bad value '{raw}' for '{key}': {err if parse is _bool else 'expected ' + parse.__name__}",
                              path, lineno) from None
    ini = MlipIni(**values, path=path, extra=extra, lines=where)
    if ini.select and ini.select_threshold <= 1.0:
        raise FormatError(f"select:threshold must be > 1, got {ini.select_threshold}", path,
                          where.get("select:threshold"))
    if ini.select_threshold_swap <= 1.0:
        ini.select_threshold_swap = ini.select_threshold
    return ini


def ini_error(ini, key, message):
    """A :class:`FormatError` about ``key`` of ``ini``, naming its file and line.

    For settings that parse but cannot be used by the command at hand (e.g. ``fit TRUE``
    in ``mlp relax``); a key that is absent from the file is reported without a line.
    """
    return FormatError(message, ini.path, ini.lines.get(key))
