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
import logging
import sys

from arrowlog.errors import ConfigError

from .security import SecurityConfig
from .security.cli import add_security_arguments, security_config_from_args
from .server import DEFAULT_MAX_FRAME, KafkaServer, Limits, run_until_signalled

__all__ = ["KafkaServer", "Limits", "SecurityConfig", "serve", "main"]


def serve(data_dir, host: str = "127.0.0.1", port: int = 9092, *, auto_create_topics: bool = True,
          default_partitions: int = 1, node_id: int = 1, advertised_host: str | None = None,
          max_frame_bytes: int = DEFAULT_MAX_FRAME, max_connections: int = 1000,
          idle_timeout_s: float = 600.0, flush_interval_s: float = 1.0, ready=None,
          security: SecurityConfig | None = None) -> None:
    """Serve ``data_dir`` over the Kafka protocol until SIGTERM or SIGINT, then
    close connections and flush (fsync) every partition written to.

    ``port=0`` picks a free port; ``ready(server)`` is called once listening
    (``server.port`` is the bound port). ``security`` sets TLS, SASL and ACLs
    (docs/SECURITY.md); the default is a PLAINTEXT listener.
    """
    server = KafkaServer(
        data_dir, host, port,
        limits=Limits(max_frame_bytes=max_frame_bytes, max_connections=max_connections,
                      idle_timeout_s=idle_timeout_s),
        auto_create_topics=auto_create_topics, default_partitions=default_partitions,
        node_id=node_id, advertised_host=advertised_host, flush_interval_s=flush_interval_s,
        security=security,
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
    """``python -m arrowlog.server --data DIR --listen 127.0.0.1:9092``."""
    p = argparse.ArgumentParser(prog="arrowlog serve", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data directory (created if missing)")
    p.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 9092),
                   help="HOST:PORT to listen on (default 127.0.0.1:9092; port 0 picks a free one)")
    p.add_argument("--advertised-host", default=None, help="host name clients are told to connect to")
    p.add_argument("--partitions", type=int, default=1, help="partitions of auto-created topics")
    p.add_argument("--no-auto-create", action="store_true", help="do not create topics on first use")
    p.add_argument("--node-id", type=int, default=1)
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME)
    p.add_argument("--max-connections", type=int, default=1000)
    p.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before an idle connection closes")
    p.add_argument("--log-level", default="INFO")
    add_security_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen

    def ready(server):
        # The bound address goes to stdout (data); everything else is logged to stderr.
        print(f"{server.host}:{server.port}", flush=True)

    try:
        security = security_config_from_args(args)
    except ConfigError as exc:
        print(f"arrowlog serve: {exc}", file=sys.stderr)
        return 2
    try:
        serve(args.data, host, port, security=security, auto_create_topics=not args.no_auto_create,
              default_partitions=args.partitions, node_id=args.node_id,
              advertised_host=args.advertised_host, max_frame_bytes=args.max_frame_bytes,
              max_connections=args.max_connections, idle_timeout_s=args.idle_timeout, ready=ready)
    except OSError as exc:
        print(f"arrowlog serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # e.g. a TLS certificate that does not load
        print(f"arrowlog serve: {exc}", file=sys.stderr)
        return 2
    return 0
