"""Shared fixtures: every test gets its own data directory; the run checks it leaked no descriptors."""

from __future__ import annotations

import faulthandler

import pytest
from fds import DescriptorGuard

faulthandler.enable()

# Descriptors a run may hold at its end beyond those it started with. The suite runs in one
# process, so leaked descriptors pile up until a test fails far from the leak (select() refused
# descriptors numbered 1,024 or more; RLIMIT_NOFILE is often 1,024). Other libraries' own (thread
# pools, event loops, clients' sockets) stay well under this.
FD_ALLOWANCE = 300


@pytest.fixture(scope="session", autouse=True)
def no_descriptor_leak(tmp_path_factory):
    """An error at the run's last teardown when it ends holding more than FD_ALLOWANCE descriptors
    beyond its start, naming the tests (their temporary directories) and places they point to."""
    guard = DescriptorGuard(FD_ALLOWANCE)
    yield
    try:
        guard.check(str(tmp_path_factory.getbasetemp()))
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    return str(d)
