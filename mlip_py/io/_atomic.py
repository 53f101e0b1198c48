"""Atomic file output: write to a temporary file beside the target, then rename.

A failed or interrupted write never leaves a half-written or truncated target:
either the old file (if any) stays as it was, or the complete new file replaces it.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", append=False, **kwargs):
    """Open a temporary file for writing that replaces ``path`` on success.

    With ``append=True`` the existing content of ``path`` (if any) is copied into the
    temporary file first, so the result is "old content + new content", still
    committed atomically.  On an exception (including KeyboardInterrupt) the
    temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **kwargs) as fh:
            if append and os.path.exists(path):
                with open(path, "rb") as old:
                    data = old.read()
                if binary:
                    fh.write(data)
                else:
                    fh.flush()
                    fh.buffer.write(data)
                    fh.buffer.flush()
            yield fh
        try:
            st = os.stat(path)
            os.chmod(tmp, st.st_mode & 0o7777)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
