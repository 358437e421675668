"""Hostile requests found by fuzzing `arrowlog serve` (review8): each is refused as a protocol
error (the connection closed, nothing logged as an internal error) or answered with an error code."""

from __future__ import annotations

import pytest

from arrowlog.server import messages as M
from arrowlog.server.wire import ProtocolError, Reader, Writer


def encoded(api, version: int, body: dict) -> Reader:
    w = Writer()
    api.encode_request(body, w, version)
    return Reader(bytes(w.buf))


@pytest.mark.parametrize("api, version, body", [
    (M.LIST_GROUPS, 5, {"states_filter": [], "types_filter": ["classic", None]}),
    (M.LIST_GROUPS, 4, {"states_filter": [None]}),
    (M.DESCRIBE_GROUPS, 5, {"groups": ["g", None]}),
    (M.DESCRIBE_GROUPS, 0, {"groups": [None]}),
    (M.DELETE_TOPICS, 3, {"topic_names": [None], "timeout_ms": 1000}),
], ids=["ListGroups-v5-types", "ListGroups-v4-states", "DescribeGroups-v5", "DescribeGroups-v0",
        "DeleteTopics-v3"])
def test_a_null_string_in_an_array_of_strings_is_a_protocol_error(api, version, body):
    """Kafka's arrays of strings hold no null: ListGroups v5 with types_filter [null] reached the
    handler, whose ``t.lower()`` raised AttributeError (an internal error closing the connection)."""
    with pytest.raises(ProtocolError, match="a null string in an array of strings"):
        api.decode_request(encoded(api, version, body), version)


def test_an_array_of_strings_without_null_still_decodes():
    body = {"states_filter": ["Stable", ""], "types_filter": ["classic"]}
    assert M.LIST_GROUPS.decode_request(encoded(M.LIST_GROUPS, 5, body), 5) == body
