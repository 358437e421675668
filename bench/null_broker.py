"""A do-nothing Kafka acceptor and fetch responder: the best any server can do for a client on this machine.

Test-only (bench/bench_kafka_wire.py). An asyncio server that speaks just
ApiVersions, Metadata and Produce with arrowlog's own message codecs
(arrowlog.server.messages, the same request decoding and response encoding
``arrowlog serve`` uses) and reads requests with the server's own connection
reader (arrowlog.server.framing: bodies straight into pooled buffers), and
answers every Produce at once with success without storing anything: no
record batch is decoded, checked or kept. Each
partition's base offsets count up by the record count in each batch header,
so a client sees a plausible log. ApiVersions advertises what ``arrowlog
serve`` does (so the client chooses the same protocol features: record
batches v2), every topic asked for exists with one partition led by this
process, and any other request closes the connection.

With ``--fetch-records N`` it is also a do-nothing fetch responder: its topic
(``--fetch-topic``, ``FETCH_TOPIC`` by default) holds N values of ``--value-size`` bytes of ``x`` (the
benchmark's records: no key, no headers) as record batches of
``--batch-records`` each, encoded once at start (arrowlog's own encoder; the
copies differ only in their base offset, which the batch CRC does not cover),
and a Fetch is answered from them at once, up to the partition's and the
request's byte limits (KIP-74: the first batch whole): no read, no CRC
check, no encoding. FindCoordinator is answered with this process (a
consumer with a group.id asks for it even when it assigns partitions
itself). A Fetch at the end of the log waits its max_wait_ms and returns
nothing.

    python -m bench.null_broker        # prints HOST:PORT, serves until SIGTERM
    python -m bench.null_broker --fetch-records 1000000 --value-size 100 --batch-records 5000
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import signal
import sys

import pyarrow as pa

from arrowlog._native.kafka import encode_batch
from arrowlog.schema import ENVELOPE_SCHEMA
from arrowlog.server.framing import BodyPool, FrameStream, free_body
from arrowlog.server.messages import API_VERSIONS, FETCH, FIND_COORDINATOR, METADATA, PRODUCE
from arrowlog.server.messages import APIS as ADVERTISED
from arrowlog.server.server import encode_response
from arrowlog.server.wire import Reader

APIS = {api.key: api for api in (API_VERSIONS, METADATA, PRODUCE, FETCH, FIND_COORDINATOR)}
FETCH_TOPIC = "fetch-bench"
_RECORD_COUNT_AT = 57  # a record batch v2 header: recordCount is its int32 at bytes 57-60
_BATCH_HEADER_SIZE = 61


def record_count(records) -> int:
    """Records in a Produce partition's record set: the sum of its batch headers' counts
    (only the headers are read; a short or bad header ends the count)."""
    n, pos, total = len(records or b""), 0, 0
    while pos + _BATCH_HEADER_SIZE <= n:
        length = int.from_bytes(records[pos + 8:pos + 12], "big", signed=True)
        if length <= 0:
            break
        total += max(0, int.from_bytes(records[pos + _RECORD_COUNT_AT:pos + _BATCH_HEADER_SIZE], "big", signed=True))
        pos += 12 + length
    return total


def fetch_log(n_records: int, value_size: int, batch_records: int) -> tuple[list[int], list[bytes]]:
    """The fetch responder's partition: base offsets and record batches v2 holding
    ``n_records`` values of ``value_size`` bytes of ``x``, ``batch_records`` to a batch."""
    def encoded(first: int, count: int) -> bytes:
        batch = pa.record_batch([pa.array(range(first, first + count), pa.int64()),
                                 pa.array([1_700_000_000_000 + i for i in range(count)], ENVELOPE_SCHEMA.field(1).type),
                                 pa.nulls(count, pa.binary()), pa.array([b"x" * value_size] * count, pa.binary()),
                                 pa.nulls(count, ENVELOPE_SCHEMA.field(4).type)], schema=ENVELOPE_SCHEMA)
        return encode_batch(batch)

    bases, batches = [], []
    whole = encoded(0, batch_records)
    for first in range(0, n_records, batch_records):
        data = whole if n_records - first >= batch_records else encoded(0, n_records - first)
        data = bytearray(data)
        data[0:8] = first.to_bytes(8, "big")   # baseOffset: outside the batch's CRC
        bases.append(first)
        batches.append(bytes(data))
    return bases, batches


class NullBroker:
    def __init__(self, fetch_records: int = 0, value_size: int = 100, batch_records: int = 5000,
                 fetch_topic: str = FETCH_TOPIC) -> None:
        self.port = 0
        self.next_offset: dict[tuple[str, int], int] = {}
        self.produces = self.records = self.fetches = self.fetched = 0
        self.acks: set[int] = set()
        self.bodies = BodyPool()
        self.fetch_topic, self.fetch_end = fetch_topic, fetch_records
        self.fetch_bases, self.fetch_batches = fetch_log(fetch_records, value_size, batch_records)

    def fetch(self, req: dict) -> tuple[dict, int]:
        """A Fetch answered from the pre-encoded batches: (response, record bytes in it)."""
        budget, total, responses = req["max_bytes"], 0, []
        for ft in req["topics"]:
            parts = []
            for fp in ft["partitions"]:
                out = {"partition_index": fp["partition"], "error_code": 0, "high_watermark": self.fetch_end,
                       "last_stable_offset": self.fetch_end, "log_start_offset": 0, "aborted_transactions": None,
                       "records": b""}
                parts.append(out)
                offset = fp["fetch_offset"]
                if ft["topic"] != self.fetch_topic or fp["partition"] != 0 or not 0 <= offset <= self.fetch_end:
                    out["error_code"] = 1   # OFFSET_OUT_OF_RANGE
                    continue
                limit = min(fp["partition_max_bytes"], budget - total)
                chunks, size = [], 0
                i = max(bisect.bisect_right(self.fetch_bases, offset) - 1, 0)
                for data in self.fetch_batches[i:] if offset < self.fetch_end else ():
                    if size + len(data) > limit and (chunks or total):
                        break
                    chunks.append(data)
                    size += len(data)
                out["records"] = chunks
                total += size
            responses.append({"topic": ft["topic"], "partitions": parts})
        self.fetches += 1
        self.fetched += total
        return {"responses": responses}, total

    def answer(self, api_key: int, version: int, req: dict) -> dict | None:
        if api_key == API_VERSIONS.key:
            # the versions ``arrowlog serve`` advertises, so the client picks the same
            # features (librdkafka writes record batches v2 only if Fetch v4+ is there too)
            return {"error_code": 0, "api_keys": [
                {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
                for a in sorted(ADVERTISED.values(), key=lambda a: a.key)]}
        if api_key == FIND_COORDINATOR.key:
            return {"error_code": 0, "error_message": None, "node_id": 0, "host": "127.0.0.1", "port": self.port}
        if api_key == METADATA.key:
            names = [t["name"] for t in req["topics"] or []]
            return {"brokers": [{"node_id": 0, "host": "127.0.0.1", "port": self.port, "rack": None}],
                    "cluster_id": "null-broker", "controller_id": 0,
                    "topics": [{"error_code": 0, "name": name, "topic_id": bytes(16), "is_internal": False,
                                "partitions": [{"error_code": 0, "partition_index": 0, "leader_id": 0,
                                                "leader_epoch": 0, "replica_nodes": [0], "isr_nodes": [0],
                                                "offline_replicas": []}]} for name in names]}
        self.produces += 1
        self.acks.add(req["acks"])
        responses = []
        for td in req["topic_data"]:
            parts = []
            for pd in td["partition_data"]:
                key = (td["name"], pd["index"])
                base = self.next_offset.get(key, 0)
                count = record_count(pd["records"])
                self.next_offset[key] = base + count
                self.records += count
                parts.append({"index": pd["index"], "error_code": 0, "base_offset": base, "log_start_offset": 0})
            responses.append({"name": td["name"], "partition_responses": parts})
        return None if req["acks"] == 0 else {"responses": responses}

    async def on_connection(self, stream: FrameStream) -> None:
        """Read with the server's own connection reader (arrowlog.server.framing)."""
        try:
            while True:
                size = int.from_bytes(await stream.read(4), "big", signed=True)
                if not 8 <= size <= 64 << 20:
                    return
                body = await stream.read_body(size)
                wait_s = self.respond(stream, body)
                free_body(body, self.bodies)
                del body
                await stream.drain()
                if wait_s:   # an empty Fetch: answered after its max_wait_ms, as a long poll at the end
                    await asyncio.sleep(wait_s)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the acceptor is stopping
        finally:
            stream.close()

    def respond(self, stream: FrameStream, body) -> float:
        """Answer one request; for an empty Fetch, the seconds to wait before reading the next."""
        r = Reader(body)
        api_key, version, correlation_id = r.int16(), r.int16(), r.int32()
        api = APIS.get(api_key)
        if api is None or not api.min_version <= version <= api.max_version:
            print(f"null_broker: closing on API {api_key} v{version}", file=sys.stderr)
            raise ConnectionError("unsupported request")
        r.string(False)  # client_id
        if api.is_flexible(version):
            r.skip_tags()
        req = api.decode_request(r, version)
        del r
        wait_s = 0.0
        if api_key == FETCH.key:
            body_out, total = self.fetch(req)
            wait_s = 0.0 if total else max(req["max_wait_ms"], 0) / 1000.0
            if wait_s:   # the response goes out after the wait, as a long poll's would
                asyncio.get_running_loop().call_later(wait_s, self._write, stream, api_key, version,
                                                      correlation_id, body_out)
                return wait_s
        else:
            body_out = self.answer(api_key, version, req)
        self._write(stream, api_key, version, correlation_id, body_out)
        return wait_s

    @staticmethod
    def _write(stream: FrameStream, api_key: int, version: int, correlation_id: int, body_out: dict | None) -> None:
        if body_out is not None:
            stream.write(encode_response(api_key, version, correlation_id, body_out))


