"""Optional packages: import them by name, or say which extra installs them.

arrowlog's core needs only numpy, pyarrow, click and rich; pandas, polars,
duckdb and confluent-kafka come with extras (``pip install
'arrowlog[kafka]'``). Every optional import goes through :func:`require`,
so a missing one is a :class:`MissingDependencyError` naming the extra to
install, never a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ArrowlogError

# top-level module name -> (the extra that installs it, what needs it)
EXTRAS = {
    "pandas": "pandas",
    "polars": "polars",
    "duckdb": "duckdb",
    "confluent_kafka": "kafka",
    "fastavro": "registry",
    "aiohttp": "registry",
    "jsonschema": "registry",
    "prometheus_client": "metrics",
    "flask": "console",
    "werkzeug": "console",
}


class MissingDependencyError(ArrowlogError, ImportError):
    """An optional package this feature needs is not installed."""


def install_hint(module: str) -> str | None:
    """``pip install 'arrowlog[extra]'`` for a module an extra installs, else None."""
    extra = EXTRAS.get(module.split(".")[0])
    return None if extra is None else f"pip install 'arrowlog[{extra}]'"


def missing(module: str, feature: str) -> MissingDependencyError:
    hint = install_hint(module) or f"pip install {module.split('.')[0]}"
    return MissingDependencyError(f"{feature} needs the package {module.split('.')[0]!r}, which is not installed: "
                                  f"{hint}")


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` (e.g. "to_polars()"), or raise
    MissingDependencyError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: show that
        raise missing(module, feature) from None


__all__ = ["MissingDependencyError", "require", "install_hint", "missing", "EXTRAS"]
