"""A consumer group's directory: committed offsets, and where members meet.

Layout of ``<data>/groups/<group>/`` (the group id is percent-encoded into a
safe file name, see :func:`group_dirname`)::

    offsets.json              committed offsets folded so far, replaced atomically
    journal-<gen>.log         the commit journal of in-process members (journal.py)
    pending-<ns>-<pid>-<n>.json  a commit waiting for its round (below)
    .lock                     flock: serialises read-merge-write of offsets.json
    .seq                      the journal's mapped state (its flock: the claim lock)
    .sync                     the journal's durable mark and the futex word its
                              waiters sleep on (its flock: the sync lock)
    group.state               4 KiB mapped file; its futex word is the group's
                              generation, bumped on every membership change
    members/<member>.member   one per live member, flock'ed by it while it lives
    owners/<topic>-<p>.lock   flock'ed by the member reading that partition

``offsets.json``::

    {"format": 1, "group": "billing", "seq": 1207,
     "offsets": {"orders": {"0": {"offset": 42, "metadata": "", "commit_ms": 1732600000000, "seq": 1207}}},
     "dropped": {"orders": {"1": 1100}},
     "applied": ["pending-00000012345678901234-4242-7.json"]}

``offset`` is the *next* offset to read, as in Kafka. Every commit has a
``seq`` from the group's counter (journal.py); per partition the entry with
the highest seq, in ``offsets.json`` or a journal, is the committed offset
(``dropped``: deleted at that seq). Readers read the journals first, then
``offsets.json``: a fold writes ``offsets.json`` before it unlinks a journal.

A ``GroupDir(..., journal=True)`` (a group member, the Kafka server's offset
store, GroupAdmin: every writer of commits) commits by appending to the
journal: one record, one fdatasync shared with the others committing at the
same time. A commit too large for a journal record, and a GroupDir opened
without ``journal``, go through a round: a commit first drops
its offsets into the group directory as
``pending-<monotonic ns>-<pid>-<n>.json`` (written to a dot-file, then
renamed: never seen half-written), then takes ``.lock``. If its pending file
is gone by then, an earlier holder already made it durable and the commit is
done. Otherwise it is the leader of a round (a *fold*): it merges
``offsets.json``, every journal and *every* pending file (oldest first, at
a new seq), writes ``offsets.json.tmp``, fsyncs it, renames it over
``offsets.json``, fsyncs the directory, and only then unlinks the pending
files it merged and the retired journals. Members that commit at the same
time thus share one pair of fsyncs instead of queueing for one each.

A kill -9 at any point leaves the old file or the new one, never a torn one
(a stale ``.tmp`` is removed by the next round). A commit killed before its
round leaves its pending file, which the next round applies: like a Kafka
OffsetCommit in flight when its client died, it may still take effect.
``offsets.json`` names the pending files its round merged (``applied``), so a
file whose unlink a power loss undid is not applied twice: the unlinks of
earlier rounds are made durable by the next round's directory fsync. Pending
files are not fsynced: one a power loss left empty or torn belonged to a
commit that never returned, and is dropped.
Readers never lock: rename is atomic, so they see one complete version.

Thread-safety: a GroupDir may be shared by threads; commits from threads and
processes are serialised by ``.lock`` (flock) plus an in-process lock, since
flock does not exclude threads sharing one open file.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import threading
import time
import urllib.parse
from typing import NamedTuple

from .._native import core
from ..errors import GroupError
from ..storage.files import fsync_dir
from .journal import (
    REMOVED,
    STATE_FILE,
    GroupJournal,
    JournalRemoved,
    journal_gen,
    open_state_file,
    read_journal,
)

OFFSETS_FILE = "offsets.json"
FORMAT_VERSION = 1
PENDING_PREFIX, PENDING_SUFFIX = "pending-", ".json"
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))   # made once: json.dumps builds one per call


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_if_orphan(tmp: str) -> None:
    """Remove a half-written pending file whose writer (pid in its name) is dead."""
    try:
        pid = int(os.path.basename(tmp).split("-")[2])
        os.kill(pid, 0)
    except ProcessLookupError:
        _unlink(tmp)
    except (ValueError, IndexError, PermissionError):
        pass


class UnknownGroupError(GroupError, KeyError):
    """The consumer group has no committed offsets and no members."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown group"


