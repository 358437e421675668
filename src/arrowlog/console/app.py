"""The web console: a Flask app over one data directory.

Screens: topics (``/``), a topic's message browser (``/topics/<topic>``),
consumer groups (``/groups``, ``/groups/<group>``) and the SQL box
(``/sql``). Pages are rendered on the server by Jinja2 with autoescaping on,
so every key, value, header and name is shown as text (a ``<script>`` value
renders as ``&lt;script&gt;``); no page runs script.

Writes (a consumer-group offset reset) exist only when the app is created
with ``allow_writes=True``, and every POST must carry the CSRF token of the
session (a random per-process secret signs the session cookie): without it
the answer is 403 and nothing changes. The SQL box posts too, with the same
token, so another site cannot make a browser run queries. With ``login``,
every request first needs a login as one of the directory's SCRAM users
(login.py).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from flask import Flask, Response, abort, redirect, render_template, request, session, url_for

from ..errors import ArrowlogError, UnknownPartitionError, UnknownTopicError
from ..groups.admin import RESET_MODES
from ..groups.store import UnknownGroupError
from ..storage import LogDir
from .browse import MAX_PAGE_ROWS, PAGE_ROWS, Browser, parse_int, parse_time
from .login import password_checker
from .sql import ROW_LIMIT, TIME_LIMIT_S, run_query


def _csrf_token() -> str:
    token = session.get("csrf")
    if token is None:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def create_app(data_dir: Any, *, allow_writes: bool = False, login: bool = False, coordinator: Any = None,
               trusted_hosts: list[str] | None = None, sql_time_limit_s: float = TIME_LIMIT_S,
               sql_row_limit: int = ROW_LIMIT) -> Flask:
    """The console for ``data_dir`` (a path or an open LogDir). ``login``: every
    request must log in (HTTP Basic) as one of the directory's SCRAM users.
    ``coordinator``: the Kafka server's groups, to show their members too.
    ``trusted_hosts``: the only Host headers answered (others get 400), so a web
    page cannot reach a loopback console through DNS rebinding."""
    logdir = data_dir if isinstance(data_dir, LogDir) else LogDir(data_dir, create=False)
    check_password = password_checker(logdir.path) if login else None
    browser = Browser(logdir, coordinator)
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", TRUSTED_HOSTS=trusted_hosts)
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.extensions["arrowlog"] = {"logdir": logdir, "browser": browser}

    @app.context_processor
    def _globals() -> dict:
        return {"csrf_token": _csrf_token(), "allow_writes": allow_writes, "data_dir": logdir.path}

    @app.before_request
    def _check_login():
        if check_password is None or session.get("user"):
            return None
        auth = request.authorization
        if auth is not None and auth.type == "basic" and check_password(auth.username or "", auth.password or ""):
            session["user"] = auth.username
            return None
        return Response("Log in as a user of this data directory (arrowlog user add NAME).\n", 401,
                        {"WWW-Authenticate": 'Basic realm="arrowlog console", charset="UTF-8"',
                         "Content-Type": "text/plain; charset=utf-8"})

    @app.before_request
    def _check_csrf() -> None:
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            # as bytes: compare_digest refuses a str with non-ASCII characters (a TypeError: a 500)
            if not sent or not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()):
                abort(403, "missing or wrong CSRF token: reload the page and submit the form again")

    @app.errorhandler(ArrowlogError)
    def _arrowlog_error(exc: ArrowlogError):
        missing = isinstance(exc, (UnknownTopicError, UnknownPartitionError, UnknownGroupError))
        return render_template("error.html", message=str(exc)), 404 if missing else 400

    @app.errorhandler(403)
    def _forbidden(exc):
        return render_template("error.html", message=exc.description), 403

    @app.errorhandler(404)
    def _not_found(exc):
        return render_template("error.html", message=exc.description), 404

    @app.get("/")
    def topics():
        return render_template("topics.html", topics=browser.topics())

    @app.get("/topics/<topic>")
    def messages(topic: str):
        args = request.args
        t = logdir.topic(topic)
        rows = min(max(parse_int(args.get("rows"), "rows", PAGE_ROWS), 1), MAX_PAGE_ROWS)
        mode = args.get("mode", "offset")
        key = args.get("key", "")
        if mode == "key" and key:
            page = browser.search_key(topic, key.encode(), parse_int(args.get("from"), "from"), rows)
        else:
            partition = parse_int(args.get("partition"), "partition", 0)
            if mode == "time" and args.get("time"):
                page = browser.seek_time(topic, partition, parse_time(args["time"]), rows)
            else:
                mode = "offset"
                page = browser.page(topic, partition, parse_int(args.get("offset"), "offset"), rows)
        return render_template("messages.html", topic=t, page=page, mode=mode, key=key, rows=rows,
                               time_value=args.get("time", ""))

    @app.get("/groups")
    def groups():
        return render_template("groups.html", groups=browser.groups())

    @app.get("/groups/<group>")
    def group(group: str):
        return render_template("group.html", group=browser.group(group), modes=RESET_MODES, plan=None)

    @app.post("/groups/<group>/reset")
    def reset(group: str):
        if not allow_writes:
            abort(403, "the console is read-only: start it with --allow-writes to reset offsets")
        form = request.form
        to = form.get("to", "")
        value: Any = None
        if to in ("offset", "shift"):
            value = parse_int(form.get("value"), "value")
        elif to == "timestamp":
            value = parse_time(form.get("value", ""))
        topics = [t.strip() for t in form.get("topics", "").split(",") if t.strip()] or None
        execute = form.get("action") == "execute"
        plan = browser.reset_offsets(group, topics, to, value, execute)
        if execute:
            return redirect(url_for("group", group=group, applied=len(plan)), code=303)
        return render_template("group.html", group=browser.group(group), modes=RESET_MODES, plan=plan,
                               form=form)

    @app.route("/sql", methods=["GET", "POST"])
    def sql():
        query = request.form.get("query", "") if request.method == "POST" else ""
        result = error = None
        elapsed = None
        if query:
            started = time.perf_counter()
            try:
                result = run_query(logdir, query, time_limit_s=sql_time_limit_s, row_limit=sql_row_limit)
            except ArrowlogError as exc:
                error = str(exc)
            elapsed = time.perf_counter() - started
        return render_template("sql.html", query=query, result=result, error=error, elapsed=elapsed,
                               topics=logdir.list_topics(), row_limit=sql_row_limit,
                               time_limit=sql_time_limit_s), (400 if error else 200)

    return app
