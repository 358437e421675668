"""A Fetch response goes out as pieces: the record batches are the encode cache's
own bytes objects, not copied into one buffer (twice) before the socket write."""

import pytest

from arrowlog.server.messages import APIS, FETCH
from arrowlog.server.server import encode_response
from arrowlog.server.wire import Reader, Writer


def _fetch_body(chunks: list) -> dict:
    part = {"partition_index": 0, "error_code": 0, "high_watermark": 7, "last_stable_offset": 7,
            "log_start_offset": 0, "aborted_transactions": None, "records": chunks}
    return {"responses": [{"topic": "t", "partitions": [part, dict(part, partition_index=1, records=[])]}]}


@pytest.mark.parametrize("version", [4, 11, 12])
def test_fetch_response_sends_stored_batches_without_copying(version):
    chunks = [b"A" * 3000, b"B" * 5000]
    pieces = encode_response(FETCH.key, version, 42, _fetch_body(chunks))
    assert any(p is chunks[0] for p in pieces) and any(p is chunks[1] for p in pieces)
    frame = b"".join(pieces)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    # The same frame as a plain (copying) writer makes, and a client reads the records back.
    w = Writer()
    w.int32(len(frame) - 4)
    w.int32(42)
    if FETCH.is_flexible(version):
        w.empty_tags()
    FETCH.encode_response(_fetch_body(chunks), w, version)
    assert frame == bytes(w.buf)
    r = Reader(frame, 8 + (1 if FETCH.is_flexible(version) else 0))
    got = FETCH.decode_response(r, version)
    parts = got["responses"][0]["partitions"]
    assert bytes(parts[0]["records"]) == chunks[0] + chunks[1]
    assert bytes(parts[1]["records"]) == b""


def test_response_without_records_is_one_piece_with_its_size():
    pieces = encode_response(3, 1, 9, {"brokers": [], "topics": []})
    assert len(pieces) == 1
    assert int.from_bytes(pieces[0][:4], "big") == len(pieces[0]) - 4
    got = APIS[3].decode_response(Reader(pieces[0], 8), 1)
    assert (got["brokers"], got["topics"], got["controller_id"]) == ([], [], -1)
