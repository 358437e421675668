"""The process's one helper thread, for reads that split their work in two
halves with the GIL released (a segment's CRC checks, a replay's native
pass over many small partitions). None on a machine with one CPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_pool: ThreadPoolExecutor | None = None


def helper_thread() -> ThreadPoolExecutor | None:
    """The helper (started on first use), or None with one CPU."""
    global _pool
    if _pool is None and len(os.sched_getaffinity(0)) > 1:
        _pool = ThreadPoolExecutor(1, thread_name_prefix="arrowlog-helper")
    return _pool


def spare_core() -> bool:
    """Whether another CPU looks free right now: fewer runnable tasks in the
    system (the fourth field of /proc/loadavg, which counts the caller) than
    CPUs this process may use. Work split with the helper thread waits for
    the helper's share, which a busy machine delays (docs/SCALING.md, steady
    produce, round four). True where the count cannot be read."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return running < len(os.sched_getaffinity(0))


def spare_helper() -> ThreadPoolExecutor | None:
    """The helper, for work the caller splits with it while a CPU looks free
    (spare_core()); None otherwise, or with one CPU."""
    return helper_thread() if spare_core() else None


def submit_or_none(helper: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Future | None:
    """``helper.submit(fn, *args)``, or None when the executor takes no more
    work (shut down, or the interpreter's exit has begun: submit() raises
    RuntimeError): the caller then does that work on its own thread."""
    try:
        return helper.submit(fn, *args)
    except RuntimeError:
        return None


def in_halves(helper: ThreadPoolExecutor | None, first: Callable[[], Any],
              second: Callable[[], Any]) -> tuple[Any, Any]:
    """``(first(), second())``, ``first()`` on the ``helper`` thread while
    ``second()`` runs here. When the helper has not started ``first()`` by
    the time ``second()`` is done (a busy machine has not given its thread a
    core yet), it runs here too rather than after a wait for the scheduler;
    so does all of it without a helper (one CPU) or when the helper takes no
    more work (shut down at the interpreter's exit). If ``second()`` raises,
    ``first()`` is never left running (it may read the caller's memory)."""
    later = None if helper is None else submit_or_none(helper, first)
    try:
        b = second()
    except BaseException:
        if later is not None and not later.cancel():
            futures.wait([later])
        raise
    a = first() if later is None or later.cancel() else later.result()
    return a, b


def _reset_after_fork() -> None:
    global _pool
    _pool = None  # its thread did not survive the fork


os.register_at_fork(after_in_child=_reset_after_fork)

__all__ = ["helper_thread", "in_halves", "spare_core", "spare_helper", "submit_or_none"]
