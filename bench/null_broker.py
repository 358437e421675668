"""A do-nothing Kafka acceptor: the best any server can do for a producer on this machine.

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

    python -m bench.null_broker        # prints HOST:PORT, serves until SIGTERM
"""

from __future__ import annotations

import asyncio
import signal
import sys

from arrowlog.server.framing import BodyPool, FrameStream, free_body
from arrowlog.server.messages import API_VERSIONS, METADATA, PRODUCE
from arrowlog.server.messages import APIS as ADVERTISED
from arrowlog.server.server import encode_response
from arrowlog.server.wire import Reader

APIS = {api.key: api for api in (API_VERSIONS, METADATA, PRODUCE)}
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


class NullBroker:
    def __init__(self) -> None:
        self.port = 0
        self.next_offset: dict[tuple[str, int], int] = {}
        self.produces = self.records = 0
        self.acks: set[int] = set()
        self.bodies = BodyPool()

    def answer(self, api_key: int, version: int, req: dict) -> dict | None:
        if api_key == API_VERSIONS.key:
            # the versions ``arrowlog serve`` advertises, so the client picks the same
            # features (librdkafka writes record batches v2 only if Fetch v4+ is there too)
            return {"error_code": 0, "api_keys": [
                {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
                for a in sorted(ADVERTISED.values(), key=lambda a: a.key)]}
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
                self.respond(stream, body)
                free_body(body, self.bodies)
                del body
                await stream.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the acceptor is stopping
        finally:
            stream.close()

    def respond(self, stream: FrameStream, body) -> None:
        r = Reader(body)
        api_key, version, correlation_id = r.int16(), r.int16(), r.int32()
        api = APIS.get(api_key)
        if api is None or not api.min_version <= version <= api.max_version:
            print(f"null_broker: closing on API {api_key} v{version}", file=sys.stderr)
            raise ConnectionError("unsupported request")
        r.string(False)  # client_id
        if api.is_flexible(version):
            r.skip_tags()
        body_out = self.answer(api_key, version, api.decode_request(r, version))
        del r
        if body_out is not None:
            stream.write(encode_response(api_key, version, correlation_id, body_out))


async def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    broker = NullBroker()
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
    print(f"null_broker: {broker.produces} Produce requests (acks {sorted(broker.acks)}), {broker.records} records",
          file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(serve())
