"""A second, independent client implementation: Go's sarama (Debian's
golang-github-shopify-sarama-dev), built by the test from /usr/share/gocode with no
network. tests/interop/go/sarama_interop.go produces with timestamps, looks offsets up
by time, and consumes in a group that rebalances from one member to two, committing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from arrowlog.server import messages as M

from .wireclient import call

GO_SOURCE = Path(__file__).parent / "go" / "sarama_interop.go"
GOPATH = "/usr/share/gocode"
SARAMA = Path(GOPATH) / "src/github.com/Shopify/sarama"
N = 100


@pytest.fixture(scope="module")
def sarama_interop(tmp_path_factory):
    go = shutil.which("go")
    if go is None or not SARAMA.is_dir():
        pytest.fail("the Go client test needs Debian's golang-go and golang-github-shopify-sarama-dev: "
                    "run `make system-deps`")
    out = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(out / "cache"),
           "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "1"}
    binary = out / "sarama_interop"
    built = subprocess.run([go, "build", "-o", str(binary), str(GO_SOURCE)], env=env, capture_output=True,
                           text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    return binary


def test_sarama_produces_consumes_in_a_rebalancing_group_commits_and_finds_offsets_by_time(
        server, topic, group, sarama_interop):
    created = call(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": topic, "num_partitions": 2, "replication_factor": 1}]})
    assert created["topics"][0]["error_code"] == 0
    run = subprocess.run([str(sarama_interop), server.bootstrap, topic, group, str(N)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["produced"] == N and result["consumed_unique"] == N
    # message i went to partition i % 2 with timestamp base + i s: message 50 is offset 25 of
    # partition 0, and message 51 (the first at or after it) offset 25 of partition 1
    assert result["offsets_for_times"] == {"0": 25, "1": 25}
    # member a had both partitions alone, then the group rebalanced and b took one
    gens_a, gens_b = result["claims_a"], result["claims_b"]
    assert any(sorted(p) == [0, 1] for p in gens_a.values())
    last = max(int(g) for g in gens_b)
    assert sorted(gens_a[str(last)] + gens_b[str(last)]) == [0, 1] and gens_b[str(last)]
    # what the group committed, seen by the server: every message consumed
    fetched = call(server, M.OFFSET_FETCH, 7, {"group_id": group, "topics": [
        {"name": topic, "partition_indexes": [0, 1]}]})
    assert [p["committed_offset"] for p in fetched["topics"][0]["partitions"]] == [N // 2, N // 2]
