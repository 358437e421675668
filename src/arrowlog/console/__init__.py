"""The arrowlog web console (``arrowlog console --data DIR``); see docs/OPERATIONS.md.

Needs the ``console`` extra (Flask, DuckDB, prometheus_client).
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
