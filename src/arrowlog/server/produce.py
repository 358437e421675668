"""Produce and InitProducerId: record batches into arrowlog partitions, with the
idempotent producers' checks (producers.py) and transactional batches handed to
the transaction coordinator (transactions.py). Part of the Broker (broker.py),
whose produce lock, partitions and flush sets it uses; the event loop thread only.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

import pyarrow as pa

from arrowlog import errors as AE
from arrowlog._native.kafka import RecordBatchError, decode_record_set, release_scratch

from . import errors as E
from .transactions import PRODUCER_FENCED

log = logging.getLogger("arrowlog.server")

# Produce bodies at least this large are decoded and appended in a worker thread
# (decode_record_set releases the GIL), so a 60 MiB request does not hold the loop.
# So is any body holding a compressed batch: its size says nothing of the work
# (a 33 KB zstd batch inflates to the 8 MiB limit in about 20 ms, and one small
# request can hold many of them).
OFFLOAD_PRODUCE_BYTES = 1 << 20
# A record batch v2 header: baseOffset..recordCount (attributes at bytes 21-22).
_BATCH_HEADER_SIZE = 61
# After a produce of at least this many bytes, return Arrow's freed memory to the OS.
RELEASE_MEMORY_BYTES = 8 << 20
# The size a compressed batch's records may inflate to, at most (a topic's smaller
# max.message.bytes lowers it): a 33 KB zstd bomb must not become 1 GiB of memory.
MAX_UNCOMPRESSED_BYTES = 32 << 20


def _libc_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _release_memory() -> None:
    """After a large produce, whose request body and decoded Arrow buffers are freed by
    now: hand the freed pages back to the OS (Arrow's pool, then the C heap, where the
    body and the decoder's temporaries lived, the decode buffers it kept for reuse
    included), so the server's RSS goes back down."""
    release_scratch()
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _holds(pl, base: int, batch) -> bool:
    """Whether the stored batch at ``base`` holds exactly ``batch``'s records."""
    try:
        frames = pl.read(base, 1, check_crc=True)
    except (AE.ArrowlogError, OSError):
        return False
    if not frames or frames[0].base_offset != base or frames[0].record_count != batch.record_count:
        return False
    stored, sent = frames[0].batch, batch.records
    try:
        return all(stored.column(c).cast(pa.int64() if c == "timestamp" else stored.column(c).type).to_pylist()
                   == sent.column(c).cast(pa.int64() if c == "timestamp" else stored.column(c).type).to_pylist()
                   for c in ("timestamp", "key", "value"))
    except (KeyError, pa.ArrowException):
        return False


def _keyless(topic: str, index: int, batches) -> dict | None:
    """A compacted topic refuses records without a key, as Kafka does: the whole request
    for the partition fails with INVALID_RECORD and ``record_errors`` names each keyless
    record by its index (counted across the request's batches; Kafka's one batch), so a
    client fails those records and retries or fails the others as it chooses."""
    errors, seen = [], 0
    for b in batches:
        keys = b.records.column("key")
        if keys.null_count:
            errors += [{"batch_index": seen + i, "batch_index_error_message": "a compacted topic needs a key"}
                       for i, valid in enumerate(keys.is_valid().to_pylist()) if not valid]
        seen += b.record_count
    if not errors:
        return None
    log.info("refused %d keyless record(s) for compacted %s-%d", len(errors), topic, index)
    return {"error_code": E.INVALID_RECORD, "record_errors": errors,
            "error_message": f"topic {topic!r} is compacted (cleanup.policy=compact): every record needs a key; "
                             f"{len(errors)} record(s) of this batch have none, so none of it was written"}


def _compressed(records) -> bool:
    """Whether any record batch in ``records`` names a compression codec (attributes
    bits 0-2). Only the headers' lengths are followed; decoding checks the rest."""
    if not records:
        return False
    pos, n = 0, len(records)
    while pos + _BATCH_HEADER_SIZE <= n:
        if records[pos + 22] & 0x07:
            return True
        length = int.from_bytes(records[pos + 8:pos + 12], "big", signed=True)
        if length <= 0:
            return False
        pos += 12 + length
    return False


