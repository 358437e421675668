# Column memory kept for the next replay of the process (issue 19).
#
# A replay of many small partitions (replayview.pxi) copies their segments
# into fresh column buffers of tens of MiB: the kernel zeroes every page of
# them on first touch (clear_page, 12% of a profile of replays over 1,024
# partitions). When the table goes, its large blocks come back here instead
# of to the allocator (which would unmap them), so a later replay in the
# process writes into pages that are already there:
#
#   - at most ARENA_BLOCKS blocks and ARENA_BYTES bytes are kept; a block
#     that does not fit is freed (the oldest kept blocks make room first);
#   - a kept block is madvise(MADV_FREE)d: under memory pressure the kernel
#     takes its pages back without writing them anywhere (a later write to
#     such a page faults a fresh one in, as with new memory), and until
#     then writing to it costs no fault;
#   - core.arena_release() frees them all.
#
# Only whole blocks of 2 MiB multiples, 2 MiB-aligned (huge pages where
# the system gives them) come and go; their contents are whatever the last
# user left, so a reader never relies on them being zero. Every call holds
# the GIL: that is the lock.

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **p, size_t alignment, size_t size)

cdef extern from "<sys/mman.h>" nogil:
    int MADV_FREE, MADV_HUGEPAGE

# ArenaBlock (core.pxd): a block's address, size and how far its user wrote.

cdef enum:
    ARENA_BLOCKS = 32
    ARENA_ALIGN = 2 << 20
    ARENA_LEAST = 256 << 10   # a buffer presized to less is malloc's (replayview.pxi _presize)

cdef Py_ssize_t _arena_limit = 256 << 20
ARENA_BYTES = _arena_limit
ARENA_MAX_BLOCKS = ARENA_BLOCKS

cdef void *_arena_p[ARENA_BLOCKS]
cdef Py_ssize_t _arena_size[ARENA_BLOCKS]
cdef Py_ssize_t _arena_used[ARENA_BLOCKS]   # how far its last user wrote (those pages are in memory)
cdef int _arena_n = 0
cdef Py_ssize_t _arena_bytes = 0


cdef void _arena_drop(int i) noexcept:
    global _arena_n, _arena_bytes
    _arena_bytes -= _arena_size[i]
    _arena_n -= 1
    for i in range(i, _arena_n):
        _arena_p[i], _arena_size[i], _arena_used[i] = _arena_p[i + 1], _arena_size[i + 1], _arena_used[i + 1]


cdef void *arena_take(Py_ssize_t size, bint warm, ArenaBlock *block) noexcept:
    """A block of at least ``size`` bytes into ``block``: the smallest kept
    one that is large enough and, of those, the one written furthest when
    ``warm`` (a buffer that will be filled), the least else (one that may be
    written sparingly, as a key column's); a new one (``size`` rounded up to
    2 MiB) when none is large enough. Returns its address, NULL when memory
    runs out."""
    cdef int i, best = -1
    cdef void *p = NULL
    for i in range(_arena_n):
        if _arena_size[i] < size:
            continue
        if best < 0 or _arena_size[i] < _arena_size[best] or (_arena_size[i] == _arena_size[best] and (
                _arena_used[i] > _arena_used[best] if warm else _arena_used[i] < _arena_used[best])):
            best = i
    if best >= 0:
        p = _arena_p[best]
        block.p, block.size, block.touched = p, _arena_size[best], 0
        _arena_drop(best)
        return p
    size = (size + ARENA_ALIGN - 1) & ~(<Py_ssize_t>ARENA_ALIGN - 1)
    if posix_memalign(&p, ARENA_ALIGN, <size_t>size) != 0:
        return NULL
    madvise(p, <size_t>size, MADV_HUGEPAGE)
    block.p, block.size, block.touched = p, size, 0
    return p


cdef void arena_give(void *p, Py_ssize_t size, Py_ssize_t used) noexcept:
    """Keep the block ``p`` of ``size`` bytes (from arena_take), written up
    to ``used``, for a later arena_take; or free it."""
    global _arena_n, _arena_bytes
    if p == NULL:
        return
    if size > _arena_limit:
        free(p)
        return
    while _arena_n and (_arena_n == ARENA_BLOCKS or _arena_bytes + size > _arena_limit):
        free(_arena_p[0])   # the oldest
        _arena_drop(0)
    madvise(p, <size_t>size, MADV_FREE)
    _arena_p[_arena_n] = p
    _arena_size[_arena_n] = size
    _arena_used[_arena_n] = min(used, size)
    _arena_n += 1
    _arena_bytes += size


def arena_release():
    """Free every block kept for a later replay; returns the bytes freed."""
    global _arena_n, _arena_bytes
    cdef Py_ssize_t freed = _arena_bytes
    cdef int i
    for i in range(_arena_n):
        free(_arena_p[i])
    _arena_n = 0
    _arena_bytes = 0
    return freed


def arena_blocks():
    """[(size, written)] of the blocks kept for a later replay, oldest first."""
    return [(_arena_size[i], _arena_used[i]) for i in range(_arena_n)]


cdef class ArenaBuffer:
    """``size`` bytes of an arena block (written up to ``touched``), given
    back to the arena when the last Arrow buffer over it goes (its fields:
    core.pxd)."""

    def __dealloc__(self):
        arena_give(self.block, self.block_size, max(self.size, self.touched))
        self.block = NULL

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.block, self.size, 0, flags)

    def __len__(self):
        return self.size
