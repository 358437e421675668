"""Long-lived workers: stop cleanly on SIGTERM/SIGINT.

A worker that is told to stop (``kill``, Ctrl-C, a container runtime's
SIGTERM) should finish the batch in hand, commit it, and leave its group so
that its partitions move to the other members at once, rather than die in
the middle of a record. Two ways to get that:

>>> from arrowlog.worker import Shutdown
>>> with Shutdown() as stop, Consumer(conf) as c:      # close() commits and leaves
...     c.subscribe(["orders"])
...     while not stop:
...         for msg in c.consume(500, timeout=0.5):
...             handle(msg)

>>> from arrowlog.worker import run
>>> run(Consumer(conf), handle_batch, topics=["orders"])   # returns when signalled

The first signal sets the flag; a second one of the same kind restores the
default behaviour and re-raises it (Ctrl-C twice interrupts a stuck
handler). Handlers can only be installed from the main thread (a Python
rule); asyncio programs use :func:`install_asyncio` instead.

A SIGKILLed worker cannot do any of this, and need not: the kernel releases
its group locks and the survivors resume from its last commit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ArrowlogError

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """A flag set by SIGTERM/SIGINT (``bool(stop)``, ``stop.wait()``).

    Install with ``install()`` or a ``with`` block; ``restore()`` puts the
    previous handlers back.
    """

    def __init__(self, signals: Iterable[int] = DEFAULT_SIGNALS):
        self.signals = tuple(signals)
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self.received: int | None = None

    def install(self) -> Shutdown:
        if threading.current_thread() is not threading.main_thread():
            raise ArrowlogError("signal handlers can only be installed from the main thread; "
                                "call Shutdown().install() there, or set() the flag yourself")
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self._event.is_set() and signum == self.received:
            # second time: give the default behaviour back and re-deliver it
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL) or signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        self._event.set()

    def set(self) -> None:
        """Ask the worker to stop, as a signal would."""
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    __bool__ = is_set

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            try:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def __enter__(self) -> Shutdown:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()


def run(consumer: Any, handle: Callable[[list], Any], *, topics: list[str] | None = None,
        batch_size: int = 500, timeout: float = 0.5, stop: Shutdown | None = None,
        signals: Iterable[int] = DEFAULT_SIGNALS, close: bool = True) -> int:
    """Consume batches and pass each to ``handle(messages)`` until SIGTERM or
    SIGINT (or ``stop.set()``); commit after every batch ``handle`` returns
    from; then close the consumer, which leaves the group. Returns the
    number of records handled.

    Error events (partition EOF) are not passed to ``handle``. If ``handle``
    raises, that batch is not committed (its offsets are forgotten, so
    close() does not commit them either), the consumer is closed and the
    exception propagates: the records are read again by whoever takes the
    partitions over.
    """
    own_stop = stop is None
    if stop is None:
        stop = Shutdown(signals).install()
    handled = 0
    try:
        if topics is not None:
            consumer.subscribe(list(topics))
        while not stop:
            msgs = consumer.consume(batch_size, timeout)
            if not msgs:
                continue
            data = [m for m in msgs if m.error() is None]
            if not data:
                continue
            try:
                handle(data)
            except BaseException:
                _forget(consumer, data)
                raise
            handled += len(data)
            _commit(consumer, data)
    finally:
        try:
            if close:
                consumer.close()
        finally:
            if own_stop:
                stop.restore()
    return handled


def _commit(consumer: Any, data: list) -> None:
    """Commit the end of each partition's run in ``data``."""
    last = {}
    for m in data:
        last[(m.topic(), m.partition())] = m.offset() + 1
    from ._types import TopicPartition
    consumer.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in last.items()], asynchronous=False)


def _forget(consumer: Any, data: list) -> None:
    group = getattr(consumer, "_group", None)
    if group is not None:
        group.forget_stored({(m.topic(), m.partition()) for m in data})


def install_asyncio(loop: Any = None, signals: Iterable[int] = DEFAULT_SIGNALS) -> Any:
    """An ``asyncio.Event`` set on SIGTERM/SIGINT, through the running
    loop's own signal handling (``loop.add_signal_handler``)."""
    import asyncio
    loop = loop or asyncio.get_running_loop()
    event = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, event.set)
    return event
