"""arrowlog serve: a data directory as a single-node Kafka-compatible broker.

    from arrowlog.server import serve
    serve("data", host="127.0.0.1", port=9092)          # blocks until SIGTERM/SIGINT

or from a shell: ``python -m arrowlog.server --data data --listen 127.0.0.1:9092``.
``KafkaServer`` is the same server for use inside a running event loop.
See docs/PROTOCOL.md for the APIs and versions served.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from arrowlog.errors import ConfigError

from .options import MAX_PARTITIONS_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC
from .security import SecurityConfig
from .server import DEFAULT_MAX_FRAME, KafkaServer, Limits, run_until_signalled

__all__ = ["KafkaServer", "Limits", "SecurityConfig", "serve", "main"]


def serve(data_dir, host: str = "127.0.0.1", port: int = 9092, *, auto_create_topics: bool = True,
          default_partitions: int = 1, node_id: int = 1, advertised_host: str | None = None,
          max_frame_bytes: int = DEFAULT_MAX_FRAME, max_connections: int = 1000,
          idle_timeout_s: float = 600.0, flush_interval_s: float = 1.0,
          max_partitions_per_topic: int = MAX_PARTITIONS_PER_TOPIC,
          max_partitions_per_request: int = MAX_PARTITIONS_PER_REQUEST,
          listener: str = "PLAINTEXT", ssl_cert: str | None = None, ssl_key: str | None = None,
          ssl_cafile: str | None = None, ssl_client_auth: str = "none",
          sasl_mechanisms: str = "SCRAM-SHA-256,SCRAM-SHA-512", super_users: str = "",
          allow_everyone_if_no_acl_found: bool = False, registry_listen: str | None = None,
          metrics_listen: str | None = None, console_listen: str | None = None,
          ready=None, **limits) -> None:
    """Serve ``data_dir`` over the Kafka protocol until SIGTERM or SIGINT, then
    close connections and flush (fsync) every partition written to.

    ``port=0`` picks a free port; ``ready(server)`` is called once listening
    (``server.port`` is the bound port). Further keywords are ``Limits`` fields
    (``queued_max_request_bytes``, ``first_request_timeout_s``, ...). ``listener``
    to ``allow_everyone_if_no_acl_found`` set TLS, SASL and ACLs (docs/SECURITY.md);
    the default is a PLAINTEXT listener. An impossible combination raises ConfigError.
    ``registry_listen`` ("HOST:PORT") also serves the schema registry (docs/REGISTRY.md).
    ``metrics_listen`` and ``console_listen`` (``HOST:PORT``) serve Prometheus metrics
    and the read-only web console too (docs/OPERATIONS.md).
    """
    security = SecurityConfig(
        listener=listener, ssl_cert=ssl_cert, ssl_key=ssl_key, ssl_cafile=ssl_cafile,
        ssl_client_auth=ssl_client_auth, sasl_mechanisms=sasl_mechanisms, super_users=super_users,
        allow_everyone_if_no_acl_found=allow_everyone_if_no_acl_found)
    server_class: type[KafkaServer] = KafkaServer
    extra: dict[str, Any] = {}
    if registry_listen:
        from arrowlog.registry.service import RegistryKafkaServer

        server_class = RegistryKafkaServer
        try:
            extra["registry_host"], extra["registry_port"] = _parse_listen(registry_listen)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(str(exc).replace("--listen", "--registry-listen")) from None
    server = server_class(
        data_dir, host, port, **extra,
        limits=Limits(max_frame_bytes=max_frame_bytes, max_connections=max_connections,
                      idle_timeout_s=idle_timeout_s, **limits),
        auto_create_topics=auto_create_topics, default_partitions=default_partitions,
        node_id=node_id, advertised_host=advertised_host, flush_interval_s=flush_interval_s,
        max_partitions_per_topic=max_partitions_per_topic,
        max_partitions_per_request=max_partitions_per_request, security=security,
        metrics_listen=metrics_listen, console_listen=console_listen,
    )
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(run_until_signalled(server, ready))
    else:
        asyncio.run(run_until_signalled(server, ready))


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    """``python -m arrowlog.server --data DIR --listen 127.0.0.1:9092`` (options: server/options.py)."""
    from .options import add_argparse_options, run

    p = argparse.ArgumentParser(prog="python -m arrowlog.server", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data directory (created if missing)")
    p.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 9092),
                   help="HOST:PORT to listen on (default 127.0.0.1:9092; port 0 picks a free one)")
    add_argparse_options(p)
    args = p.parse_args(argv)
    host, port = args.listen
    return run(args.data, host, port, vars(args))
