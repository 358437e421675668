"""Where a client's log lives, said explicitly, never guessed.

* ``log.dir`` (or a path given as the first argument) is a local data
  directory, or a cluster when it is a ``kafka://host:port`` URL;
* ``bootstrap.servers`` without ``log.dir`` is a Kafka cluster, as it is for
  confluent-kafka: ``{"bootstrap.servers": "localhost:9092"}`` connects to
  a broker and never creates a directory named ``localhost:9092``.

A Producer creates a data directory that does not exist yet (or initialises
an empty one), with a one-line notice on the ``arrowlog`` logger; it refuses
a directory that holds other files. Consumers never create one: a path that
is not an arrowlog data directory raises NotADataDirectoryError.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from .errors import ConfigError, InvalidArgumentError, NotADataDirectoryError

log = logging.getLogger("arrowlog")

# host:port[,host:port...]: what a broker list looks like
_BROKERS_RE = re.compile(r"\[?[A-Za-z0-9_.:-]*\]?:\d{1,5}(\s*,\s*\[?[A-Za-z0-9_.:-]*\]?:\d{1,5})*")


def log_location(log: Any, what: str, *, kafka: bool = True) -> str:
    """The location a reader (``replay``, ``dataset``) was given as a path,
    else the InvalidArgumentError that says what it takes."""
    if isinstance(log, (str, os.PathLike)):
        return os.fspath(log)
    cluster = " or kafka://host:port" if kafka else ""
    raise InvalidArgumentError(f"{what} takes a data directory (a path, file:// URL or LogDir){cluster}, "
                               f"not {type(log).__name__}")


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
    Producer and Consumer hand a cluster (``kafka://`` or ``bootstrap.servers``
    without ``log.dir``) to the Kafka backend."""
    given, kw = split_config(config, kwargs)
    log_dir = given.get("log.dir") or kw.get("log_dir")
    if log_dir:
        return given, kw, is_kafka(str(log_dir))
    servers = given.get("bootstrap.servers") or kw.get("bootstrap_servers")
    if servers:
        check_brokers(str(servers))
        return given, kw, True
    return given, kw, False


def check_brokers(servers: str) -> None:
    """``bootstrap.servers`` names brokers; a path there is a mistake."""
    if servers.startswith("kafka://"):
        return
    if not _BROKERS_RE.fullmatch(servers.strip()):
        raise ConfigError(f"bootstrap.servers {servers!r} is not a broker list (host:port[,host:port]): "
                          f"for a local data directory use {{'log.dir': {servers!r}}}")


def location_of(conf: dict) -> str:
    where = conf.get("log.dir")
    if not where:
        raise ConfigError("say where the log lives: {'log.dir': '/path/to/data'} for a local directory, or "
                          "{'bootstrap.servers': 'host:9092'} for a Kafka cluster")
    return where


def is_kafka(where: str) -> bool:
    return where.startswith("kafka://")


def local_path(where: str) -> str:
    if where.startswith("file://"):
        return where[len("file://"):]
    if "://" in where:
        raise ConfigError(f"unsupported log location {where!r}: use a directory, file:// or kafka://")
    return where


def is_data_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "topics"))


def open_data_dir(where: str, *, create: bool, logger: Any = None) -> Any:
    """The LogDir at ``where``. With ``create`` (producers) a missing or
    empty directory becomes a data directory, with a notice; otherwise (and
    for a directory holding other files) NotADataDirectoryError."""
    from .storage import LogDir

    path = os.path.abspath(local_path(where))
    if is_data_dir(path):
        return LogDir(path, create=create)
    if _BROKERS_RE.fullmatch(where) and not os.path.exists(path):
        raise ConfigError(f"log.dir {where!r} looks like a Kafka broker address, not a directory: use "
                          f"{{'bootstrap.servers': {where!r}}} (or kafka://{where}) for a cluster, or a path "
                          "such as ./data for a local directory")
    if not create:
        raise NotADataDirectoryError(f"not an arrowlog data directory: {path} (it has no topics/ directory): "
                                     "check log.dir, or produce to it first")
    logdir = LogDir(path, create=True)
    (logger or log).info("arrowlog: created data directory %s", path)
    return logdir
