"""tests/fds.py: the wait for input works whatever a descriptor's number (a long session's descriptors pass
1,024, which select.select refuses: ValueError: filedescriptor out of range in select()); the guard the run
ends with (tests/conftest.py) names what was left open."""

from __future__ import annotations

import os
import resource
import threading

import pytest
from fds import DescriptorGuard, readable


@pytest.fixture
def high_pipe():
    """A pipe whose read end is numbered above 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1100
    if soft <= want:
        if hard != resource.RLIM_INFINITY and hard <= want:
            pytest.skip(f"the hard descriptor limit ({hard}) is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want + 1, hard))
    r, w = os.pipe()
    high = os.dup2(r, want)
    os.close(r)
    try:
        yield high, w
    finally:
        os.close(high)
        os.close(w)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_readable_waits_on_a_descriptor_numbered_above_1024(high_pipe):
    r, w = high_pipe
    assert r > 1024
    assert readable(r, timeout=0) == []
    os.write(w, b"x")
    assert readable(r, timeout=60) == [r]
    assert os.read(r, 1) == b"x"


def test_readable_reports_the_end_of_a_pipe_and_returns_the_objects_it_was_given(tmp_path):
    r, w = os.pipe()
    with os.fdopen(r, "rb") as f:
        assert readable(f, timeout=0) == []
        os.close(w)
        assert readable(f, timeout=60) == [f]
        assert f.read() == b""


def test_the_descriptor_guard_names_what_was_left_open_beyond_its_allowance(tmp_path):
    guard = DescriptorGuard(allowance=2, settle_s=0, under=str(tmp_path))
    (tmp_path / "t1").mkdir()
    kept = [open(tmp_path / "t1" / f"f{i}", "w") for i in range(3)]
    try:
        with pytest.raises(AssertionError) as info:
            guard.check(str(tmp_path))
        assert "3 more file descriptors are open than at the start (allowed: 2)" in str(info.value)
        assert str(info.value).endswith(f"\n     3  {os.path.realpath(tmp_path / 't1')}")
        kept.pop().close()
        guard.check(str(tmp_path))                      # within the allowance
    finally:
        for f in kept:
            f.close()


def test_the_descriptor_guard_counts_after_a_collection_and_waits_for_a_late_close(tmp_path):
    guard = DescriptorGuard(allowance=0, settle_s=60, under=str(tmp_path))

    class Cycle:                                        # collected only by the garbage collector
        def __init__(self):
            self.me = self
            self.f = open(tmp_path / "cycle", "w")

    Cycle()
    late = open(tmp_path / "late", "w")
    threading.Timer(0.2, late.close).start()            # closed by another thread, later
    guard.check(str(tmp_path))
    assert late.closed
