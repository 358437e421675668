"""Where a client's log lives: a directory, a file:// URL, or kafka://."""

from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError


def split_config(config: Any, kwargs: dict) -> tuple[dict, dict]:
    """Accept ``Client(dict)``, ``Client("dir", dict)``, ``Client(log_dir=...)``."""
    if config is None:
        return {}, kwargs
    if isinstance(config, (str, os.PathLike)):
        return {"log.dir": os.fspath(config)}, kwargs
    if isinstance(config, dict):
        return dict(config), kwargs
    raise ConfigError(f"config must be a dict or a log location, not {type(config).__name__}")


def wants_kafka(config: Any, kwargs: dict) -> tuple[dict, dict, bool]:
    """(given, kwargs, is_kafka) for a client's constructor arguments: the
    Producer and Consumer hand a ``kafka://`` location to the Kafka backend."""
    given, kw = split_config(config, kwargs)
    where = (given.get("log.dir") or given.get("bootstrap.servers") or kw.get("log_dir")
             or kw.get("bootstrap_servers") or "")
    return given, kw, is_kafka(str(where))


def location_of(conf: dict) -> str:
    where = conf.get("log.dir") or conf.get("bootstrap.servers")
    if not where:
        raise ConfigError("say where the log lives: {'log.dir': '/path/to/data'} (or a kafka:// URL)")
    return where


def is_kafka(where: str) -> bool:
    return where.startswith("kafka://")


def local_path(where: str) -> str:
    if where.startswith("file://"):
        return where[len("file://"):]
    if "://" in where:
        raise ConfigError(f"unsupported log location {where!r}: use a directory, file:// or kafka://")
    return where
