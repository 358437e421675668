"""``arrowlog metrics``: Prometheus /metrics for a data directory, no writer needed."""

from __future__ import annotations

import threading

import click

from .common import command_body, err, existing_data_dir, resolve_data_dir


@click.command(
    "metrics",
    epilog="""\b
Examples:
  arrowlog metrics --listen 127.0.0.1:9308       # then scrape http://127.0.0.1:9308/metrics
  arrowlog metrics --once                        # print one scrape and exit
""",
)
@click.option("--listen", default="127.0.0.1:9308", show_default=True, metavar="HOST:PORT",
              help="Address to serve /metrics on (port 0 picks a free one).")
@click.option("--once", is_flag=True, help="Print the metrics once on stdout instead of serving them.")
@command_body
def metrics_cmd(listen: str, once: bool, data: str | None) -> None:
    """Serve kafka_exporter-compatible metrics of the data directory's published state."""
    from arrowlog._optional import require

    require("prometheus_client", "arrowlog metrics")
    from prometheus_client import CollectorRegistry, generate_latest

    from arrowlog.metrics import LogDirCollector, start_metrics_http
    from arrowlog.storage import LogDir

    with LogDir(existing_data_dir(resolve_data_dir(data)), create=False) as logdir:
        collector = LogDirCollector(logdir)
        if once:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            click.echo(generate_latest(registry).decode(), nl=False)
            return
        http = start_metrics_http(collector, listen)
        click.echo(f"{http.host}:{http.port}")
        err(f"arrowlog: serving metrics of {logdir.path} on {http.url} (Ctrl-C stops)")
        try:
            threading.Event().wait()
        finally:
            http.close()
