"""Serving the console and /metrics next to a running program.

:class:`ConsoleHTTP` runs the Flask app on Werkzeug's threaded WSGI server
in a daemon thread, with an idle timeout and a limit on open connections
(_http_limits.py); :func:`start_observers` starts what ``arrowlog serve
--metrics-listen/--console-listen`` asks for, reading the server's own
LogDir and in-memory groups. Both listen on loopback unless told otherwise;
beyond loopback the console requires a login (login.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .._http_limits import IDLE_TIMEOUT_S, MAX_CONNECTIONS, limited
from ..errors import ConfigError
from ..metrics import parse_listen
from .login import LOOPBACK, loopback_names, needs_login

log = logging.getLogger("arrowlog.console")



class ConsoleHTTP:
    """The console app served on ``host:port`` from a daemon thread (``close()`` stops it)."""

    def __init__(self, app: Any, host: str, port: int, *,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
        from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

        Server, Handler = limited(ThreadedWSGIServer, WSGIRequestHandler, idle_timeout_s, max_connections)
        try:
            self.httpd = Server(host, port, app, Handler)
        except (OSError, SystemExit) as exc:  # Werkzeug exits when the port is taken
            raise ConfigError(f"cannot listen for the console on {host}:{port}: {exc}") from None
        self.host = host
        self.port = self.httpd.server_port
        if host not in LOOPBACK:
            log.warning("the console listens on %s:%d, beyond loopback: its login (HTTP Basic) travels in "
                        "clear text unless TLS is put in front of it", host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="arrowlog-console", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_console_http(data_dir: Any, listen: str, *, allow_writes: bool = False,
                       login: bool | None = None, coordinator: Any = None, **limits: Any) -> ConsoleHTTP:
    """The console for ``data_dir`` (a path or an open LogDir) served on ``listen``;
    ``login`` None: required beyond loopback (login.needs_login)."""
    from .app import create_app

    host, port = parse_listen(listen, 8080)
    app = create_app(data_dir, allow_writes=allow_writes, login=needs_login(host, login), coordinator=coordinator,
                     trusted_hosts=loopback_names(host))
    return ConsoleHTTP(app, host, port, **limits)


def start_observers(server: Any) -> list:
    """Start /metrics and the console for a started KafkaServer, as its options
    ask; sets ``server.metrics`` (and the broker's) so requests are counted."""
    from .._optional import require

    if server.metrics_listen:
        require("prometheus_client", "--metrics-listen")
    if server.console_listen:
        for module in ("flask", "duckdb", "prometheus_client"):
            require(module, "--console-listen")
    started: list = []
    logdir = server.broker.store.log
    try:
        if server.metrics_listen:
            from prometheus_client import CollectorRegistry

            from ..metrics import LogDirCollector, ServerMetrics, start_metrics_http

            registry = CollectorRegistry(auto_describe=False)
            metrics = ServerMetrics(registry)
            collector = LogDirCollector(logdir, coordinator=server.broker.groups, server=server,
                                        broker_address=f"{server.host}:{server.port}",
                                        node_id=server.broker.config.node_id)
            http = start_metrics_http(collector, server.metrics_listen, registry)
            server.metrics = server.broker.metrics = metrics
            started.append(http)
            log.info("metrics on %s", http.url)
        if server.console_listen:
            console = start_console_http(logdir, server.console_listen, coordinator=server.broker.groups)
            started.append(console)
            log.info("console on %s", console.url)
    except BaseException:
        for s in started:
            s.close()
        raise
    return started
