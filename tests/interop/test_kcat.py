"""kcat (Debian's package, librdkafka 2.0.x) against arrowlog serve: -L, -P, -C -e, -G."""

from __future__ import annotations

import json
import subprocess


def run(kcat, server, *args, input=None, timeout=30):
    return subprocess.run([kcat, "-b", server.bootstrap, *args], input=input, capture_output=True,
                          text=True, timeout=timeout)


def test_kcat_metadata_produce_consume(kcat, server, topic):
    r = run(kcat, server, "-P", "-t", topic, "-K", ":", "-z", "snappy", "-X", "enable.idempotence=true",
            input="k1:one\nk2:two\n:three\n")
    assert r.returncode == 0, r.stderr

    r = run(kcat, server, "-L", "-J")
    assert r.returncode == 0, r.stderr
    md = json.loads(r.stdout)
    assert md["controllerid"] == 1
    assert [b["id"] for b in md["brokers"]] == [1]
    t = next(t for t in md["topics"] if t["topic"] == topic)
    assert [p["partition"] for p in t["partitions"]] == [0]

    r = run(kcat, server, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%o|%k|%s\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0|k1|one", "1|k2|two", "2||three"]


def test_kcat_balanced_consumer_group(kcat, server, topic, group):
    r = run(kcat, server, "-P", "-t", topic, input="\n".join(f"m{i}" for i in range(20)) + "\n")
    assert r.returncode == 0, r.stderr
    r = run(kcat, server, "-G", group, "-o", "beginning", "-e", "-f", "%s\n", topic, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"m{i}" for i in range(20)]


def test_old_librdkafka_enables_every_feature(kcat, server, topic):
    """Debian's librdkafka (2.0.x) enables features only when specific versions fall
    inside the advertised ranges (fixed upstream in 2.11.1): check that it enables
    v2 batches, idempotence, zstd/lz4, offsets by time and balanced consumer groups."""
    r = run(kcat, server, "-P", "-t", topic, "-X", "debug=feature,broker", input="x\n")
    assert r.returncode == 0, r.stderr
    enabled = set()
    for line in r.stderr.splitlines():
        if "Updated enabled protocol features to " in line:
            enabled |= set(line.rsplit(" to ", 1)[1].strip().split(","))
    assert {"MsgVer2", "IdempotentProducer", "ZSTD", "LZ4", "OffsetTime", "BrokerBalancedConsumer",
            "BrokerGroupCoordinator", "ApiVersion"} <= enabled
