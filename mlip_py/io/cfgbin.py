"""MLIP-2 binary configuration records (``--output-format=bin``).

One record per configuration, all numbers little-endian (MLIP-2 writes native byte order;
every platform it runs on is little-endian), no padding::

    'n' int32 N
    'l' 9 x float64          lattice, row-major (rows = lattice vectors)
    'p' N x 3 x float64      Cartesian positions
    't' N x int32            types
    ['f' N x 3 x float64]    forces
    ['v' N x float64]        site energies
    ['c' N x float64]        charges
    ['s' 6 x float64]        PlusStress in the order xx yy zz xy yz xz (NOT the text order)
    ['e' float64]            energy
    ['F' int32 len, key bytes, int32 len, value bytes] ...   features, sorted by key bytes
    '#'

The writer emits the tags in exactly this order (so files are byte-identical to MLIP-2's);
the reader accepts them in any order, skips whitespace before a tag (MLIP reads tags with
``operator>>``), defaults the types to 0 when ``t`` is absent and requires ``l`` and ``p``.
Binary records may also appear inside text files: :func:`mlip_py.io.cfg.iter_cfg` sends
every configuration whose first non-blank character is ``n`` here.

Errors are :class:`~mlip_py.errors.FormatError` with the byte offset in the message (line
numbers do not apply to binary data).

This module also holds :class:`ByteSource`, the buffered block reader shared with the
text reader (bounded memory: a configuration is parsed as soon as its bytes are in).
"""
from __future__ import annotations

import io
import os
import struct

import numpy as np

from ..configuration import Configuration
from ..errors import FormatError
from ._atomic import atomic_open

__all__ = ["iter_cfgbin", "read_cfgbin", "write_cfgbin", "format_cfgbin", "ByteSource"]

#: default size of the blocks read from a file (bytes)
BLOCK_SIZE = 1 << 20

_WS = frozenset(b" \t\n\r\v\f")
_I32 = struct.Struct("<i")
_F64 = struct.Struct("<d")
# binary stress order xx yy zz xy yz xz <-> Configuration.plus_stress xx yy zz yz xz xy
_BIN_FROM_PS = np.array([0, 1, 2, 5, 3, 4])
_PS_FROM_BIN = np.array([0, 1, 2, 4, 5, 3])


def source_name(obj):
    """A printable name for a path or file object (used in error messages)."""
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj)
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else "<stream>"


class ByteSource:
    """Buffered reader over a binary (or text) file object, read block by block.

    Keeps ``buf`` (bytes), ``pos`` (next unread byte in ``buf``), ``lineno`` (number of
    line breaks consumed so far, so the current line is ``lineno + 1``) and ``base`` (file
    offset of ``buf[0]``).  Data already consumed is dropped whenever more is read, so
    memory stays bounded by the largest configuration plus one block.  Text file objects
    (``io.StringIO``, files opened in text mode) are accepted and encoded as UTF-8 with
    ``surrogateescape``.
    """

    __slots__ = ("fh", "name", "buf", "pos", "eof", "base", "lineno", "block")

    def __init__(self, fh, name, block_size=None):
        self.fh = fh
        self.name = name
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.base = 0
        self.lineno = 0
        self.block = int(block_size or BLOCK_SIZE)

    def more(self):
        """Read the next block (at least as large as the unread part); False at EOF."""
        if self.eof:
            return False
        size = max(self.block, len(self.buf) - self.pos)
        data = self.fh.read(size)
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.base += self.pos
            self.buf = self.buf[self.pos:] + data
            self.pos = 0
        else:
            self.buf += data
        return True

    def offset(self):
        """File offset of the next unread byte."""
        return self.base + self.pos

    def readline(self):
        """Next line without its line break (bytes), or None at EOF."""
        i = self.buf.find(b"\n", self.pos)
        while i < 0:
            start = len(self.buf) - self.pos
            if not self.more():
                break
            i = self.buf.find(b"\n", self.pos + start)
        if i < 0:
            if self.pos >= len(self.buf):
                return None
            line = self.buf[self.pos:]
            self.pos = len(self.buf)
            return line
        line = self.buf[self.pos:i]
        self.pos = i + 1
        self.lineno += 1
        return line

    def skip_space(self):
        """Skip whitespace (counting line breaks); return the next byte (not consumed) or -1."""
        while True:
            buf = self.buf
            n = len(buf)
            p = self.pos
            while p < n and buf[p] in _WS:
                if buf[p] == 10:
                    self.lineno += 1
                p += 1
            self.pos = p
            if p < n:
                return buf[p]
            if not self.more():
                return -1

    def read_exact(self, n, what):
        """Consume and return exactly ``n`` bytes; FormatError naming ``what`` if truncated."""
        while len(self.buf) - self.pos < n:
            if not self.more():
                raise FormatError(
                    f"binary configuration truncated at byte {self.offset()}: expected {n} bytes "
                    f"of {what}, found {len(self.buf) - self.pos}",
                    self.name,
                )
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def close(self):
        """Forget the buffer (the file object is closed by its owner)."""
        self.buf = b""
        self.pos = 0


