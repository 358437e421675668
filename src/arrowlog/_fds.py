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
leaves). The set is a small object only its owner refers to, and it refers to
nothing but ints, so it goes with its owner: by reference count, or as garbage
of the same reference cycle, when its ``__del__`` runs among the cycle's other
finalizers. Not a weak reference with a callback (``weakref.finalize``): the
collector calls those before any finalizer of a cycle, so a Producer closed
by a ``__del__`` in the same cycle (at interpreter exit, say) found its
partitions' descriptors already closed and could not mark them clean.

Nothing is closed at interpreter exit before the owners go (no atexit hook,
unlike ``weakref.finalize``): the kernel closes every descriptor when the
process ends, and closing a live owner's descriptors behind its back while
exit code still uses it (an atexit handler registered earlier that closes a
Producer) would have that code act on closed numbers, or on numbers reused
meanwhile: another file.

Thread-safety: any thread. Each number leaves the set in one atomic dict
operation, so exactly one caller (or the finalizer) closes it.
"""

from __future__ import annotations

import os


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


class Descriptors:
    """The raw descriptors one owner holds; see the module docstring."""

    # held numbers as the keys of a dict: a dict of ints is one object the
    # garbage collector does not track (a set is tracked)
    __slots__ = ("_held",)
    _held: dict[int, None]

    def __init__(self, owner: object) -> None:
        # ``owner`` is not kept: this set goes with it (refers to nothing but ints)
        self._held = {}

    def __del__(self) -> None:
        # the owner went (dropped without close(), or its constructor failed):
        # close what it still held, nothing else
        _close_held(self._held)

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
