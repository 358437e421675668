"""Compressed record sets are inflated off the event loop whatever the request's size:
a small request can hold many small bombs, each inflating up to the limit (8 MiB)."""

from __future__ import annotations

from arrowlog._native import kafka as K
from arrowlog.server import messages as M

from .test_hostile import check_stall, create_topic, inproc, zstd_bomb  # noqa: F401 (inproc: a fixture)
from .wireclient import call

BOMBS = 12


def test_many_small_zstd_bombs_in_one_request_do_not_stall_the_event_loop(inproc):  # noqa: F811
    bomb = zstd_bomb()   # 33 KB; refused once 8 MiB are inflated (about 18 ms of CPU each)
    assert len(bomb) * BOMBS < 1 << 20   # under the size at which every produce is offloaded
    topic = create_topic(inproc, "bombs")

    def refused():
        resp = call(inproc, M.PRODUCE, 9, {
            "transactional_id": None, "acks": -1, "timeout_ms": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": bomb}] * BOMBS}]})
        codes = [p["error_code"] for p in resp["responses"][0]["partition_responses"]]
        assert codes == [K.CORRUPT_MESSAGE] * BOMBS

    check_stall(inproc, refused, f"{BOMBS} zstd bombs of 33 KB in one request")