class CommittedOffset(NamedTuple):
    offset: int
    metadata: str
    commit_ms: int
    leader_epoch: int = -1   # Kafka's committed leader epoch (-1: none given)


def group_dirname(group: str) -> str:
    """The directory name of a group id: percent-encoded, never hidden."""
    if not isinstance(group, str) or not group:
        raise GroupError(f"a group id must be a non-empty str, not {group!r}")
    if len(group) > 200:
        raise GroupError(f"group id is {len(group)} characters long; the limit is 200")
    name = urllib.parse.quote(group, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > 255:  # file systems' name limit (percent-encoding triples unusual characters)
        raise GroupError(f"group id {group[:40]!r}... encodes to a {len(name)}-byte directory name; the limit "
                         "is 255: use a shorter group id or fewer characters outside [A-Za-z0-9_.-]")
    return name


def group_from_dirname(name: str) -> str:
    return urllib.parse.unquote(name)


class GroupDir:
    """The files of one consumer group (created on first use)."""

    def __init__(self, groups_dir: str, group: str, *, create: bool = True, journal: bool = False):
        self.group = group
        self.path = os.path.join(groups_dir, group_dirname(group))
        self.members_dir = os.path.join(self.path, "members")
        self.owners_dir = os.path.join(self.path, "owners")
        self.offsets_path = os.path.join(self.path, OFFSETS_FILE)
        self._thread_lock = threading.Lock()
        self._pending_seq = itertools.count(1)  # next() is atomic under the GIL
        self._state: core.PartitionState | None = None
        self._use_journal = journal
        self._journal: GroupJournal | None = None
        self._journal_lock = threading.Lock()
        if create:
            self.ensure()

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def ensure(self) -> None:
        for d in (self.path, self.members_dir, self.owners_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)

    # -- generation ---------------------------------------------------------------

    @property
    def state(self) -> core.PartitionState:
        """The mapped ``group.state``; its word is the generation."""
        if self._state is None:
            self.ensure()
            path = os.path.join(self.path, "group.state")
            self._state, fd = open_state_file(path)
            os.close(fd)  # the mapping stays valid
        return self._state

    def generation(self) -> int:
        return self.state.current_word()

    def bump_generation(self) -> None:
        self.state.bump()

    # -- committed offsets --------------------------------------------------------

    def read_offsets(self) -> dict[tuple[str, int], CommittedOffset]:
        """Every committed offset of the group ({} when there are none)."""
        # journals first: a fold writes offsets.json before it unlinks a journal,
        # so a journal missed here is in the offsets.json read next
        view = _View()
        for name in self._journal_names():
            view.add_journal(os.path.join(self.path, name))
        view.add_doc(self.offsets_path, self._read_doc())
        return view.offsets()

    def has_offsets(self) -> bool:
        """Whether anything was ever committed (an offsets file or a journal)."""
        return os.path.exists(self.offsets_path) or bool(self._journal_names())

    def offsets_version(self) -> tuple:
        """Changes whenever the committed offsets may have changed (for caches)."""
        out: list[object] = []
        for name in [OFFSETS_FILE] + self._journal_names():
            try:
                st = os.stat(os.path.join(self.path, name))
            except FileNotFoundError:
                continue
            out.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
        try:
            with open(os.path.join(self.path, STATE_FILE), "rb") as f:
                out.append(f.read(64))   # its counter moves with every journal commit
        except FileNotFoundError:
            pass
        return tuple(out)

    def _journal_names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.path) if journal_gen(n) is not None)
        except FileNotFoundError:
            return []

    def _read_doc(self) -> dict:
        try:
            with open(self.offsets_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc["offsets"], dict):
                raise TypeError("not an object with 'offsets'")
            version = int(doc.get("format", 1))
        except (ValueError, KeyError, TypeError) as exc:
            raise GroupError(f"{self.offsets_path} is not a valid offsets file ({exc}); "
                             "reset the group's offsets or delete the group") from None
        if version > FORMAT_VERSION:
            raise GroupError(f"{self.offsets_path} has format {version}, newer than this arrowlog reads "
                             f"({FORMAT_VERSION}): it was written by a newer arrowlog; use that version (or newer) "
                             "for this data directory")
        return doc

    def write_offsets(self, updates: dict[tuple[str, int], tuple]) -> None:
        """Merge ``{(topic, partition): (offset, metadata[, leader_epoch])}`` into the
        committed offsets, atomically and durably (returns once they are on
        disk). With ``journal=True`` one record appended to this writer's
        journal; else a round (concurrent committers share its fsyncs)."""
        if not updates:
            return
        now = int(time.time() * 1000)
        entries = [[topic, int(p), int(offset), metadata or "", now,
                    int(epoch[0]) if epoch and epoch[0] is not None else -1]
                   for (topic, p), (offset, metadata, *epoch) in updates.items()]
        if self._use_journal and self._journal_commit(entries):
            return
        self.ensure()
        mine = self._drop_pending(entries)
        try:
            with self.locked():
                if not os.path.exists(mine):
                    return  # an earlier round merged it and made it durable
                self._fold()
        except BaseException:
            _unlink(mine)  # failed: the commit must not take effect later
            raise

    def _journal_commit(self, entries: list) -> bool:
        """Append one commit to the group's journal (see journal.py); False
        when it is too large for one. A journal this commit found full is
        folded into offsets.json afterwards, and unlinked."""
        payload = _COMPACT_JSON.encode(entries).encode()
        for attempt in (1, 2):
            with self._journal_lock:
                j = self._journal
                if j is None or not j.usable():
                    if j is not None:
                        j.close()
                    self.ensure()
                    j = self._journal = GroupJournal(self.path, self._max_seq_on_disk)
            try:
                retired = j.commit(payload)
                break
            except JournalRemoved:
                # the group's directory was removed (and perhaps made again) under this
                # handle: commit into the directory that is there now
                with self._journal_lock:
                    if self._journal is j:
                        self._journal = None
                j.close()
                if attempt == 2:
                    raise
        if retired is None:
            return False
        if retired:
            with self.locked():
                self._fold()
        return True

    def _max_seq_on_disk(self) -> int:
        view = _View()
        for name in self._journal_names():
            view.add_journal(os.path.join(self.path, name))
        view.add_doc(self.offsets_path, self._read_doc())
        return view.max_seq

    def _drop_pending(self, entries: list) -> str:
        """Write a pending file (complete or absent: renamed into place)."""
        name = f"{PENDING_PREFIX}{time.monotonic_ns():020d}-{os.getpid()}-{next(self._pending_seq)}{PENDING_SUFFIX}"
        tmp = os.path.join(self.path, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(entries).encode())
        finally:
            os.close(fd)
        path = os.path.join(self.path, name)
        os.rename(tmp, path)
        return path

    def _fold(self, *, drop: list[tuple[str, int]] | None = None, drop_all: bool = False) -> None:
        """Merge offsets.json, every journal and every pending file into a new
        offsets.json; then unlink the pending files and the retired journals
        (all but the current generation's). Holds the lock."""
        view = _View()
        doc = self._read_doc()
        view.add_doc(self.offsets_path, doc)
        before = dict(view.entries)
        journals = [(journal_gen(name), os.path.join(self.path, name)) for name in self._journal_names()]
        for _gen, path in journals:
            view.add_journal(path)
        j = self._journal if self._journal is not None and self._journal.usable() else GroupJournal(self.path, int)
        try:
            # a seq after everything on disk (also repairs a counter a power loss set back)
            round_seq, current = j.next_seq(at_least=view.max_seq + 1)
        finally:
            if j is not self._journal:
                j.close()
        retired = [path for gen, path in journals if gen is not None and current and gen < current]
        applied = doc.get("applied", [])
        merged = self._merge_pending(view, applied if isinstance(applied, list) else [], round_seq)
        if drop_all:
            drop = list(view.entries)
        for key in drop or ():
            view.drop(key, round_seq)
        if merged or retired or drop is not None or view.entries != before:
            self._write_doc(view, merged)
        for path in retired:
            _unlink(path)

    def _merge_pending(self, view: _View, applied: list, round_seq: int) -> list[str]:
        """Merge every pending file into ``view``, oldest first, as of
        ``round_seq``; the names merged (to unlink once durable)."""
        names = []
        done = set(str(a) for a in applied)
        for name in sorted(os.listdir(self.path)):
            if name.startswith("." + PENDING_PREFIX) and name.endswith(".tmp"):
                _remove_if_orphan(os.path.join(self.path, name))
                continue
            if not (name.startswith(PENDING_PREFIX) and name.endswith(PENDING_SUFFIX)):
                continue
            names.append(name)
            if name in done:  # merged by the last round; a power loss undid its unlink
                continue
            try:
                with open(os.path.join(self.path, name), "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                names.pop()
                continue
            try:
                parsed = [((str(topic), int(p)),
                           CommittedOffset(int(offset), str(metadata), int(commit_ms), int(epoch)))
                          for topic, p, offset, metadata, commit_ms, epoch in json.loads(raw)]
            except (ValueError, TypeError):
                # pending files are not fsynced: after a power loss one may be
                # empty or torn. Its commit never returned (a round that applied
                # it names it in ``applied``): drop it, as the crash did.
                continue
            for key, e in parsed:
                view.put(key, e, round_seq, force=True)
        return names

    def drop_offsets(self, keys: list[tuple[str, int]] | None = None) -> None:
        """Forget these committed offsets (all of them when ``keys`` is None);
        commits pending before it are applied first, so none comes back later."""
        with self.locked():
            self._fold(drop=list(keys) if keys is not None else None, drop_all=keys is None)

    def _write_doc(self, view: _View, merged: list[str]) -> None:
        doc: dict = {"format": FORMAT_VERSION, "group": self.group, "offsets": {}, "seq": view.max_seq}
        for (topic, p), (e, seq) in sorted(view.entries.items()):
            if e is None:
                doc.setdefault("dropped", {}).setdefault(topic, {})[str(p)] = seq
                continue
            entry = {"offset": e.offset, "metadata": e.metadata, "commit_ms": e.commit_ms, "seq": seq}
            if e.leader_epoch >= 0:
                entry["leader_epoch"] = e.leader_epoch
            doc["offsets"].setdefault(topic, {})[str(p)] = entry
        if merged:
            doc["applied"] = merged
        tmp = self.offsets_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(doc, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.offsets_path)
        fsync_dir(self.path)
        for name in merged:
            _unlink(os.path.join(self.path, name))

    def locked(self) -> _GroupLock:
        self.ensure()
        return _GroupLock(self)

    # -- removal ------------------------------------------------------------------

    def remove(self) -> None:
        """Delete the group's directory: renamed away first (atomic), so a
        crash never leaves half a group."""
        if not self.exists():
            return
        parent = os.path.dirname(self.path)
        grave = os.path.join(parent, f".deleted-{os.getpid()}-{os.urandom(4).hex()}")
        marked = self._mark_removed(REMOVED)
        try:
            os.rename(self.path, grave)
        except BaseException:
            if marked:
                self._mark_removed(bytes(len(REMOVED)))   # not removed: the next commit starts a new generation
            raise
        fsync_dir(parent)
        shutil.rmtree(grave, ignore_errors=True)

    def _mark_removed(self, boot: bytes) -> bool:
        """Write ``boot`` over the boot id in ``.seq``, under the claim lock (no
        record is being appended meanwhile): every journal handle of the group,
        in any process, finds REMOVED at its next claim and opens the directory
        that is there then (journal.py), instead of committing into one on its
        way to deletion. False when there is no ``.seq``."""
        try:
            fd = os.open(os.path.join(self.path, STATE_FILE), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.pwrite(fd, boot, 0)
        finally:
            os.close(fd)   # (releases the flock)
        return True

    def close(self) -> None:
        """Release the mapped state and the journal handle; the journal stays
        (its records are durable) until a fold retires it."""
        self._state = None
        with self._journal_lock:
            j, self._journal = self._journal, None
            if j is not None:
                j.close()


class _View:
    """Committed offsets merged from offsets.json and journals: per partition
    the entry with the highest seq (None: dropped at that seq)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], tuple[CommittedOffset | None, int]] = {}
        self.max_seq = 0

    def put(self, key: tuple[str, int], e: CommittedOffset | None, seq: int, *, force: bool = False) -> None:
        cur = self.entries.get(key)
        if cur is None or seq > cur[1] or (force and seq == cur[1]):
            self.entries[key] = (e, seq)
        if seq > self.max_seq:
            self.max_seq = seq

    def drop(self, key: tuple[str, int], seq: int) -> None:
        self.put(key, None, seq, force=True)

    def add_journal(self, path: str) -> None:
        # a later record with the same seq wins: a committer killed while updating
        # the counter may leave its seq to the next one, whose commit returned
        for seq, entries in read_journal(path):
            for topic, p, offset, metadata, commit_ms, epoch in entries:
                self.put((topic, p), CommittedOffset(offset, metadata, commit_ms, epoch), seq, force=True)

    def add_doc(self, path: str, doc: dict) -> None:
        if not doc:
            return
        try:
            for topic, parts in doc["offsets"].items():
                for p, e in parts.items():
                    self.put((topic, int(p)), CommittedOffset(int(e["offset"]), e.get("metadata") or "",
                                                              int(e.get("commit_ms", 0)),
                                                              int(e.get("leader_epoch", -1))), int(e.get("seq", 0)))
            for topic, parts in (doc.get("dropped") or {}).items():
                for p, seq in parts.items():
                    self.put((topic, int(p)), None, int(seq))
            self.max_seq = max(self.max_seq, int(doc.get("seq", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GroupError(f"{path} is not a valid offsets file ({exc}); "
                             "reset the group's offsets or delete the group") from None

    def offsets(self) -> dict[tuple[str, int], CommittedOffset]:
        return {k: e for k, (e, _) in self.entries.items() if e is not None}


class _GroupLock:
    __slots__ = ("gdir", "fd")

    def __init__(self, gdir: GroupDir):
        self.gdir = gdir
        self.fd = -1

    def __enter__(self) -> None:
        self.gdir._thread_lock.acquire()
        try:
            self.fd = os.open(os.path.join(self.gdir.path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            if self.fd >= 0:
                os.close(self.fd)
            self.gdir._thread_lock.release()
            raise

    def __exit__(self, *exc) -> None:
        try:
            os.close(self.fd)  # releases the flock
        finally:
            self.fd = -1
            self.gdir._thread_lock.release()


def list_group_dirs(groups_dir: str) -> list[str]:
    """Group ids that have a directory under ``groups_dir``."""
    try:
        names = os.listdir(groups_dir)
    except FileNotFoundError:
        return []
    return sorted(group_from_dirname(n) for n in names
                  if not n.startswith(".") and os.path.isdir(os.path.join(groups_dir, n)))