class ProduceHandlers:
    """Produce (0) and InitProducerId (22) on a Broker."""

    def __init__(self, broker):
        self.broker = broker
        self.config = broker.config
        self.producers = broker.producers
        self.txns = broker.txns

    def register(self, handlers: dict) -> None:
        handlers.update({0: self.produce, 22: self.init_producer_id})

    async def produce(self, ctx, req: dict):
        acks = req["acks"]
        code, msg = E.NONE, None
        if ctx.version < 3:
            # only record batch v2 (Produce v3+) is accepted
            code, msg = E.UNSUPPORTED_VERSION, "Produce v0-2 (message format v0/v1) is not supported: use v3+"
        elif acks not in (-1, 0, 1):
            code = E.INVALID_REQUIRED_ACKS
        size = sum(len(pd["records"] or b"") for td in req["topic_data"] for pd in td["partition_data"])
        # A large body is decoded and appended in a worker thread; produces are serialised
        # so the producer-state checks and the appends keep their order.
        offload = size >= OFFLOAD_PRODUCE_BYTES or any(
            _compressed(pd["records"]) for td in req["topic_data"] for pd in td["partition_data"])
        responses = []
        appended = False
        async with self.broker._produce_lock:
            for td in req["topic_data"]:
                parts = []
                for pd in td["partition_data"]:
                    if code != E.NONE:
                        parts.append({"index": pd["index"], "error_code": code, "base_offset": -1,
                                      "error_message": msg})
                        continue
                    r = await self._produce_partition(td["name"], pd["index"], pd["records"], offload)
                    pd["records"] = None  # the last reference to the request body's bytes
                    appended |= r["error_code"] == E.NONE
                    parts.append(r)
                responses.append({"name": td["name"], "partition_responses": parts})
        if appended:
            self.broker._notify_data()
        if size >= RELEASE_MEMORY_BYTES:
            if offload:
                await asyncio.get_running_loop().run_in_executor(self.broker._worker, _release_memory)
            _release_memory()
        if acks == 0:
            return None  # acks=0 gets no response at all
        return {"responses": responses}

    async def _call(self, offload: bool, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, in the produce worker thread when ``offload``."""
        if offload:
            return await asyncio.get_running_loop().run_in_executor(self.broker._worker, lambda: fn(*args, **kwargs))
        return fn(*args, **kwargs)

    def _max_uncompressed(self, pl) -> int:
        """The size one compressed batch may inflate to: the topic's max.message.bytes,
        capped by the server's max_uncompressed_bytes."""
        cap = self.config.max_uncompressed_bytes
        try:
            limit = int((getattr(pl, "config", None) or {}).get("max.message.bytes") or cap)
        except (TypeError, ValueError):
            limit = cap
        return max(min(limit, cap), 1)

    async def _produce_partition(self, topic: str, index: int, records, offload: bool = False) -> dict:
        fail = {"index": index, "base_offset": -1}
        pl, code, msg = self.broker._partition(topic, index)
        if pl is None:
            return {**fail, "error_code": code, "error_message": msg}
        if records is None or len(records) == 0:
            return {**fail, "error_code": E.INVALID_RECORD, "error_message": "no record batch"}
        if self.producers.needs_check(topic, index):
            self.producers.check_log(topic, index, pl.high_watermark)
        try:
            batches = await self._call(offload, decode_record_set, records,
                                       max_uncompressed=self._max_uncompressed(pl))
        except RecordBatchError as exc:
            log.warning("refused a batch for %s-%d: %s", topic, index, exc)
            return {**fail, "error_code": exc.error_code, "error_message": str(exc)}
        if any(b.is_control for b in batches):
            return {**fail, "error_code": E.INVALID_RECORD,
                    "error_message": "control batches are written by the transaction coordinator, not produced"}
        typed = self.broker.typed
        if typed is not None and (refusal := typed.write_refusal(topic)) is not None:
            return {**fail, "error_code": E.INVALID_RECORD, "error_message": refusal}
        if getattr(pl, "compacted", False):   # before decoding: a refused batch changes nothing
            refused = _keyless(topic, index, batches)
            if refused is not None:
                return {**fail, **refused}
        if typed is not None:  # typed topics: wire-format values become columns (docs/REGISTRY.md)
            try:
                batches = typed.on_produce(topic, batches)
            except AE.ArrowlogError as exc:
                return {**fail, "error_code": E.INVALID_RECORD, "error_message": str(exc)}
        first = None
        for b in batches:
            if b.is_transactional:
                code = self.txns.check_batch(topic, index, b.producer_id, b.producer_epoch)
                if code != E.NONE:
                    return {**fail, "error_code": code}
            code, duplicate, confirmed = self.producers.check(topic, index, b.producer_id, b.producer_epoch,
                                                              b.base_sequence, b.record_count)
            if code != E.NONE:
                return {**fail, "error_code": code}
            if duplicate is not None and not confirmed:
                # journaled as about to be appended when the server died: is it in the log?
                if _holds(pl, duplicate, b):
                    self.producers.record(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                          b.record_count, duplicate)
                else:
                    duplicate = None
            if duplicate is not None:
                base = duplicate
            else:
                expected = pl.high_watermark
                self.producers.begin(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                     b.record_count, expected)
                if b.is_transactional:
                    self.txns.begin_batch(topic, index, b.producer_id, expected, b.record_count)
                try:
                    base = await self._call(offload, pl.append, b.records, min_timestamp=b.min_record_timestamp,
                                            max_timestamp=b.max_record_timestamp)
                except (OSError, AE.CorruptRecordError) as exc:  # StorageError, or a damaged partition
                    if b.is_transactional:
                        self.txns.end_batch(topic, index, b.producer_id, expected, None)
                    log.error("append to %s-%d failed: %s", topic, index, exc)
                    return {**fail, "error_code": E.KAFKA_STORAGE_ERROR, "error_message": str(exc)}
                except (AE.ArrowlogError, ValueError, TypeError, pa.ArrowException) as exc:
                    # e.g. a topic that declares a typed value schema: raw bytes do not fit it
                    if b.is_transactional:
                        self.txns.end_batch(topic, index, b.producer_id, expected, None)
                    log.warning("append to %s-%d refused: %s", topic, index, exc)
                    return {**fail, "error_code": E.INVALID_RECORD, "error_message": str(exc)}
                self.broker._appended(pl)
                if b.is_transactional:  # only what begin_batch announced; the others never lock its files
                    self.txns.end_batch(topic, index, b.producer_id, expected, base)
                self.producers.record(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                      b.record_count, base, expected)
            if first is None:
                first = base
        if self.broker.metrics:
            self.broker.metrics.produced(topic, len(records), sum(b.record_count for b in batches))
        return {"index": index, "error_code": E.NONE, "base_offset": first,
                "log_start_offset": pl.log_start_offset}

    def init_producer_id(self, ctx, req: dict) -> dict:
        if req["transactional_id"] is not None:
            code, pid, epoch = self.txns.init_producer_id(req["transactional_id"], req["transaction_timeout_ms"],
                                                          req["producer_id"], req["producer_epoch"])
            if code == PRODUCER_FENCED and ctx.version < 4:
                code = E.INVALID_PRODUCER_EPOCH   # PRODUCER_FENCED is InitProducerId v4+
            if code == E.NONE:
                self.broker._notify_data()
            return {"error_code": code, "producer_id": pid, "producer_epoch": epoch}
        code, pid, epoch = self.producers.init_producer_id(req["producer_id"], req["producer_epoch"])
        return {"error_code": code, "producer_id": pid, "producer_epoch": epoch}
