"""Kafka transactions over the wire: the transactional APIs' handlers and the control
batches Fetch sends. The coordinator itself (its state machine and durable state,
shared with in-process transactional producers on the same directory) is
txn_coordinator.py; docs/PROTOCOL.md#transactions.

Over Kafka a control record (a COMMIT/ABORT marker) is sent as a control batch:
the stored frame with the transactional and control attribute bits set.

Thread-safety: the server's event loop thread only.
"""

from __future__ import annotations

import logging
import struct

from . import errors as E
from .txn_coordinator import PRODUCER_FENCED, TransactionCoordinator  # noqa: F401  (the broker's names)
from .txn_groups import wire_member_problem
from .txn_state import CONTROL_HEADER, OPEN_STATES, Txn, control_record_columns, is_control_headers  # noqa: F401

log = logging.getLogger("arrowlog.server")


def control_batch(encoded: bytes) -> bytes:
    """A Kafka record batch (as encode_batch wrote it) turned into a control batch:
    the transactional and control attribute bits set and the CRC-32C redone."""
    from arrowlog._native.kafka import ATTR_CONTROL, ATTR_TRANSACTIONAL, crc32c

    data = bytearray(encoded)
    attrs = struct.unpack_from(">h", data, 21)[0] | ATTR_TRANSACTIONAL | ATTR_CONTROL
    struct.pack_into(">h", data, 21, attrs)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    return bytes(data)


# ---------------------------------------------------------------- request handlers
TXN_EXPIRY_POLL_S = 0.2


class TxnHandlers:
    """The transactional APIs' handlers on a Broker (its store, offsets, coordinator)."""

    def __init__(self, broker):
        self.broker = broker
        self.txns: TransactionCoordinator = broker.txns
        self._task = None

    def register(self, handlers: dict) -> None:
        handlers.update({24: self.add_partitions_to_txn, 25: self.add_offsets_to_txn, 26: self.end_txn,
                         28: self.txn_offset_commit})

    def start(self) -> None:
        import asyncio

        async def loop():
            while True:
                await asyncio.sleep(TXN_EXPIRY_POLL_S)
                try:
                    if self.txns.expire():
                        self.broker._notify_data()
                except Exception:   # never let the loop die: log and go on
                    log.exception("aborting timed-out transactions failed")

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        import asyncio

        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.txns.close()

    def _exists(self, topic: str, p: int) -> bool:
        t = self.broker.store.topic(topic)
        return t is not None and 0 <= p < t.num_partitions

    def add_partitions_to_txn(self, ctx, req: dict) -> dict:
        topics = req["v3_and_below_topics"]
        wanted = [(t["name"], p) for t in topics for p in t["partitions"]]
        codes = self.txns.add_partitions(req["v3_and_below_transactional_id"], req["v3_and_below_producer_id"],
                                         req["v3_and_below_producer_epoch"], wanted, self._exists)
        return {"results_by_topic_v3_and_below": [{"name": t["name"], "results_by_partition": [
            {"partition_index": p, "partition_error_code": codes[(t["name"], p)]} for p in t["partitions"]]}
            for t in topics]}

    def add_offsets_to_txn(self, ctx, req: dict) -> dict:
        from .offsets import group_id_problem

        if group_id_problem(req["group_id"]):
            return {"error_code": E.INVALID_GROUP_ID}
        return {"error_code": self.txns.add_offsets(req["transactional_id"], req["producer_id"],
                                                    req["producer_epoch"], req["group_id"])}

    def txn_offset_commit(self, ctx, req: dict) -> dict:
        from .offsets import metadata_too_large

        updates: dict = {}
        bad: dict[tuple[str, int], int] = {}   # partitions refused, with their error codes
        for t in req["topics"]:
            for p in t["partitions"]:
                if not self._exists(t["name"], p["partition_index"]):
                    bad[(t["name"], p["partition_index"])] = E.UNKNOWN_TOPIC_OR_PARTITION
                    continue
                if metadata_too_large(p["committed_metadata"]):
                    bad[(t["name"], p["partition_index"])] = E.OFFSET_METADATA_TOO_LARGE
                    continue
                updates.setdefault(t["name"], {})[p["partition_index"]] = {
                    "offset": p["committed_offset"], "metadata": p["committed_metadata"],
                    "leader_epoch": p["committed_leader_epoch"]}
        # KIP-447: a consumer a rebalance left behind (v3 carries its generation) is refused
        code = wire_member_problem(self.broker.groups, req["group_id"], req.get("generation_id", -1),
                                   req.get("member_id") or "", req.get("group_instance_id"))
        if code == E.NONE:
            code = self.txns.txn_offset_commit(req["transactional_id"], req["producer_id"], req["producer_epoch"],
                                               req["group_id"], updates)
        return {"topics": [{"name": t["name"], "partitions": [
            {"partition_index": p["partition_index"],
             "error_code": bad.get((t["name"], p["partition_index"]), code)}
            for p in t["partitions"]]} for t in req["topics"]]}

    def end_txn(self, ctx, req: dict) -> dict:
        code = self.txns.end_txn(req["transactional_id"], req["producer_id"], req["producer_epoch"],
                                 req["committed"])
        if code == E.NONE:
            self.broker._notify_data()
        if code == PRODUCER_FENCED and ctx.version < 2:
            code = E.INVALID_PRODUCER_EPOCH   # PRODUCER_FENCED is EndTxn v2+
        return {"error_code": code}
