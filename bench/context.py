"""What every benchmark shares: the records, run counts, scratch space and peer servers.

The same records are used everywhere: ``n`` values of 100 random bytes with
8-byte big-endian keys (the record's index) and millisecond timestamps one
apart. Peer servers are started on first use and stopped by :meth:`Context.close`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from functools import cached_property

import numpy as np
import pyarrow as pa

from .harness import Row, attempt, measure

VALUE_SIZE = 100
KEY_SIZE = 8
BASE_TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z; one record per millisecond after it


DROP_CACHES = "/proc/sys/vm/drop_caches"


class ColdCacheUnavailable(RuntimeError):
    """The page cache cannot be dropped here (not root, or /proc/sys read-only)."""


def drop_page_cache(path: str = DROP_CACHES) -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``: the next read comes from the disk.

    Raises :class:`ColdCacheUnavailable` naming why not, so a cold row is
    reported missing with its reason instead of silently measuring a warm cache.
    """
    if os.geteuid() != 0:
        raise ColdCacheUnavailable("dropping the page cache needs root (echo 3 > /proc/sys/vm/drop_caches)")
    os.sync()
    try:
        with open(path, "w") as f:
            f.write("3\n")
    except OSError as exc:
        raise ColdCacheUnavailable(f"cannot write {path}: {exc.strerror or exc}") from None


class Records:
    def __init__(self, n: int, seed: int = 20260101) -> None:
        self.n = n
        rng = np.random.default_rng(seed)
        self.value_bytes = rng.integers(0, 256, n * VALUE_SIZE, dtype=np.uint8).tobytes()
        self.key_bytes = np.arange(n, dtype=">u8").tobytes()
        self.timestamps = BASE_TS_MS + np.arange(n, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes of values (the payload every GB/s figure counts)."""
        return self.n * VALUE_SIZE

    @cached_property
    def values(self) -> list[bytes]:
        vb = self.value_bytes
        return [vb[i : i + VALUE_SIZE] for i in range(0, len(vb), VALUE_SIZE)]

    @cached_property
    def keys(self) -> list[bytes]:
        kb = self.key_bytes
        return [kb[i : i + KEY_SIZE] for i in range(0, len(kb), KEY_SIZE)]

    @staticmethod
    def _binary(data: bytes, n: int, width: int) -> pa.Array:
        offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
        return pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(data)])

    @cached_property
    def values_arrow(self) -> pa.Array:
        return self._binary(self.value_bytes, self.n, VALUE_SIZE)

    @cached_property
    def keys_arrow(self) -> pa.Array:
        return self._binary(self.key_bytes, self.n, KEY_SIZE)

    def envelope_table(self) -> pa.Table:
        """The records in arrowlog's stored envelope: offset, timestamp, key, value, headers."""
        header_t = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
        return pa.table(
            {
                "offset": pa.array(np.arange(self.n, dtype=np.int64)),
                "timestamp": pa.array(self.timestamps, pa.timestamp("ms")),
                "key": self.keys_arrow,
                "value": self.values_arrow,
                "headers": pa.nulls(self.n, header_t),
            }
        )


class Context:
    def __init__(self, n: int, runs: int, warmup: int, quick: bool = False, latency_sends: int = 10_000) -> None:
        self.n = n
        self.runs = runs
        self.warmup = warmup
        self.quick = quick
        self.latency_sends = latency_sends
        self.n_durable = max(1000, n // 5)  # fsync-bound rows: fewer records, same batch of 1,000
        self.n_nats = max(1000, n // 10)  # nats-py is the slowest client by far
        self.root = tempfile.mkdtemp(prefix="arrowlog-bench-")
        self.cache: dict = {}
        self.versions: dict[str, str] = {}
        self.durability: dict[str, str] = {}
        self.latency_samples: dict[str, list[float]] = {}  # system -> all latencies (µs), for the chart
        self._servers: dict = {}

    @cached_property
    def records(self) -> Records:
        return Records(self.n)

    def scratch(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=name + "-", dir=self.root)

    def measure(self, body, **kw) -> list[float]:
        """:func:`~bench.harness.measure` with this run's counts, and the page cache
        written back before every run, so one row's dirty pages do not throttle the next."""
        kw.setdefault("runs", self.runs)
        kw.setdefault("warmup", self.warmup)
        setup = kw.pop("setup", None)

        def fresh():
            os.sync()
            return setup() if setup is not None else None

        return measure(body, setup=fresh, **kw)

    def row(self, template: Row, produce_samples) -> Row:
        t0 = time.perf_counter()
        row = attempt(template, produce_samples)
        print(f"    {row.key}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        return row

    def server(self, key: str, factory):
        """A peer server started on first use and shared until :meth:`close`."""
        if key not in self._servers:
            try:
                self._servers[key] = factory().start()
            except Exception as exc:
                self._servers[key] = exc  # remembered: one failed start reports every row
        s = self._servers[key]
        if isinstance(s, Exception):
            raise s
        return s

    def close(self) -> None:
        for s in self._servers.values():
            if not isinstance(s, Exception):
                s.stop()
        self._servers.clear()
        shutil.rmtree(self.root, ignore_errors=True)
