"""Atomic file output: write to a temporary file beside the target, then rename.

A failed or interrupted write never leaves a half-written or truncated target:
either the old file (if any) stays as it was, or the complete new file replaces it.
"""
import contextlib
import itertools
import os


_counter = itertools.count()


def _create_temporary(directory, prefix, suffix):
    """Create a new empty file ``directory/prefix<unique>suffix`` (mode 0600, exclusive
    creation, as ``tempfile.mkstemp``; without importing :mod:`tempfile`, which costs
    every short ``mlp`` run a few milliseconds) and return its path."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(1000):
        name = os.path.join(directory, f"{prefix}{os.getpid():x}{next(_counter):x}"
                                       f"{os.urandom(4).hex()}{suffix}")
        try:
            fd = os.open(name, flags, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return name
    raise FileExistsError(f"no usable temporary file name in {directory}")


@contextlib.contextmanager
def atomic_path(path, copy_existing=False):
    """Yield ``(tmp_path, existed)``: a temporary file beside ``path`` that replaces it on success.

    For writers that need a file *name* (h5py, external tools).  With
    ``copy_existing=True`` the current content of ``path`` (if any) is copied into the
    temporary file first and ``existed`` tells whether there was any.  On an exception
    (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    untouched.  The result keeps the permissions of the file it replaces (or the umask's).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _create_temporary(directory, "." + os.path.basename(path) + ".", ".tmp")
    try:
        existed = copy_existing and os.path.exists(path) and os.path.getsize(path) > 0
        if existed:
            import shutil

            shutil.copyfile(path, tmp)
        yield tmp, existed
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


@contextlib.contextmanager
def atomic_open(path, mode="w", append=False, **kwargs):
    """Open a temporary file for writing that replaces ``path`` on success.

    With ``append=True`` the existing content of ``path`` (if any) is kept in front of
    what is written, still committed atomically.  On an exception (including
    KeyboardInterrupt) the temporary file is removed and ``path`` is left untouched.
    """
    binary = "b" in mode
    with atomic_path(path, copy_existing=append) as (tmp, _):
        # append: write after the copied content; otherwise the caller's mode (a seekable
        # "w"/"wb", which binary writers such as ASE's trajectory format rely on)
        with open(tmp, ("ab" if binary else "a") if append else mode, **kwargs) as fh:
            yield fh
