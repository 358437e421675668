"""The console's SQL box: DuckDB over the topics, and nothing else.

Each query runs on a fresh in-memory DuckDB connection configured with
``enable_external_access=false`` (no files, no network, no extensions
loaded from disk), extension auto-install/auto-load off and
``lock_configuration=true`` (a query cannot ``SET`` its way out). On top,
only one read statement is accepted (SELECT, or EXPLAIN of one): ATTACH,
COPY, INSTALL/LOAD, EXPORT, SET, PRAGMA and DDL are refused before DuckDB
sees them. A query reaches only the topics it names, each registered as an
``arrowlog.dataset`` (partition, offset, timestamp, key, value, headers):
DuckDB pushes projections and filters on partition, offset and timestamp
into it, so a query reads what it needs through the indexes rather than
whole topics. A query is interrupted after ``time_limit_s``; at most
``row_limit`` rows come back.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from ..dataset import dataset
from ..errors import ArrowlogError

TIME_LIMIT_S = 5.0
ROW_LIMIT = 1000
MAX_QUERY_CHARS = 20_000

_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


class SqlError(ArrowlogError):
    """A console SQL query was refused or failed."""


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[tuple]
    truncated: bool


def _named_topics(logdir, query: str) -> list[str]:
    """Topics whose name appears in the query as a word (only those are registered)."""
    return [t for t in logdir.list_topics() if re.search(r"(?<![\w.-])" + re.escape(t) + r"(?![\w.-])", query)]


def run_query(logdir, query: str, *, time_limit_s: float = TIME_LIMIT_S, row_limit: int = ROW_LIMIT) -> SqlResult:
    import duckdb

    query = (query or "").strip()
    if not query:
        raise SqlError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise SqlError(f"the query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    con = duckdb.connect(":memory:", config=_CONFIG)
    try:
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise SqlError(f"{exc}") from None
        if len(statements) != 1:
            raise SqlError(f"one statement at a time, please ({len(statements)} given)")
        kind = statements[0].type
        if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
            raise SqlError(f"only SELECT queries run here; {kind.name} is refused "
                           "(the SQL box reads topics, it does not attach, copy, install or change settings)")
        for topic in _named_topics(logdir, query):
            con.register(topic, dataset(logdir, topic))
        timer = threading.Timer(time_limit_s, con.interrupt)
        timer.start()
        try:
            cur = con.execute(query)
            rows = cur.fetchmany(row_limit + 1)
            columns = [d[0] for d in cur.description or []]
        except duckdb.InterruptException:
            raise SqlError(f"the query ran longer than {time_limit_s:g} s and was interrupted") from None
        except duckdb.Error as exc:
            raise SqlError(str(exc)) from None
        finally:
            timer.cancel()
        return SqlResult(columns, rows[:row_limit], len(rows) > row_limit)
    finally:
        con.close()
