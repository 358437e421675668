"""Fetch and ListOffsets: stored batches out as Kafka record batches (encoded once,
kept in a small cache), long polls woken by any append, and offset lookups by
time. Part of the Broker (broker.py); the event loop thread only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import pyarrow as pa

from arrowlog import errors as AE
from arrowlog._native.kafka import encode_batch
from arrowlog.storage.partition import Frame
from arrowlog.storage.reader import RangeReader, raise_gap

from . import errors as E
from .log_once import LogOnce
from .transactions import control_batch

log = logging.getLogger("arrowlog.server")

# Encoded record batches kept for repeated fetches of the same data.
ENCODE_CACHE_BYTES = 64 << 20
# A Fetch response carries at most this much record data (Kafka's fetch.max.bytes: 55 MiB).
FETCH_MAX_BYTES = 55 << 20


def _read_checked(pl, offset: int, max_bytes: int) -> list:
    """Whole frames from ``offset`` with their CRCs checked. When a frame is damaged, the
    intact frames before it are returned; CorruptRecordError only if the first is."""
    reader = RangeReader(pl, offset, whole_frames=True, check_crc=True, on_gap=raise_gap)
    try:
        return reader.read(max_bytes)
    except AE.CorruptRecordError:
        pass
    frames: list[Frame] = []
    size = 0
    while size < max_bytes:
        try:
            got = reader.read(1)   # one frame (KIP-74: the first always)
        except AE.CorruptRecordError:
            if frames:
                return frames
            raise
        if not got:
            break
        frames.append(got[0])
        size += got[0].size
    return frames


def _offsets_only(frame) -> bytes:
    """An aborted batch as a read_committed Fetch sends it: its offsets without its
    records (an empty batch, as Kafka's compaction leaves them), so the reader moves past
    it. Kafka sends the records and lists the aborted transactions for the client to
    drop; without the records, a run of aborted data larger than the reader's fetch size
    still costs one small batch per stored batch, not a stall."""
    return encode_batch(frame.batch.slice(0, 0), first_offset=frame.base_offset, next_offset=frame.next_offset)


class FetchHandlers:
    """Fetch (1) and ListOffsets (2) on a Broker."""

    def __init__(self, broker):
        self.broker = broker
        self.config = broker.config
        self.txns = broker.txns
        # a damaged frame is logged at ERROR once, not on every Fetch retry of it
        self._corrupt_logged = LogOnce(log, "Fetch retries of it are answered CORRUPT_MESSAGE without logging again")
        # a read or offset lookup that fails for the storage: the same, per partition and kind
        self._failed = LogOnce(log, "retries are answered with the same error without logging again")
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_bytes = 0

    def register(self, handlers: dict) -> None:
        handlers.update({1: self.fetch, 2: self.list_offsets})

    async def fetch(self, ctx, req: dict) -> dict:
        deadline = time.monotonic() + max(req["max_wait_ms"], 0) / 1000.0
        min_bytes = req["min_bytes"]
        broker = self.broker
        broker.long_polls += 1   # before reading the log: the append watcher wakes us from now on
        try:
            while True:
                event = broker._data_event
                resp, total, stop = self._fetch_once(req)
                remaining = deadline - time.monotonic()
                if (total >= min_bytes or total > 0 and min_bytes <= 0 or stop or remaining <= 0
                        or broker.stopping):
                    if broker.metrics and total:
                        broker.metrics.fetched_response(resp)
                    return resp
                try:
                    await asyncio.wait_for(event.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            broker.long_polls -= 1

    def _fetch_once(self, req: dict):
        budget = min(req["max_bytes"], self.config.fetch_max_bytes)
        if self.broker.response_room is not None:   # what unread responses leave (KIP-74: one batch at least)
            budget = min(budget, self.broker.response_room())
        total = 0
        stop = False
        responses = []
        for ft in req["topics"]:
            name = ft["topic"]
            parts = []
            for fp in ft["partitions"]:
                idx = fp["partition"]
                out = {"partition_index": idx, "high_watermark": -1, "last_stable_offset": -1,
                       "log_start_offset": -1, "aborted_transactions": None, "records": b""}
                parts.append(out)
                pl, code, _ = self.broker._partition(name, idx)
                if pl is None:
                    out["error_code"] = code
                    stop = True
                    continue
                hwm, start = pl.high_watermark, pl.log_start_offset
                lso = self.txns.last_stable_offset(name, idx, hwm)
                committed_only = req.get("isolation_level", 0) == 1
                end = lso if committed_only else hwm
                out.update(high_watermark=hwm, last_stable_offset=lso, log_start_offset=start)
                if committed_only:
                    out["aborted_transactions"] = []   # aborted batches are left out here, not by the client
                offset = fp["fetch_offset"]
                if offset < start or offset > hwm:
                    out["error_code"] = E.OFFSET_OUT_OF_RANGE
                    stop = True
                    continue
                limit = min(fp["partition_max_bytes"], budget - total)
                if offset >= end or (limit <= 0 and total > 0):
                    continue
                try:
                    frames = _read_checked(pl, offset, max(limit, 1))
                except AE.OffsetOutOfRangeError:
                    out["error_code"] = E.OFFSET_OUT_OF_RANGE
                    stop = True
                    continue
                except AE.CorruptRecordError as exc:
                    # never re-sign damaged data with a fresh Kafka CRC: report it
                    self._log_corrupt(name, idx, offset, exc)
                    out["error_code"] = E.CORRUPT_MESSAGE
                    stop = True
                    continue
                except (AE.StorageError, OSError) as exc:
                    self._failed.error(("fetch", name, idx), f"fetch of {name}-{idx} at {offset} failed: {exc}")
                    out["error_code"] = E.KAFKA_STORAGE_ERROR
                    stop = True
                    continue
                self._failed.forget(("fetch", name, idx))   # read again: its next failure is news
                chunks: list[bytes] = []
                size = 0
                for fr in frames:
                    if fr.base_offset >= end:
                        break
                    try:
                        if committed_only and self.txns.is_aborted(name, idx, fr.base_offset):
                            enc = _offsets_only(fr)
                        else:
                            enc = self._encoded(name, idx, fr)
                    except (TypeError, ValueError, pa.ArrowException) as exc:
                        self._failed.error(("encode", name, idx),
                                           f"cannot serve {name}-{idx} at {fr.base_offset} over Kafka: {exc}")
                        out["error_code"] = E.UNKNOWN_SERVER_ERROR
                        stop = True
                        break
                    # KIP-74: the first batch of the response goes out whole, even when too big.
                    if size + len(enc) > limit and (chunks or total > 0):
                        break
                    chunks.append(enc)
                    size += len(enc)
                out["records"] = chunks
                total += size
            responses.append({"topic": name, "partitions": parts})
        return {"responses": responses}, total, stop

    def _log_corrupt(self, topic: str, index: int, offset: int, exc: Exception) -> None:
        self._corrupt_logged.error((topic, index, offset), f"fetch of {topic}-{index} at {offset}: {exc}")

    def _encoded(self, topic: str, index: int, frame) -> bytes:
        key = (topic, index, frame.base_offset)
        hit = self._cache.get(key)
        shape = (frame.record_count, frame.batch.num_rows)  # the cleaner may rewrite a frame in place
        if hit is not None and hit[0] == shape:
            self._cache.move_to_end(key)
            return hit[1]
        control = self.txns.control_at(topic, index, frame.base_offset)
        if control is not None:   # a transaction marker: the envelope as stored, flagged as a control batch
            data = control_batch(encode_batch(frame.batch, producer_id=control[0], producer_epoch=control[1]))
        else:
            batch = frame.batch if self.broker.typed is None else self.broker.typed.on_fetch(topic, frame.batch)
            data = encode_batch(batch, first_offset=frame.base_offset, next_offset=frame.next_offset)
        self._cache[key] = (shape, data)
        self._cache_bytes += len(data)
        while self._cache_bytes > ENCODE_CACHE_BYTES and self._cache:
            _, (_, old) = self._cache.popitem(last=False)
            self._cache_bytes -= len(old)
        return data

    def forget_cached(self, topic: str) -> None:
        for key in [k for k in self._cache if k[0] == topic]:
            self._cache_bytes -= len(self._cache.pop(key)[1])

    # ------------------------------------------------------------ ListOffsets
    def list_offsets(self, ctx, req: dict) -> dict:
        topics = []
        for lt in req["topics"]:
            parts = []
            for lp in lt["partitions"]:
                idx = lp["partition_index"]
                pl, code, _ = self.broker._partition(lt["name"], idx)
                if pl is None:
                    parts.append({"partition_index": idx, "error_code": code})
                    continue
                try:
                    offset, ts = self._lookup_offset(pl, lp["timestamp"])
                    if lp["timestamp"] == -1 and req.get("isolation_level", 0) == 1:
                        offset = self.txns.last_stable_offset(lt["name"], idx, offset)
                except (AE.CorruptRecordError, OSError) as exc:
                    self._failed.error(("lookup", lt["name"], idx), f"offset lookup in {lt['name']}-{idx} failed: {exc}")
                    parts.append({"partition_index": idx, "error_code": E.KAFKA_STORAGE_ERROR})
                    continue
                self._failed.forget(("lookup", lt["name"], idx))   # works again: its next failure is news
                parts.append({"partition_index": idx, "error_code": E.NONE, "timestamp": ts,
                              "offset": offset, "leader_epoch": 0})
            topics.append({"name": lt["name"], "partitions": parts})
        return {"topics": topics}

    @staticmethod
    def _timestamp_at(pl, offset: int) -> int:
        for fr in RangeReader(pl, offset, offset + 1).read(1):
            return fr.batch.column("timestamp")[0].value
        return -1

    def _lookup_offset(self, pl, timestamp: int) -> tuple[int, int]:
        if timestamp == -1:      # LATEST
            return pl.high_watermark, -1
        if timestamp == -2:      # EARLIEST
            return pl.log_start_offset, -1
        if timestamp == -3:      # MAX_TIMESTAMP (v7): the record with the largest timestamp
            best_ts, best_off = -1, -1
            reader = RangeReader(pl, pl.log_start_offset, pl.high_watermark, whole_frames=True)
            while frames := reader.read(1 << 20):
                for fr in frames:
                    if fr.rows and fr.max_timestamp > best_ts:  # a compacted frame may hold no rows
                        col = fr.batch.column("timestamp").cast("int64").to_pylist()
                        i = col.index(fr.max_timestamp) if fr.max_timestamp in col else len(col) - 1
                        best_ts, best_off = fr.max_timestamp, fr.batch.column("offset")[i].as_py()
            return best_off, best_ts
        offset = pl.offset_for_timestamp(timestamp)
        if offset is None or offset >= pl.high_watermark:
            return -1, -1
        return offset, self._timestamp_at(pl, offset)
