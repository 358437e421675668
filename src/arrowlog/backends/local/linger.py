"""The local producer's background thread: appends batches that lingered
long enough (``linger.ms``) and fsyncs periodically (``fsync.interval.ms``),
for an application that does not call poll() or flush() (which append due
batches themselves). It reads and drives the Producer (producer.py) it
serves, holding it only while working."""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .producer import Producer

# The linger thread looks for due batches this often while the producer is
# busy, and goes idle after this many looks find nothing (see busy_ticks).
# poll() and flush() append due batches themselves, so linger.ms below
# BG_TICK is exact for applications that call them.
BG_TICK = 0.005
BG_ACTIVE_TICKS = 20


def linger_thread(ref: weakref.ref, wake: threading.Event) -> None:
    """A producer's background thread (see busy_ticks): appends batches that
    lingered long enough, and fsyncs periodically; the safety net for an
    application that does not call poll() or flush(), which append due
    batches themselves.

    While the producer is busy the thread ticks every BG_TICK; after
    BG_ACTIVE_TICKS quiet ticks it goes idle until a produce() sees it idle
    (``_bg_idle`` is set before its last look, so no wake-up is missed). A
    busy producer costs it one short wake-up per tick, not one per record.
    It holds the producer only while working, so a producer that is dropped
    without close() is still collected (and its __del__ closes it)."""
    last_sync = time.monotonic()
    while True:
        producer = ref()
        if producer is None or producer._stop:
            return
        producer._bg_idle = True
        idle = pending_wait(producer) is None
        timeout = idle_timeout(producer)
        del producer
        if idle:
            wake.wait(timeout)
            wake.clear()
        producer = ref()
        if producer is None or producer._stop:
            return
        producer._bg_idle = False
        last_sync = busy_ticks(producer, last_sync)
        del producer


def pending_wait(producer: Producer) -> float | None:
    """Seconds until the oldest pending batch is due for the linger
    thread, or None if none is pending."""
    due = None
    now = time.monotonic()
    linger = max(producer._linger, BG_TICK)
    for slot in list(producer._slots.values()):
        stage = slot.stage
        if stage is not None and stage.count:
            left = linger - (now - stage.oldest)
            due = left if due is None else min(due, left)
        for acc in slot.accumulators:
            if acc.count:
                left = linger - (now - acc.created)
                due = left if due is None else min(due, left)
    return due


def idle_timeout(producer: Producer) -> float | None:
    """How long the idle linger thread may sleep: until the next periodic
    fsync if something is unsynced, else until woken."""
    if producer._dirty and producer._fsync_interval > 0 and not producer._fsync:
        return producer._fsync_interval
    return None


def busy_ticks(producer: Producer, last_sync: float) -> float:
    """The linger thread's busy phase: tick every BG_TICK, appending
    batches due for it, until BG_ACTIVE_TICKS ticks find nothing or a
    periodic fsync is due; returns the time of the last fsync."""
    quiet = 0
    while not producer._stop and quiet < BG_ACTIVE_TICKS:
        wait = pending_wait(producer)
        # close() sets _wake: a long linger.ms never holds it up
        if producer._wake.wait(BG_TICK if wait is None else max(wait, 0.0005)) and not producer._stop:
            producer._wake.clear()
        if wait is None and pending_wait(producer) is None:
            quiet += 1
            continue
        quiet = 0
        try:
            # never younger than a tick: a batch the application is
            # about to flush() itself is left to it
            producer._send_all(only_lingered=True, min_age=max(producer._linger, BG_TICK))
        except Exception as exc:  # to error_cb, or raised to the application by its next call
            producer._background_error(exc)
        if producer._time_to_sync(last_sync):
            break
    if producer._time_to_sync(last_sync):
        producer._sync_dirty()
        last_sync = time.monotonic()
    return last_sync