async def serve(host: str = "127.0.0.1", port: int = 0, fetch_records: int = 0, value_size: int = 100,
                batch_records: int = 5000, fetch_topic: str = FETCH_TOPIC) -> None:
    broker = NullBroker(fetch_records, value_size, batch_records, fetch_topic)
    server = await asyncio.get_running_loop().create_server(lambda: FrameStream(broker.on_connection, broker.bodies),
                                                            host, port)
    broker.port = server.sockets[0].getsockname()[1]
    print(f"{host}:{broker.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"null_broker: {broker.produces} Produce requests (acks {sorted(broker.acks)}), {broker.records} records; "
          f"{broker.fetches} Fetch requests, {broker.fetched} bytes of record batches", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fetch-records", type=int, default=0, help="records the fetch topic serves")
    p.add_argument("--fetch-topic", default=FETCH_TOPIC, help="the topic a Fetch is answered for")
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--batch-records", type=int, default=5000, help="records per served record batch")
    args = p.parse_args()
    if args.fetch_records < 0 or not 0 < args.value_size <= 1 << 20 or args.batch_records <= 0:
        p.error("--fetch-records >= 0, 0 < --value-size <= 1 MiB, --batch-records > 0")
    asyncio.run(serve(fetch_records=args.fetch_records, value_size=args.value_size, batch_records=args.batch_records,
                      fetch_topic=args.fetch_topic))


if __name__ == "__main__":
    main()
