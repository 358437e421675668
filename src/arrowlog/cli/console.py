"""``arrowlog console``: the web console for a data directory."""

from __future__ import annotations

import click

from .common import command_body, err, resolve_data_dir


@click.command(
    "console",
    epilog="""\b
Examples:
  arrowlog console                               # http://127.0.0.1:8080/, read-only
  arrowlog console --listen 127.0.0.1:0 --allow-writes
""",
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to serve the console on (port 0 picks a free one).")
@click.option("--allow-writes", is_flag=True,
              help="Allow consumer-group offset resets (each form carries a CSRF token).")
@click.option("--login/--no-login", default=None,
              help="Require a login as one of the directory's users (arrowlog user add) "
                   "[default: only beyond loopback].")
@command_body
def console_cmd(listen: str, allow_writes: bool, login: bool | None, data: str | None) -> None:
    """Browse topics, records and consumer groups, and query topics with SQL, in a browser."""
    from arrowlog._optional import require

    for module in ("flask", "duckdb", "prometheus_client"):
        require(module, "arrowlog console")
    from arrowlog.console.serving import start_console_http
    http = start_console_http(resolve_data_dir(data), listen, allow_writes=allow_writes, login=login)
    click.echo(f"{http.host}:{http.port}")
    err(f"arrowlog: console on {http.url}{' (writes allowed)' if allow_writes else ' (read-only)'}; Ctrl-C stops")
    try:
        http.thread.join()
    finally:
        http.close()
