"""Atomic outputs: the target is replaced only on success, never half-written."""
import os

import pytest

from mlip_py.io._atomic import atomic_open, atomic_path


def test_replaces_on_success_and_keeps_permissions(tmp_path):
    target = tmp_path / "out.cfg"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    with atomic_open(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    assert (os.stat(target).st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["out.cfg"]


def test_failure_leaves_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.cfg"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.cfg"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new.cfg") as fh:
            fh.write("partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.cfg"]


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_append_keeps_old_content(tmp_path, mode):
    target = tmp_path / "out.txt"
    target.write_bytes(b"first\n")
    with atomic_open(target, mode, append=True) as fh:
        fh.write(b"second\n" if "b" in mode else "second\n")
    assert target.read_bytes() == b"first\nsecond\n"


def test_atomic_path_for_name_based_writers(tmp_path):
    target = tmp_path / "store.bin"
    target.write_bytes(b"abc")
    with atomic_path(target, copy_existing=True) as (tmp, existed):
        assert existed
        with open(tmp, "rb") as fh:
            assert fh.read() == b"abc"
        with open(tmp, "ab") as fh:
            fh.write(b"def")
        assert target.read_bytes() == b"abc"
    assert target.read_bytes() == b"abcdef"
    with atomic_path(tmp_path / "fresh.bin") as (tmp, existed):
        assert not existed
        with open(tmp, "wb") as fh:
            fh.write(b"x")
    assert (tmp_path / "fresh.bin").read_bytes() == b"x"
