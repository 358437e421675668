"""The Confluent-compatible REST API (aiohttp), served in the broker's event loop.

Bodies larger than ``MAX_BODY_BYTES`` are refused with 413 from their
Content-Length, before they are read; a body without a length stops being
read at the same size. Errors answer ``{"error_code": ..., "message": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from . import errors as RE
from .auth import Auth
from .errors import RegistryError
from .schemas import MAX_SCHEMA_BYTES, SCHEMA_TYPES, load_json, parse
from .store import Registry

log = logging.getLogger("arrowlog.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# A connection that sends nothing for this long (also before its first request) is closed.
IDLE_TIMEOUT_S = 30.0
AUTH = web.AppKey("auth", Auth)   # when the Kafka listener uses SASL or SSL (auth.py)
IDLE = web.AppKey("idle_timeout_s", float)   # also between the chunks of a request body
# A schema of MAX_SCHEMA_BYTES escaped inside a JSON string can double in size.
MAX_BODY_BYTES = 2 * MAX_SCHEMA_BYTES + 4096


def _reply(body, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=CONTENT_TYPE)


def _error(status: int, code: int, message: str) -> web.Response:
    return _reply({"error_code": code, "message": message}, status)


@web.middleware
async def _errors(request: web.Request, handler):
    auth = request.app.get(AUTH)
    if auth is not None:
        refused = auth.check(request)
        if refused is not None:
            return refused
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return _error(413, 413, f"the request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.error_code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, 413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        return _error(exc.status, exc.status, exc.reason)


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


async def _read(request: web.Request) -> bytes:
    """The request body; a body that sends nothing for the idle timeout closes the
    connection (aiohttp's keep-alive timeout does not run while a body is read, so
    a Content-Length never met held the connection, and its descriptor, forever)."""
    idle = request.app[IDLE]
    body = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.readany(), idle)
        except asyncio.TimeoutError:
            if request.transport is not None:
                request.transport.close()
            raise RegistryError(408, 408, f"the request body sent nothing for {idle:g} s") from None
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(body))


async def _body(request: web.Request) -> dict:
    raw = await _read(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryError(400, 400, "the request body is not UTF-8") from None
    if not text.strip():
        return {}
    value = load_json(text, "the request body")
    if not isinstance(value, dict):
        raise RegistryError(422, RE.UNPROCESSABLE, "the request body must be a JSON object")
    return value


def _schema_from(body: dict):
    if not isinstance(body.get("schema"), str):
        raise RegistryError(422, RE.INVALID_SCHEMA, "the body needs a \"schema\" string")
    return parse(body["schema"], body.get("schemaType"), body.get("references"))


class RegistryApp:
    """The routes over one ``Registry``; ``app`` is the aiohttp Application."""

    def __init__(self, registry: Registry, auth=None, idle_timeout_s: float = IDLE_TIMEOUT_S):
        self.registry = registry
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors])
        app[AUTH] = auth
        app[IDLE] = idle_timeout_s
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/schemas/types", self.types)
        r.add_get("/schemas/ids/{id}", self.schema_by_id)
        r.add_get("/schemas/ids/{id}/schema", self.schema_text_by_id)
        r.add_get("/schemas/ids/{id}/versions", self.versions_of_id)
        r.add_get("/schemas/ids/{id}/subjects", self.subjects_of_id)
        r.add_get("/subjects", self.subjects)
        r.add_post("/subjects/{subject}", self.lookup)
        r.add_delete("/subjects/{subject}", self.delete_subject)
        r.add_get("/subjects/{subject}/versions", self.versions)
        r.add_post("/subjects/{subject}/versions", self.register)
        r.add_get("/subjects/{subject}/versions/{version}", self.get_version)
        r.add_get("/subjects/{subject}/versions/{version}/schema", self.get_version_schema)
        r.add_delete("/subjects/{subject}/versions/{version}", self.delete_version)
        r.add_post("/compatibility/subjects/{subject}/versions/{version}", self.test_compat)
        r.add_post("/compatibility/subjects/{subject}/versions", self.test_compat_all)
        r.add_get("/config", self.get_config)
        r.add_put("/config", self.put_config)
        r.add_delete("/config", self.delete_config)
        r.add_get("/config/{subject}", self.get_config)
        r.add_put("/config/{subject}", self.put_config)
        r.add_delete("/config/{subject}", self.delete_config)
        r.add_get("/mode", self.mode)
        self.app = app

    # --- helpers
    def _version_body(self, v) -> dict:
        s = self.registry.schema(v.id)
        out = {"subject": v.subject, "version": v.version, "id": v.id, "schema": s.text}
        if s.schema_type != "AVRO":
            out["schemaType"] = s.schema_type
        return out

    @staticmethod
    def _id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise RE.not_found(RE.SCHEMA_NOT_FOUND, f"Schema {request.match_info['id']!r} not found") from None

    # --- routes
    async def root(self, request):
        return _reply({})

    async def mode(self, request):
        return _reply({"mode": "READWRITE"})

    async def types(self, request):
        return _reply(list(SCHEMA_TYPES))

    async def schema_by_id(self, request):
        s = self.registry.schema(self._id(request))
        out = {"schema": s.text}
        if s.schema_type != "AVRO":
            out["schemaType"] = s.schema_type
        return _reply(out)

    async def schema_text_by_id(self, request):
        return _reply(self.registry.schema(self._id(request)).value)

    def _uses(self, sid: int):
        self.registry.schema(sid)
        return [v for vs in self.registry.subjects.values() for v in vs.values() if v.id == sid and not v.deleted]

    async def versions_of_id(self, request):
        return _reply([{"subject": v.subject, "version": v.version} for v in self._uses(self._id(request))])

    async def subjects_of_id(self, request):
        return _reply(sorted({v.subject for v in self._uses(self._id(request))}))

    async def subjects(self, request):
        return _reply(self.registry.subject_names(_flag(request, "deleted")))

    async def versions(self, request):
        vs = self.registry.versions(request.match_info["subject"], _flag(request, "deleted"))
        return _reply([v.version for v in vs])

    async def register(self, request):
        subject = request.match_info["subject"]
        schema = _schema_from(await _body(request))
        return _reply({"id": self.registry.register(subject, schema)})

    async def lookup(self, request):
        subject = request.match_info["subject"]
        schema = _schema_from(await _body(request))
        v = self.registry.lookup(subject, schema, _flag(request, "deleted"))
        return _reply(self._version_body(v))

    async def get_version(self, request):
        v = self.registry.version(request.match_info["subject"], request.match_info["version"],
                                  _flag(request, "deleted"))
        return _reply(self._version_body(v))

    async def get_version_schema(self, request):
        v = self.registry.version(request.match_info["subject"], request.match_info["version"])
        return _reply(self.registry.schema(v.id).value)

    async def delete_version(self, request):
        return _reply(self.registry.delete_version(request.match_info["subject"], request.match_info["version"],
                                                   _flag(request, "permanent")))

    async def delete_subject(self, request):
        return _reply(self.registry.delete_subject(request.match_info["subject"], _flag(request, "permanent")))

    async def test_compat(self, request):
        subject = request.match_info["subject"]
        schema = _schema_from(await _body(request))
        mode = self.registry.compatibility(subject)
        if mode.endswith("_TRANSITIVE"):
            against = self.registry.versions(subject)
        else:
            against = [self.registry.version(subject, request.match_info["version"])]
        return self._compat_reply(request, subject, schema, against)

    def _compat_reply(self, request, subject, schema, against) -> web.Response:
        problems = self.registry.check(subject, schema, against)
        out: dict[str, bool | list[str]] = {"is_compatible": not problems}
        if _flag(request, "verbose"):
            out["messages"] = problems
        return _reply(out)

    async def test_compat_all(self, request):
        subject = request.match_info["subject"]
        schema = _schema_from(await _body(request))
        try:
            against = self.registry.versions(subject)
        except RegistryError:
            against = []
        return self._compat_reply(request, subject, schema, against)

    async def get_config(self, request):
        subject = request.match_info.get("subject")
        if subject is not None and subject not in self.registry.configs and not _flag(request, "defaultToGlobal"):
            raise RE.not_found(RE.SUBJECT_LEVEL_CONFIG_NOT_FOUND, f"Subject '{subject}' does not have "
                               "subject-level compatibility configured")
        return _reply({"compatibilityLevel": self.registry.compatibility(subject)})

    async def put_config(self, request):
        body = await _body(request)
        mode = self.registry.set_compatibility(request.match_info.get("subject"), body.get("compatibility"))
        return _reply({"compatibility": mode})

    async def delete_config(self, request):
        mode = self.registry.delete_compatibility(request.match_info.get("subject"))
        return _reply({"compatibilityLevel": mode})


async def start(registry: Registry, host: str, port: int, *, ssl_context=None, auth=None,
                idle_timeout_s: float = IDLE_TIMEOUT_S) -> tuple[web.AppRunner, int]:
    """Listen on ``host:port`` (0: a free port) in the running loop, over TLS with
    ``ssl_context``, checking ``auth`` (auth.py) first; a connection idle for
    ``idle_timeout_s`` (from its opening or its last answer, or within a request body)
    is closed. (runner, bound port)."""
    runner = web.AppRunner(RegistryApp(registry, auth, idle_timeout_s).app, access_log=None, handle_signals=False,
                           keepalive_timeout=idle_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]
