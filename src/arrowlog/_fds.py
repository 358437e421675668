"""The raw file descriptors one object owns, each closed exactly once.

An owner (a LogDir, a partition, a segment view, a journal, a group membership)
opens or adopts its descriptors through its ``Descriptors`` and closes them
through it. ``close(fd)`` closes a number only while the set holds it, and
forgets it before closing it: a number closed once (and perhaps handed by the
kernel to another open since) is never closed again through this set, whatever
an attribute still says. ``detach(fd)`` hands a descriptor over to a caller who
closes it (a partition's close passes its descriptors to one native close of
all of them).

When the owner is collected with descriptors still held (dropped without
close(), or its constructor failed half-way), they are closed; nothing else
runs (no sync, no clean mark, no group leave: the next opener sees what a kill
leaves). This is ``weakref.finalize``'s mechanism, made lighter: a
``Descriptors`` is itself a weak reference to its owner whose callback closes
what it holds, kept alive by a module registry, so that the callback runs also
when the owner is garbage of a reference cycle; it never refers to the owner,
and unlike a ``__del__`` it cannot resurrect it. It adds one object the
collector tracks per owner (the held numbers are keys of a dict of ints,
which it does not track): ``weakref.finalize`` adds three and ~0.5 µs more
CPU per owner, and made opening a 1,024-partition topic's partitions ~18%
dearer in CPU, most of it in extra garbage collections.

Nothing is closed at interpreter exit before the owners go (no atexit hook,
unlike ``weakref.finalize``): the kernel closes every descriptor when the
process ends, and closing a live owner's descriptors behind its back while
exit code still uses it (an atexit handler registered earlier that closes a
Producer) would have that code act on closed numbers, or on numbers reused
meanwhile: another file.

Thread-safety: any thread. Each number leaves the set in one atomic dict
operation, so exactly one caller (or the callback) closes it.
"""

from __future__ import annotations

import os
import weakref

# every live Descriptors, by id: what keeps each (and so its callback) alive
# until its owner goes
_LIVE: dict[int, Descriptors] = {}


def _close_held(held: dict[int, None], _close=os.close) -> None:
    """Close every descriptor in ``held``, emptying it (``_close`` bound here:
    this also runs while the interpreter tears its modules down)."""
    while True:
        try:
            fd = held.popitem()[0]
        except KeyError:
            return
        try:
            _close(fd)
        except OSError:
            pass


def _collected(ref: Descriptors, _forget=_LIVE.pop, _close_all=_close_held) -> None:
    """The owner is gone: close what it still held."""
    _forget(id(ref), None)
    _close_all(ref._held)


class Descriptors(weakref.ref):
    """The raw descriptors ``owner`` holds; see the module docstring."""

    # held numbers as the keys of a dict: a dict of ints is one object the
    # garbage collector does not track (a set is tracked)
    __slots__ = ("_held",)
    _held: dict[int, None]

    def __new__(cls, owner: object) -> Descriptors:
        self = super().__new__(cls, owner, _collected)
        self._held = {}
        _LIVE[id(self)] = self
        return self

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """``os.open(path, flags, mode)``, the descriptor held."""
        fd = os.open(path, flags, mode)
        self._held[fd] = None
        return fd

    def adopt(self, fd: int) -> int:
        """Hold ``fd``, which the caller opened (closed through this set from now on); returns it."""
        self._held[fd] = None
        return fd

    def close(self, *fds: int) -> int:
        """Close each of ``fds`` this set holds; any other number (-1, one closed or detached
        already, another owner's) is left alone. Returns -1, for the attributes that held them."""
        held = self._held
        for fd in fds:
            try:
                del held[fd]
            except KeyError:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        return -1

    def detach(self, fd: int) -> int:
        """Stop holding ``fd``: the caller closes it now. Returns it, or -1 when this set did not
        hold it (nothing to hand over)."""
        try:
            del self._held[fd]
        except KeyError:
            return -1
        return fd

    def close_all(self) -> None:
        """Close every descriptor held."""
        _close_held(self._held)

    def __contains__(self, fd: object) -> bool:
        return fd in self._held

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"<Descriptors {sorted(self._held)}>"