def read_record(src):
    """Read one binary record starting at the ``n`` tag; return a Configuration.

    ``src`` is a :class:`ByteSource` positioned at (or before whitespace preceding) the
    ``n`` tag.
    """
    c = src.skip_space()
    start = src.offset()
    if c != ord("n"):
        raise FormatError(
            f"binary configuration expected at byte {start}: expected tag 'n', found "
            f"{_show(c)}",
            src.name,
        )
    src.pos += 1
    (n,) = _I32.unpack(src.read_exact(4, "the atom count"))
    if n < 0:
        raise FormatError(f"binary configuration at byte {start}: negative atom count {n}", src.name)
    kw = {}
    stress = None
    features = {}
    have_l = have_p = False
    while True:
        c = src.skip_space()
        at = src.offset()
        if c < 0:
            raise FormatError(
                f"binary configuration starting at byte {start} truncated: end of file before "
                f"the '#' terminator", src.name)
        src.pos += 1
        tag = chr(c)
        if tag == "#":
            break
        if tag == "l":
            kw["lattice"] = np.frombuffer(src.read_exact(72, "the lattice"), "<f8").reshape(3, 3)
            have_l = True
        elif tag == "p":
            kw["positions"] = np.frombuffer(src.read_exact(24 * n, "the positions"), "<f8").reshape(n, 3)
            have_p = True
        elif tag == "t":
            kw["types"] = np.frombuffer(src.read_exact(4 * n, "the types"), "<i4").astype(np.int64)
        elif tag == "f":
            kw["forces"] = np.frombuffer(src.read_exact(24 * n, "the forces"), "<f8").reshape(n, 3)
        elif tag == "v":
            kw["site_energies"] = np.frombuffer(src.read_exact(8 * n, "the site energies"), "<f8")
        elif tag == "c":
            kw["charges"] = np.frombuffer(src.read_exact(8 * n, "the charges"), "<f8")
        elif tag == "s":
            stress = np.frombuffer(src.read_exact(48, "the stress"), "<f8")[_PS_FROM_BIN]
        elif tag == "e":
            (kw["energy"],) = _F64.unpack(src.read_exact(8, "the energy"))
        elif tag == "F":
            (lk,) = _I32.unpack(src.read_exact(4, "a feature key length"))
            if lk < 0:
                raise FormatError(f"binary configuration: negative feature key length at byte {at}", src.name)
            key = src.read_exact(lk, "a feature key")
            (lv,) = _I32.unpack(src.read_exact(4, "a feature value length"))
            if lv < 0:
                raise FormatError(f"binary configuration: negative feature value length at byte {at}", src.name)
            value = src.read_exact(lv, "a feature value")
            features[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        else:
            raise FormatError(
                f"binary configuration starting at byte {start}: unknown tag {_show(c)} at byte {at} "
                f"(expected one of l p t f v c s e F #)", src.name)
    if not (have_l and have_p):
        raise FormatError(
            f"binary configuration starting at byte {start} has no "
            f"{'lattice (l)' if not have_l else 'positions (p)'} record", src.name)
    kw.setdefault("types", np.zeros(n, dtype=np.int64))
    cfg = Configuration(**kw)
    cfg.plus_stress = None if stress is None else np.array(stress)
    # sorted like MLIP's std::map so that writing back reproduces the byte order
    cfg.features = dict(sorted(features.items(), key=lambda kv: kv[0].encode("utf-8", "surrogateescape")))
    return cfg


def _show(c):
    if c < 0:
        return "end of file"
    ch = chr(c)
    return repr(ch) if ch.isprintable() else f"byte 0x{c:02x}"


def _open_source(path_or_file, block_size):
    if isinstance(path_or_file, (str, os.PathLike)):
        fh = open(path_or_file, "rb")
        return fh, True
    return path_or_file, False


def iter_cfgbin(path_or_file, block_size=None):
    """Yield the configurations of a binary cfg file one by one (streaming).

    Parameters
    ----------
    path_or_file : path or binary file object
    block_size : int, optional
        Bytes read per block (default :data:`BLOCK_SIZE`).
    """
    fh, own = _open_source(path_or_file, block_size)
    src = ByteSource(fh, source_name(path_or_file), block_size)
    try:
        while True:
            c = src.skip_space()
            if c < 0:
                return
            yield read_record(src)
    finally:
        src.close()
        if own:
            fh.close()


def read_cfgbin(path_or_file):
    """All configurations of a binary cfg file as a list."""
    return list(iter_cfgbin(path_or_file))


def format_cfgbin(cfg):
    """The binary record of one configuration (bytes), tags in MLIP-2's order."""
    n = len(cfg)
    parts = [b"n", _I32.pack(n), b"l", np.ascontiguousarray(cfg.lattice, "<f8").tobytes(),
             b"p", np.ascontiguousarray(cfg.positions, "<f8").tobytes(),
             b"t", np.ascontiguousarray(cfg.types, "<i4").tobytes()]
    if cfg.forces is not None:
        parts += [b"f", np.ascontiguousarray(cfg.forces, "<f8").tobytes()]
    if cfg.site_energies is not None:
        parts += [b"v", np.ascontiguousarray(cfg.site_energies, "<f8").tobytes()]
    if cfg.charges is not None:
        parts += [b"c", np.ascontiguousarray(cfg.charges, "<f8").tobytes()]
    if cfg.plus_stress is not None:
        parts += [b"s", np.ascontiguousarray(np.asarray(cfg.plus_stress)[_BIN_FROM_PS], "<f8").tobytes()]
    if cfg.energy is not None:
        parts += [b"e", _F64.pack(cfg.energy)]
    items = [(str(k).encode("utf-8", "surrogateescape"), str(v).encode("utf-8", "surrogateescape"))
             for k, v in cfg.features.items()]
    for k, v in sorted(items):
        parts += [b"F", _I32.pack(len(k)), k, _I32.pack(len(v)), v]
    parts.append(b"#")
    return b"".join(parts)


def write_cfgbin(path_or_fh, cfgs, append=False):
    """Write configurations as binary records (streaming; atomic when given a path).

    Parameters
    ----------
    path_or_fh : path or binary file object
    cfgs : Configuration or iterable of Configuration
    append : bool
        Append to an existing file (path only).

    Returns
    -------
    int
        Number of configurations written.
    """
    if isinstance(cfgs, Configuration):
        cfgs = [cfgs]
    if isinstance(path_or_fh, (str, os.PathLike)):
        with atomic_open(path_or_fh, "wb", append=append) as fh:
            return _write_records(fh, cfgs)
    if isinstance(path_or_fh, io.TextIOBase):
        raise TypeError("binary cfg output needs a file opened in binary mode")
    return _write_records(path_or_fh, cfgs)


def _write_records(fh, cfgs):
    count = 0
    chunk = []
    size = 0
    for cfg in cfgs:
        rec = format_cfgbin(cfg)
        chunk.append(rec)
        size += len(rec)
        count += 1
        if size >= BLOCK_SIZE:
            fh.write(b"".join(chunk))
            chunk = []
            size = 0
    if chunk:
        fh.write(b"".join(chunk))
    return count
