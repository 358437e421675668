"""``arrowlog consume -g GROUP``: read as a member of a consumer group.

The process joins GROUP through :class:`arrowlog.Consumer` (``subscribe``),
so several ``arrowlog consume -g`` processes share the topic's partitions,
and a partition resumes from the group's committed offset. ``-o`` applies
only to partitions the group has never committed.

Commits cover what was written to stdout, never more: after each batch is
written and flushed the positions reached are committed (asynchronously),
and on exit (end of log, ``-c``, Ctrl-C) synchronously. Delivery is
therefore at-least-once, as with any Kafka consumer.

Ctrl-C and SIGTERM stop the read between batches: an exception raised by a
signal handler wherever the main thread is can land inside a lock's
acquire/release or ``Thread.start()`` of the group's commit machinery and
leave the final commit hanging or failing. The signal then ends the process
as it would have (exit 130, 143); a second one acts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any, Callable, Iterator

from .common import note
from .formatting import Record
from .offsets import END, START, OffsetSpec, resolve_bound

BATCH = 1000  # messages per consume() call
POLL_S = 0.2  # how long one consume() waits for data
ASSIGN_GRACE_S = 5.0  # with exit-at-end: how long to wait for the group to hand out partitions


def _message_record(m: Any, watermarks: dict[int, tuple[int, int]]) -> Record:
    ts = m.timestamp()
    low, high = watermarks.get(m.partition(), (0, 0))
    return Record(
        m.topic(), m.partition(), m.offset(), ts[1] if isinstance(ts, tuple) else int(ts or 0),
        m.key(), m.value(), list(m.headers() or []), low, high,
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """Yields ``stopped()``: True once SIGINT or SIGTERM arrived. Leaving the block
    (normally) raises what the signal would have: KeyboardInterrupt or SystemExit(128 + signum)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            return
        prev = previous.get(signum)
        if callable(prev):  # a second signal: what it would have done at once
            prev(signum, frame)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield lambda: bool(received)
    finally:
        for signum, prev in previous.items():
            signal.signal(signum, prev)
    if received:
        if received[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + received[0])


def consume_as_group(data_dir: str, logdir: Any, topic: Any, group: str, spec: OffsetSpec, formatter: Any,
                     out: Any, count: int | None, follow: bool) -> int:
    with _stop_on_signals() as stopped:
        return _consume(data_dir, logdir, topic, group, spec, formatter, out, count, follow, stopped)


def _consume(data_dir: str, logdir: Any, topic: Any, group: str, spec: OffsetSpec, formatter: Any,
             out: Any, count: int | None, follow: bool, stopped: Callable[[], bool]) -> int:
    import arrowlog
    from arrowlog import TopicPartition
    from arrowlog.errors import KafkaError, KafkaException

    consumer = arrowlog.Consumer({
        "log.dir": data_dir,
        "group.id": group,
        "client.id": "arrowlog-cli",
        "auto.offset.reset": "latest" if spec.start.kind == END else "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })

    def on_assign(c: Any, parts: list) -> None:
        """Partitions the group has never committed start where ``-o`` says."""
        if spec.start.kind in (START, END):
            return  # auto.offset.reset does it
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(parts)}
        chosen = []
        for tp in parts:
            if committed.get((tp.topic, tp.partition), -1) >= 0:
                continue
            pl = topic.partition(tp.partition)
            low, high = pl.watermarks()
            start = resolve_bound(spec.start, low, high, pl.offset_for_timestamp)
            chosen.append(TopicPartition(tp.topic, tp.partition, max(low, min(start, high))))
        if chosen:
            c.incremental_assign(chosen)

    written = 0
    printed: dict[tuple[str, int], int] = {}  # next offset per partition, of what reached stdout
    unprinted: dict[tuple[str, int], int] = {}  # first offset returned but not printed (-c reached)
    at_eof: set[tuple[str, int]] = set()
    started = time.monotonic()
    try:
        consumer.subscribe([topic.name], on_assign=on_assign)
        while True:
            msgs = consumer.consume(BATCH, POLL_S)
            watermarks: dict[int, tuple[int, int]] = {}
            done = False
            for m in msgs:
                key = (m.topic(), m.partition())
                error = m.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    at_eof.add(key)
                    continue
                if done:  # returned after -c was reached: not printed, so not committed
                    unprinted.setdefault(key, m.offset())
                    continue
                at_eof.discard(key)
                if m.partition() not in watermarks:
                    watermarks[m.partition()] = topic.partition(m.partition()).watermarks()
                written += 1
                out.write(formatter(_message_record(m, watermarks), written))
                printed[key] = m.offset() + 1
                done = count is not None and written >= count
            out.flush()
            if printed and not done:
                consumer.commit(offsets=_offsets(TopicPartition, printed), asynchronous=True)
            if done or stopped():
                return written
            if follow:
                continue
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            if assigned and assigned <= at_eof:
                return written
            if not assigned and time.monotonic() - started > ASSIGN_GRACE_S:
                note(f"arrowlog: group {group} assigned no partitions of {topic.name} to this consumer")
                return written
    finally:
        try:
            final = {(tp.topic, tp.partition): tp.offset
                     for tp in consumer.position(consumer.assignment()) if tp.offset >= 0}
            # partitions cut short by -c resume at the first record not printed
            final.update(unprinted)
            if final:
                consumer.commit(offsets=_offsets(TopicPartition, final), asynchronous=False)
        finally:
            consumer.close()


def _offsets(tp_cls: Any, positions: dict[tuple[str, int], int]) -> list:
    return [tp_cls(t, p, off) for (t, p), off in sorted(positions.items())]
