"""Server state kept as a snapshot plus a journal of JSON lines, in one directory.

``snapshot.json`` holds the whole state, replaced atomically (temp file, fsync,
rename, directory fsync); ``journal`` holds one JSON line per event since, each
written with one ``write()`` (page cache: it survives a kill -9 of the server;
``sync`` makes it survive a power loss). ``compact`` writes a new snapshot and
empties the journal. Loading skips a torn last line (a power loss mid-write)
and warns about any other unreadable line. Used by the producer state
(producers.py) and the transaction state (transactions.py).

Thread-safety: ``write`` and ``compact`` on one thread; ``sync`` from any.
"""

from __future__ import annotations

import json
import logging
import os
import threading

from arrowlog._fds import Descriptors
from arrowlog.storage.files import fsync_dir, write_json_atomic

log = logging.getLogger("arrowlog.server")

# What a damaged snapshot or journal line raises when it is read and applied: not JSON
# (ValueError), nested too deep for the parser ("[" x 100,000: RecursionError, which
# stopped the server from starting), or JSON of another shape.
UNREADABLE = (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError)


class StateFiles:
    def __init__(self, directory: str, what: str, compact_bytes: int):
        self.dir = directory
        self.what = what                  # for messages: "producer state", "transaction state"
        self.compact_bytes = compact_bytes
        self._fd = -1
        self._fds = Descriptors(self)   # dropped without close(): closed, nothing written (_fds.py)
        self._bytes = 0
        self._io = threading.Lock()

    @property
    def snapshot_path(self) -> str:
        return os.path.join(self.dir, "snapshot.json")

    @property
    def journal_path(self) -> str:
        return os.path.join(self.dir, "journal")

    def load(self, apply_snapshot, apply_event, lost: str) -> None:
        """Call ``apply_snapshot(snapshot)`` (when there is one), then ``apply_event(event)``
        for each journal line. An unreadable snapshot is logged with ``lost`` (what that
        costs) and skipped; so are unreadable journal lines."""
        try:
            with open(self.snapshot_path, "rb") as f:
                apply_snapshot(json.loads(f.read()))
        except FileNotFoundError:
            pass
        except UNREADABLE as exc:
            log.error("%s snapshot %s is unreadable (%s): %s", self.what, self.snapshot_path, exc, lost)
        self.replay(apply_event)

    def replay(self, apply) -> None:
        """Call ``apply(event)`` for each journal line; unreadable lines are skipped."""
        try:
            with open(self.journal_path, "rb") as f:
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return
        for n, line in enumerate(lines):
            if not line:
                continue
            try:
                apply(json.loads(line))
            except UNREADABLE:
                # a torn tail after a power loss; anything else is worth a word
                if n < len(lines) - 2:
                    log.warning("%s journal line %d is unreadable; skipped", self.what, n + 1)

    def compact(self, snapshot: dict) -> None:
        """Write ``snapshot`` atomically, then start an empty journal."""
        with self._io:
            write_json_atomic(self.snapshot_path, snapshot)
            self._fd = self._fds.close(self._fd)   # (-1 until the new one opens)
            self._fd = self._fds.open(self.journal_path,
                                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC)
            self._bytes = 0
            fsync_dir(self.dir)

    def write(self, event: dict, fsync: bool = False) -> bool:
        """Append one event; True when the journal has grown past ``compact_bytes``
        (the caller then compacts). A failed write is logged: the state stays in memory."""
        if self._fd < 0:
            return False
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        try:
            os.write(self._fd, line)
            if fsync:
                os.fsync(self._fd)
        except OSError as exc:
            log.error("cannot write the %s journal %s: %s", self.what, self.journal_path, exc)
            return False
        self._bytes += len(line)
        return self._bytes > self.compact_bytes

    def sync(self) -> None:
        with self._io:
            if self._fd >= 0:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._io:
            self._fd = self._fds.close(self._fd)


class Journaled:
    """State persisted through ``self._files`` (a StateFiles, or None: memory only).
    Subclasses give ``_snapshot()``, the whole state as JSON."""

    _files: StateFiles | None = None

    def _snapshot(self) -> dict:
        raise NotImplementedError

    def compact(self) -> None:
        """Write the snapshot, then empty the journal."""
        if self._files is not None:
            self._files.compact(self._snapshot())

    def _journal(self, event: dict, fsync: bool = False) -> None:
        if self._files is not None and self._files.write(event, fsync):
            self._compact_logged()

    def _compact_logged(self) -> None:
        try:
            self.compact()
        except OSError as exc:
            files = self._files
            what = "state snapshot" if files is None else f"{files.what} snapshot {files.snapshot_path}"
            log.error("cannot write the %s: %s", what, exc)

    def sync(self) -> None:
        """fsync the journal (the periodic flush calls this before syncing partitions)."""
        if self._files is not None:
            self._files.sync()

    def _close_files(self) -> None:
        if self._files is not None:
            self._compact_logged()
            self._files.close()
