"""ApiVersions answered from a body encoded once per version (server/broker.py)."""

from __future__ import annotations

import pytest

from arrowlog.server import broker as B
from arrowlog.server import errors as E
from arrowlog.server import messages as M
from arrowlog.server.server import encode_response
from arrowlog.server.wire import Reader

SOFTWARE = {"client_software_name": "librdkafka", "client_software_version": "2.16.0"}


def answer(broker, version: int, req: dict, correlation_id: int = 7) -> dict:
    """The response frame the server writes, decoded as a client reads it."""
    frame = b"".join(encode_response(M.API_VERSIONS.key, version, correlation_id,
                                     broker.api_versions(B.RequestContext(18, version, correlation_id, "t", "h"), req)))
    r = Reader(frame)
    assert r.int32() == len(frame) - 4
    assert r.int32() == correlation_id   # the ApiVersions response header has no tags, at any version
    out = M.API_VERSIONS.decode_response(r, version)
    assert r.remaining() == 0
    return out


@pytest.mark.parametrize("version", range(M.API_VERSIONS.min_version, M.API_VERSIONS.max_version + 1))
def test_api_versions_lists_every_api_from_one_encoded_body(tmp_path, version):
    broker = B.Broker(str(tmp_path), B.BrokerConfig(), "test-cluster")
    try:
        resp = answer(broker, version, SOFTWARE)
        assert resp["error_code"] == E.NONE
        assert [(k["api_key"], k["min_version"], k["max_version"]) for k in resp["api_keys"]] == \
            [(a.key, a.min_version, a.max_version) for a in sorted(M.APIS.values(), key=lambda a: a.key)]
        # encoded once: the next request of this version gets the same bytes object
        ctx = B.RequestContext(18, version, 8, "t", "h")
        assert broker.api_versions(ctx, SOFTWARE) is broker.api_versions(ctx, SOFTWARE)
        assert answer(broker, version, SOFTWARE, correlation_id=1234) == resp
    finally:
        broker.store.close()


def test_api_versions_v3_refuses_a_malformed_client_software_name(tmp_path):
    broker = B.Broker(str(tmp_path), B.BrokerConfig(), "test-cluster")
    try:
        resp = answer(broker, 3, {"client_software_name": "bad name!", "client_software_version": "1"})
        assert resp["error_code"] == E.INVALID_REQUEST and resp["api_keys"] == []
    finally:
        broker.store.close()
