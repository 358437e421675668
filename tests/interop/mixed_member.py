"""One member of a mixed consumer group, run as its own process by
test_mixed_group.py: ``python mixed_member.py wire|local <bootstrap|data dir> <group> <topic> [strategy]``.

A ``wire`` member is confluent-kafka over ``arrowlog serve``; a ``local`` member
is an in-process arrowlog.Consumer on the server's data directory. Both print
``OWN <partitions>`` whenever their assignment changes and ``R <value>`` for
every record they return, before committing it (so a kill between the two
shows as a duplicate, never as a gap). SIGTERM makes the member close cleanly
(commit, leave the group); SIGKILL is a crash.
"""

from __future__ import annotations

import signal
import sys

BATCH = 20


def main() -> None:
    kind, where, group, topic = sys.argv[1:5]
    strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
    if kind == "wire":
        import confluent_kafka as ck
        consumer = ck.Consumer({"bootstrap.servers": where, "group.id": group, "auto.offset.reset": "earliest",
                                "enable.auto.commit": False, "session.timeout.ms": 6000,
                                "heartbeat.interval.ms": 100, "client.id": "wire-member",
                                "partition.assignment.strategy": strategy})
        exc_type: type[Exception] = ck.KafkaException
    else:
        import arrowlog
        consumer = arrowlog.Consumer({"log.dir": where, "group.id": group, "auto.offset.reset": "earliest",
                                      "enable.auto.commit": False, "client.id": "local-member",
                                      "partition.assignment.strategy": strategy})
        exc_type = arrowlog.KafkaException
    owned: set[int] = set()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def show() -> None:
        print("OWN " + ",".join(str(p) for p in sorted(owned)), flush=True)

    def on_assign(_c, parts) -> None:
        owned.update(tp.partition for tp in parts)
        show()

    def on_revoke(_c, parts) -> None:
        owned.difference_update(tp.partition for tp in parts)
        show()

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    print("READY", flush=True)
    while not stop:
        batch = [m for m in consumer.consume(BATCH, 0.1) if m.error() is None]
        if not batch:
            continue
        sys.stdout.write("".join(f"R {m.value().decode()}\n" for m in batch))
        sys.stdout.flush()
        try:
            consumer.commit(asynchronous=False)
        except exc_type as exc:   # a rebalance took the partitions: the new owner re-reads
            print(f"COMMIT-FAILED {exc}", flush=True)
    consumer.close()
    print("CLOSED", flush=True)


if __name__ == "__main__":
    main()
