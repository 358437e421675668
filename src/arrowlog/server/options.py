"""The one table of ``arrowlog serve`` options.

Both entry points read it: ``python -m arrowlog.server`` (argparse, in
``arrowlog.server.main``) and ``arrowlog serve`` (click, in
``arrowlog.cli.ops``), so an option added here appears in both ``--help``
pages with the same name, default and meaning.

To add an option: append an ``Option`` row whose ``kwarg`` is the keyword of
``arrowlog.server.serve`` it sets (``None`` for options the entry point
handles itself, like ``--log-level``), and give ``serve`` that keyword.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Mapping, NamedTuple


class Option(NamedTuple):
    flag: str                      # "--max-frame-bytes"
    kwarg: str | None              # keyword of serve() it sets; None: read by the entry point
    type: type                     # int, float, str, or bool for an on/off flag (default off)
    default: Any
    help: str
    config: str | None = None      # its Kafka-style config name (Kafka's own where Kafka has one)
    convert: Callable[[Any], Any] | None = None  # option value -> serve() value

    @property
    def dest(self) -> str:
        """The attribute name argparse and click both give this option."""
        return self.flag.lstrip("-").replace("-", "_")

    def help_text(self) -> str:
        return self.help + (f" [config: {self.config}]" if self.config else "")


def _not(value: bool) -> bool:
    return not value


# server.py's DEFAULT_MAX_FRAME has the same value (and says why it is below Kafka's 100 MiB).
_MAX_FRAME = 64 * 1024 * 1024
# Partitions one topic may have, and one CreateTopics request may create in all: each
# partition costs files, mappings and disk, so one request cannot claim unbounded amounts.
MAX_PARTITIONS_PER_TOPIC = 1000
MAX_PARTITIONS_PER_REQUEST = 10000

OPTIONS: tuple[Option, ...] = (
    Option("--advertised-host", "advertised_host", str, None,
           "host name clients are told to connect to (default: the listen host)", "advertised.listeners"),
    Option("--partitions", "default_partitions", int, 1,
           "partitions of auto-created topics", "num.partitions"),
    Option("--no-auto-create", "auto_create_topics", bool, False,
           "do not create topics on first use", "auto.create.topics.enable=false", _not),
    Option("--node-id", "node_id", int, 1, "the broker id clients see", "node.id"),
    Option("--max-frame-bytes", "max_frame_bytes", int, _MAX_FRAME,
           "largest request accepted, in bytes", "socket.request.max.bytes"),
    Option("--max-connections", "max_connections", int, 1000,
           "connections served at once", "max.connections"),
    Option("--idle-timeout", "idle_timeout_s", float, 600.0,
           "seconds before an idle connection closes", "connections.max.idle.ms"),
    Option("--first-request-timeout", "first_request_timeout_s", float, 5.0,
           "seconds a new connection has to send its first complete request"),
    Option("--request-timeout", "request_read_timeout_s", float, 30.0,
           "seconds a request body has to arrive after its size"),
    Option("--queued-max-request-bytes", "queued_max_request_bytes", int, None,
           "bytes of requests read but not yet answered, all connections together "
           "(default 256 MiB, or the frame limit if larger)", "queued.max.request.bytes"),
    Option("--max-inflight-requests", "max_inflight_requests", int, 64,
           "requests one connection may have awaiting responses before it is no longer read"),
    Option("--max-request-elements", "max_request_elements", int, 3_000,
           "array elements (topics, partitions, ...) one request may carry"),
    Option("--flush-interval", "flush_interval_s", float, 1.0,
           "seconds between fsyncs of the partitions written to", "log.flush.interval.ms"),
    Option("--max-partitions-per-topic", "max_partitions_per_topic", int, MAX_PARTITIONS_PER_TOPIC,
           "most partitions a topic may have (CreateTopics asking for more gets INVALID_PARTITIONS)",
           "max.partitions.per.topic"),
    Option("--max-partitions-per-request", "max_partitions_per_request", int, MAX_PARTITIONS_PER_REQUEST,
           "most partitions one CreateTopics request may create in all (more: POLICY_VIOLATION)",
           "max.partitions.per.request"),
    # Security (docs/SECURITY.md); checked by security.SecurityConfig, which says what is wrong.
    Option("--listener", "listener", str, "PLAINTEXT",
           "listener security protocol: PLAINTEXT (no TLS, no login), SSL, SASL_PLAINTEXT or SASL_SSL",
           "security.protocol"),
    Option("--ssl-cert", "ssl_cert", str, None,
           "PEM certificate (chain) of the server, for SSL and SASL_SSL", "ssl.keystore.location"),
    Option("--ssl-key", "ssl_key", str, None, "PEM private key of --ssl-cert", "ssl.key.location"),
    Option("--ssl-cafile", "ssl_cafile", str, None,
           "PEM CA bundle that signs client certificates", "ssl.truststore.location"),
    Option("--ssl-client-auth", "ssl_client_auth", str, "none",
           "ask for client certificates: none, requested or required (principal = certificate DN)",
           "ssl.client.auth"),
    Option("--sasl-mechanisms", "sasl_mechanisms", str, "SCRAM-SHA-256,SCRAM-SHA-512",
           "enabled SASL mechanisms, comma-separated: PLAIN (only over TLS or to loopback peers), "
           "SCRAM-SHA-256, SCRAM-SHA-512", "sasl.enabled.mechanisms"),
    Option("--super-users", "super_users", str, "",
           "principals allowed everything, 'User:admin;User:ops'", "super.users"),
    Option("--allow-everyone-if-no-acl-found", "allow_everyone_if_no_acl_found", bool, False,
           "a resource without ACLs is open to every authenticated principal (default: refused)",
           "allow.everyone.if.no.acl.found"),
    Option("--registry-listen", "registry_listen", str, None,
           "HOST:PORT to serve the schema registry REST API on (docs/REGISTRY.md; default: off)"),
    # Observability (docs/OPERATIONS.md): off unless given; loopback unless a host is named.
    Option("--metrics-listen", "metrics_listen", str, None,
           "HOST:PORT to serve Prometheus /metrics on (kafka_exporter's names), e.g. 127.0.0.1:9308"),
    Option("--console-listen", "console_listen", str, None,
           "HOST:PORT to serve the read-only web console on, e.g. 127.0.0.1:8080"),
    Option("--log-level", None, str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
)


def add_argparse_options(parser: argparse.ArgumentParser) -> None:
    for o in OPTIONS:
        if o.type is bool:
            parser.add_argument(o.flag, action="store_true", help=o.help_text())
        else:
            parser.add_argument(o.flag, type=o.type, default=o.default, help=o.help_text())


def click_options(fn: Callable) -> Callable:
    """Decorate a click command with every option of the table."""
    import click

    for o in reversed(OPTIONS):
        if o.type is bool:
            fn = click.option(o.flag, o.dest, is_flag=True, default=False, help=o.help_text())(fn)
        else:
            fn = click.option(o.flag, o.dest, type=o.type, default=o.default,
                              show_default=o.default is not None, help=o.help_text())(fn)
    return fn


def serve_kwargs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ``serve()`` keywords for parsed option values (keyed by ``Option.dest``)."""
    out = {}
    for o in OPTIONS:
        if o.kwarg is None:
            continue
        value = values.get(o.dest, o.default)
        out[o.kwarg] = o.convert(value) if o.convert else value
    return out


def run(data_dir: str, host: str, port: int, values: Mapping[str, Any]) -> int:
    """Serve until SIGTERM/SIGINT with the parsed option ``values``; the exit code.

    The bound ``HOST:PORT`` is printed on stdout once listening (then the registry's
    URL with ``--registry-listen``); logs go to stderr.
    """
    from . import serve

    logging.basicConfig(level=str(values.get("log_level") or "INFO").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(server):
        print(f"{server.host}:{server.port}", flush=True)
        if getattr(server, "registry_url", None):   # --registry-listen: its URL on the second line
            print(server.registry_url, flush=True)

    from arrowlog.errors import ArrowlogError

    try:
        serve(data_dir, host, port, ready=ready, **serve_kwargs(values))
    except ArrowlogError as exc:  # e.g. a ConfigError for an option value
        print(f"arrowlog serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"arrowlog serve: cannot serve {data_dir} on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
