"""Fixtures of the fault suite.

ARROWLOG_FAULT_LONG=1 runs the long counts (hundreds of kills, thousands of
flips); ARROWLOG_FAULT_SEED=<n> replays a run (every failure message names
its seed).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import faultlib
import pytest


@pytest.fixture
def seed(request) -> int:
    given = os.environ.get("ARROWLOG_FAULT_SEED")
    value = int(given) if given else random.SystemRandom().randrange(1 << 31)
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def data_dir(tmp_path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def root_workdir():
    """A scratch directory for loop images and mounts (root tests only)."""
    reason = faultlib.root_reason()
    if reason:
        pytest.skip(reason)
    path = tempfile.mkdtemp(prefix="arrowlog-fault-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ext4(root_workdir):
    images = []

    def make(size_mb: int = 96, options: str = "") -> faultlib.Ext4Image:
        img = faultlib.Ext4Image(os.path.join(root_workdir, f"img{len(images)}"), size_mb, options)
        images.append(img)
        return img

    yield make
    for img in images:
        img.close()
