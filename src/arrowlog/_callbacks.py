"""confluent-kafka's client callbacks on the embedded log: ``error_cb``,
``stats_cb`` (every ``statistics.interval.ms``) and ``logger``.

As in librdkafka, callbacks run on the application's thread, inside
``poll()``, ``flush()`` or ``consume()``: an error found by a background
thread waits in the queue until then. ``throttle_cb`` is accepted and never
called (a local directory does not throttle); ``oauth_cb`` is refused by
config.py.

The statistics are librdkafka's JSON document, with the fields a local
client can fill in (https://github.com/confluentinc/librdkafka/blob/master/STATISTICS.md):
``name``, ``client_id``, ``type``, ``ts``, ``time``, ``age``, ``msg_cnt``,
``msg_size``, ``txmsgs``, ``txmsg_bytes``, ``rxmsgs``, ``brokers`` (empty)
and ``topics.<topic>.partitions.<n>`` with ``msgq_cnt``, ``msgq_bytes``,
``txmsgs``, ``txbytes``, ``rxmsgs``, ``app_offset``, ``stored_offset``,
``committed_offset``, ``next_offset``, ``lo_offset``, ``hi_offset``,
``ls_offset``, ``consumer_lag`` and ``consumer_lag_stored`` (-1 where it does
not apply, as librdkafka writes it).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import time
from typing import Any

from .errors import KafkaError

_instances = itertools.count(1)
# a partition's fields librdkafka writes as -1 (or -1001) when unknown
_PARTITION_DEFAULTS = {
    "broker": -1, "leader": -1, "desired": False, "unknown": False, "msgq_cnt": 0, "msgq_bytes": 0,
    "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0, "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "none",
    "query_offset": -1001, "next_offset": -1001, "app_offset": -1001, "stored_offset": -1001,
    "committed_offset": -1001, "eof_offset": -1001, "lo_offset": -1, "hi_offset": -1, "ls_offset": -1,
    "consumer_lag": -1, "consumer_lag_stored": -1, "txmsgs": 0, "txbytes": 0, "rxmsgs": 0, "rxbytes": 0,
    "msgs": 0, "rx_ver_drops": 0, "msgs_inflight": 0,
}


class ClientCallbacks:
    """One client's error_cb, stats_cb and logger, and the queue of errors
    waiting to be served on the application's thread."""

    def __init__(self, conf: dict, kind: str):
        self.kind = kind
        self.client_id = conf.get("client.id") or "arrowlog"
        self.name = f"{self.client_id}#{kind}-{next(_instances)}"
        self.error_cb = conf.get("error_cb")
        self.stats_cb = conf.get("stats_cb")
        self.logger = conf.get("logger") or logging.getLogger("arrowlog")
        interval = conf.get("statistics.interval.ms") or 0
        self.interval = interval / 1000.0 if self.stats_cb is not None else 0.0
        self.created = time.monotonic()
        self.next_stats = self.created + self.interval
        self.errors: collections.deque = collections.deque()

    def stats_due(self) -> bool:
        return self.interval > 0 and time.monotonic() >= self.next_stats

    def emit_stats(self, topics: dict, totals: dict) -> None:
        """Call stats_cb with ``topics`` ({topic: {partition: {field: value}}})."""
        if self.stats_cb is None:
            return
        now = time.monotonic()
        self.next_stats = now + self.interval
        doc: dict[str, Any] = {"name": self.name, "client_id": self.client_id, "type": self.kind, "ts": int(now * 1e6),
               "time": int(time.time()), "age": int((now - self.created) * 1e6), "replyq": 0, "msg_cnt": 0,
               "msg_size": 0, "msg_max": 0, "msg_size_max": 0, "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0,
               "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0, "brokers": {}, "topics": {}}
        doc.update(totals)
        for topic, partitions in topics.items():
            parts = {}
            for p, fields in partitions.items():
                entry = dict(_PARTITION_DEFAULTS, partition=p)
                entry.update(fields)
                parts[str(p)] = entry
            doc["topics"][topic] = {"topic": topic, "age": doc["age"], "metadata_age": 0, "partitions": parts}
        self.stats_cb(json.dumps(doc))

    def report(self, exc: BaseException) -> bool:
        """Queue ``exc`` for error_cb; False when there is no error_cb (the
        caller raises it instead)."""
        if self.error_cb is None:
            return False
        self.logger.log(logging.ERROR, "%s: %s", self.name, exc)
        self.errors.append(KafkaError(KafkaError._FAIL, f"{type(exc).__name__}: {exc}"))
        return True

    def serve_errors(self) -> int:
        served = 0
        while self.errors and self.error_cb is not None:
            self.error_cb(self.errors.popleft())
            served += 1
        return served
