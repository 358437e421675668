"""Shared fixtures: every test gets its own data directory."""

from __future__ import annotations

import faulthandler

import pytest

faulthandler.enable()


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    return str(d)
