"""tests/fds.py's wait for input works whatever a descriptor's number: a long session's descriptors pass 1,024,
which select.select refuses (ValueError: filedescriptor out of range in select())."""

from __future__ import annotations

import os
import resource

import pytest
from fds import readable


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
