"""asyncio clients: AsyncProducer and AsyncConsumer, which never block the loop.

Every call that may touch the disk or wait runs in the client's own thread
(one per client, so the underlying single-threaded Consumer is only ever used
by that thread), and work is batched per hop, because the hop (~20-50 µs)
costs more than handing over one record:

- ``AsyncConsumer`` fetches up to ``batch_size`` messages per hop and
  ``async for`` yields them one by one from the loop; long waits are cut
  into short hops so ``close()`` and cancellation are prompt.
- ``AsyncProducer.produce()`` only appends to a list and returns a delivery
  future; one drain task hands everything buffered to the thread, which
  produces it all and flushes once.

>>> async with AsyncConsumer({"log.dir": "data", "group.id": "g"}) as c:
...     await c.subscribe(["orders"])
...     async for msg in c:
...         await handle(msg)
...         await c.commit(msg)

>>> async with AsyncProducer({"log.dir": "data"}) as p:
...     delivered = await p.produce("orders", b"...")   # a future
...     msg = await delivered

Cancellation: if a task awaiting ``consume()`` is cancelled while the thread
is fetching, the messages it fetched were never delivered; the consumer is
sought back to them and their offsets are not stored, so nothing is lost.

Rebalance callbacks (``on_assign``...) run in the consumer's thread and get
the synchronous Consumer; a coroutine function is run on the loop and
awaited by that thread (it must not await this AsyncConsumer, which is busy).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import inspect
import time
from typing import Any, AsyncIterator, Callable

from ._types import TopicPartition
from .backends.local.consumer import Consumer
from .backends.local.producer import Producer
from .errors import KafkaError, KafkaException, LogClosedError

HOP_S = 0.25               # longest single wait in the thread: bounds close() and cancellation latency
DEFAULT_BATCH = 500        # messages per hop for async iteration
REPORT_WAIT_S = 30.0        # a delivery report later than this fails the record
MAX_BUFFERED = 100_000     # produce() waits for the drain beyond this many buffered records


class _Threaded:
    """One worker thread that owns a client."""

    def __init__(self, name: str):
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)

    async def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        cf = self._executor.submit(functools.partial(fn, *args, **kwargs))
        return await asyncio.wrap_future(cf)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)


class AsyncConsumer(_Threaded):
    """confluent-kafka's Consumer with ``async def`` methods and ``async for``."""

    def __init__(self, config: Any = None, /, *, batch_size: int = DEFAULT_BATCH, **kwargs: Any):
        super().__init__("arrowlog-aconsumer")
        self._consumer = Consumer(config, **kwargs)
        self.batch_size = batch_size
        self._ready: collections.deque = collections.deque()   # fetched by a hop, not yet yielded
        self._closed = False

    @property
    def consumer(self) -> Consumer:
        """The synchronous Consumer (use it only from rebalance callbacks)."""
        return self._consumer

    # -- reading -------------------------------------------------------------------

    async def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list:
        """Up to ``num_messages`` messages, waiting up to ``timeout`` seconds
        (negative or None: until there are some)."""
        if self._ready:
            ready = self._ready
            return [ready.popleft() for _ in range(min(num_messages, len(ready)))]
        forever = timeout is None or timeout < 0
        deadline = time.monotonic() + (0 if timeout is None or forever else timeout)
        while True:
            self._check_open()
            hop = HOP_S if forever else max(0.0, min(HOP_S, deadline - time.monotonic()))
            out = await self._fetch(num_messages, hop)
            if out or (not forever and time.monotonic() >= deadline):
                return out

    async def _fetch(self, n: int, timeout: float) -> list:
        cf = self._executor.submit(self._consumer.consume, n, timeout)
        try:
            return await asyncio.shield(asyncio.wrap_future(cf))
        except asyncio.CancelledError:
            self._executor.submit(self._rewind, cf)
            raise

    def _rewind(self, cf: concurrent.futures.Future) -> None:
        """In the thread, after a cancelled fetch: seek back to the first
        undelivered message of each partition."""
        if cf.cancelled() or cf.exception() is not None:
            return
        first: dict[tuple[str, int], int] = {}
        for m in cf.result():
            if m.error() is None:
                first.setdefault((m.topic(), m.partition()), m.offset())
        for (t, p), off in first.items():
            try:
                self._consumer.seek(TopicPartition(t, p, off))
            except KafkaException:
                pass    # no longer assigned: the new owner starts from the commit
        group = self._consumer._group
        if group is not None:
            group.rewound(first)

    async def poll(self, timeout: float | None = None) -> Any:
        out = await self.consume(1, -1 if timeout is None else timeout)
        return out[0] if out else None

    def __aiter__(self) -> AsyncIterator:
        return self

    async def __anext__(self) -> Any:
        while not self._ready:
            if self._closed:
                raise StopAsyncIteration
            try:
                self._ready.extend(await self._fetch(self.batch_size, HOP_S))
            except LogClosedError:
                raise StopAsyncIteration from None
        return self._ready.popleft()

    async def batches(self, batch_size: int | None = None, timeout: float = HOP_S) -> AsyncIterator[list]:
        """Lists of messages as they come (an empty hop yields nothing)."""
        while not self._closed:
            out = await self.consume(batch_size or self.batch_size, timeout)
            if out:
                yield out

    # -- group and positions -----------------------------------------------------------

    def _wrap(self, cb: Callable | None) -> Callable | None:
        if cb is None or not inspect.iscoroutinefunction(cb):
            return cb
        loop = asyncio.get_running_loop()

        def run_on_loop(consumer: Consumer, partitions: list) -> Any:
            return asyncio.run_coroutine_threadsafe(cb(consumer, partitions), loop).result()
        return run_on_loop

    async def subscribe(self, topics: list[str], on_assign: Callable | None = None, on_revoke: Callable | None = None,
                        on_lost: Callable | None = None) -> None:
        await self._call(self._consumer.subscribe, topics, self._wrap(on_assign), self._wrap(on_revoke),
                         self._wrap(on_lost))

    async def unsubscribe(self) -> None:
        await self._call(self._consumer.unsubscribe)

    async def assign(self, partitions: list[TopicPartition]) -> None:
        await self._call(self._consumer.assign, partitions)

    async def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        await self._call(self._consumer.incremental_assign, partitions)

    async def unassign(self) -> None:
        await self._call(self._consumer.unassign)

    async def assignment(self) -> list[TopicPartition]:
        return await self._call(self._consumer.assignment)

    async def seek(self, partition: TopicPartition) -> None:
        key = (partition.topic, partition.partition)
        self._ready = collections.deque(m for m in self._ready if (m.topic(), m.partition()) != key)
        await self._call(self._consumer.seek, partition)

    async def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return await self._call(self._consumer.position, partitions)

    async def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None,
                     asynchronous: bool = True) -> list[TopicPartition] | None:
        return await self._call(self._consumer.commit, message, offsets, asynchronous)

    async def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        return await self._call(self._consumer.committed, partitions, timeout)

    async def store_offsets(self, message: Any = None, offsets: list[TopicPartition] | None = None) -> None:
        await self._call(self._consumer.store_offsets, message, offsets)

    async def get_watermark_offsets(self, partition: TopicPartition) -> tuple[int, int]:
        return await self._call(self._consumer.get_watermark_offsets, partition)

    # -- lifetime ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the consumer is closed")

    async def close(self) -> None:
        """Commit (with auto-commit), leave the group, stop the thread. Messages
        fetched but not yet yielded are not committed."""
        if self._closed:
            return
        self._closed = True
        undelivered = list(self._ready)
        self._ready.clear()
        cf: concurrent.futures.Future[list] = concurrent.futures.Future()
        cf.set_result(undelivered)
        try:
            await self._call(self._rewind, cf)
            await self._call(self._consumer.close)
        finally:
            self._shutdown()

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncProducer(_Threaded):
    """confluent-kafka's Producer for asyncio: ``await produce()`` returns a
    future of the delivered Message (or raises its error).

    ``delivery_reports=False`` resolves each future with None once its
    record is in the log, skipping the per-record report Message: several
    times the throughput when the offset is not needed."""

    def __init__(self, config: Any = None, /, *, delivery_reports: bool = True, **kwargs: Any):
        super().__init__("arrowlog-aproducer")
        self._producer = Producer(config, **kwargs)
        self._reports = delivery_reports
        self._buffer: list = []
        self._drain: asyncio.Task | None = None
        self._closed = False

    @property
    def producer(self) -> Producer:
        return self._producer

    async def produce(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                      timestamp: Any = None, headers: Any = None) -> asyncio.Future:
        """Queue one record; returns a future resolved with the delivered
        Message (offset set) once it is in the log."""
        if self._closed:
            raise LogClosedError("the producer is closed")
        while len(self._buffer) >= MAX_BUFFERED and self._drain is not None:
            await asyncio.shield(self._drain)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._buffer.append((topic, value, key, partition, timestamp, headers, fut))
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._drain_buffer())
        return fut

    async def _drain_buffer(self) -> None:
        while self._buffer:
            batch, self._buffer = self._buffer, []
            results = await self._call(self._send, batch)
            for fut, err, msg in results:
                if fut.done():
                    continue
                if err is not None:
                    fut.set_exception(err if isinstance(err, BaseException) else KafkaException(err))
                else:
                    fut.set_result(msg)
            await asyncio.sleep(0)  # let producers refill the buffer: one hop per loop turn

    def _send(self, batch: list) -> list:
        """In the thread: produce the batch, flush once, collect reports."""
        results: list = []
        report = results.append
        produce = self._producer.produce
        for topic, value, key, partition, timestamp, headers, fut in batch:
            try:
                if self._reports:
                    produce(topic, value, key=key, partition=partition, timestamp=timestamp, headers=headers,
                            on_delivery=functools.partial(_delivered, report, fut))
                else:
                    produce(topic, value, key=key, partition=partition, timestamp=timestamp, headers=headers)
            except BaseException as exc:
                report((fut, exc, None))
        try:
            self._producer.flush()
            if not self._reports:
                failed = {id(r[0]) for r in results}
                results.extend((item[-1], None, None) for item in batch if id(item[-1]) not in failed)
                return results
            # flush() can return while the producer's linger thread is still
            # appending a batch it took just before; its reports follow.
            deadline = time.monotonic() + REPORT_WAIT_S
            while len(results) < len(batch) and time.monotonic() < deadline:
                time.sleep(0.0001)
                self._producer.poll(0)
            if len(results) < len(batch):
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "no delivery report within "
                                                f"{REPORT_WAIT_S} s"))
        except BaseException as exc:
            reported = {id(r[0]) for r in results}
            results.extend((item[-1], exc, None) for item in batch if id(item[-1]) not in reported)
        return results

    async def produce_batch(self, topic: str, values: Any, **kwargs: Any) -> Any:
        """``Producer.produce_batch`` in the thread (columnar, fastest)."""
        return await self._call(self._producer.produce_batch, topic, values, **kwargs)

    async def flush(self) -> None:
        """Wait until every record produced so far is in the log."""
        while self._drain is not None and not self._drain.done():
            await asyncio.shield(self._drain)
        if self._drain is not None and self._drain.done() and not self._drain.cancelled():
            exc = self._drain.exception()
            if exc is not None:
                raise exc
        await self._call(self._producer.flush)

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            try:
                await self._call(self._producer.close)
            finally:
                self._shutdown()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _delivered(report: Callable, fut: asyncio.Future, err: Any, msg: Any) -> None:
    report((fut, err, msg))


__all__ = ["AsyncConsumer", "AsyncProducer"]
