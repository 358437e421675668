"""``arrowlog serve`` with the schema registry: the Kafka listener and the REST API
in one process and one event loop, on one data directory."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from arrowlog.server.server import KafkaServer

if TYPE_CHECKING:
    from aiohttp import web

    from .store import Registry

log = logging.getLogger("arrowlog.registry")


class RegistryKafkaServer(KafkaServer):
    """A KafkaServer that also serves the schema registry on ``registry_host:registry_port``
    (port 0 picks a free one; ``registry_port`` is the bound port once started) and
    stores Kafka records of typed topics as columns."""

    def __init__(self, *args, registry_host: str = "127.0.0.1", registry_port: int = 8081, **kwargs):
        super().__init__(*args, **kwargs)
        self.registry_host = registry_host
        self.registry_port = registry_port
        self.registry: Registry | None = None
        self._runner: web.AppRunner | None = None

    @property
    def registry_url(self) -> str | None:
        """``http(s)://host:port`` of the registry once started."""
        if self._runner is None:
            return None
        scheme = "https" if self.security.ssl_context is not None else "http"
        return f"{scheme}://{self.registry_host}:{self.registry_port}"

    async def start(self) -> None:
        from arrowlog._optional import require

        for module in ("aiohttp", "fastavro", "jsonschema"):
            require(module, "the schema registry (--registry-listen)")
        from . import app
        from .auth import listener_security
        from .store import Registry
        from .typed import TypedTopics

        await super().start()
        assert self.broker is not None
        try:
            self.registry = registry = Registry(self.broker.store.log)
            typed = TypedTopics(registry, self.broker.store)
            typed.install(self.broker)
            typed.register_library_topics()
            ssl_context, auth = listener_security(self.security)
            self._runner, self.registry_port = await app.start(registry, self.registry_host,
                                                               self.registry_port, ssl_context=ssl_context,
                                                               auth=auth)
        except BaseException:
            await super().stop()
            raise
        log.info("schema registry on %s", self.registry_url)
        if not self.security.is_loopback(self.registry_host) and not self.security.config.authenticates:
            log.warning("the schema registry listens on %s WITHOUT authentication: anyone who can reach "
                        "it can change schemas. Use a SASL or SSL listener, or --registry-listen 127.0.0.1:PORT",
                        self.registry_host or "0.0.0.0")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await super().stop()
