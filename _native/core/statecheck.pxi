# Could a published partition state be true? The one bounds check of
# partition.state's payload (StatePayload), for every path that trusts it
# without re-deriving it from the segments:
#
#   storage/layout.py    state_problem(): the open of a clean partition,
#                        recovery's trust in an old state, precreate; through
#                        state_fault() below, which names the field;
#   core/closing.pxi     _close_mark(): a clean close leaves the layout mark
#                        only on a state that passes;
#   core/replayview.pxi  _clean_state(): a replay serves a partition its
#                        short way only from a state that passes.
#
# The limits live here and nowhere else (layout.py takes MAX_OFFSET and
# MAX_ACTIVE_POSITION from this module; storage/segment.py's
# SEGMENT_FIXED_HEADER and INDEX_BYTES are the same numbers, which a test
# holds equal).

cdef enum:
    SC_SEGMENT_HEADER = 40          # segment.py SEGMENT_FIXED_HEADER: no frame starts before it
    SC_INDEX_BYTES = 10 << 20       # segment.py INDEX_BYTES: an index never grows past it
    # _state_fault's answers: 0, or the first field found impossible (its
    # place in STATE_CHECKS, from 1), or that the log does not start in the
    # active segment (asked for with ``markable``)
    SC_FIELDS = 8
    SC_LOG_BEFORE_ACTIVE = SC_FIELDS + 1

# Offsets beyond this are impossible: 2^62 records at a billion a second
# is 146 years.
cdef int64_t SC_MAX_OFFSET = 1LL << 62
# The active segment may exceed the largest segment (2^31 - 1 bytes: its
# index positions are u32) by one oversized batch.
cdef int64_t SC_MAX_POSITION = ((1LL << 31) - 1) + (1LL << 31)

MAX_OFFSET = SC_MAX_OFFSET
MAX_ACTIVE_POSITION = SC_MAX_POSITION
SEGMENT_FIXED_HEADER = SC_SEGMENT_HEADER
INDEX_BYTES = SC_INDEX_BYTES
# the fields _state_fault checks, in the order it checks them
STATE_CHECKS = ("next_offset", "log_start_offset", "active_base_offset", "active_position",
                "offset_index_entries", "time_index_entries", "bytes_since_index", "recovery_point")


cdef int _state_fault(const StatePayload *p, bint markable) noexcept nogil:
    """0 when every field of ``p`` lies in its possible range, else the
    first one that does not (1 + its index in STATE_CHECKS). ``markable``:
    also SC_LOG_BEFORE_ACTIVE when the log starts below the active segment
    (the layout and segment marks are only left for a log that starts in
    it: layout_mark.py)."""
    cdef int64_t nxt = p.next_offset
    if not (0 <= nxt < SC_MAX_OFFSET):
        return 1
    if not (0 <= p.log_start_offset <= nxt):
        return 2
    if not (0 <= p.active_base_offset <= nxt):
        return 3
    if not (SC_SEGMENT_HEADER <= p.active_position <= SC_MAX_POSITION and p.active_position % 8 == 0):
        return 4
    if not (0 <= p.offset_index_entries <= SC_INDEX_BYTES // 8):     # OFFSET_ENTRY_SIZE
        return 5
    if not (0 <= p.time_index_entries <= SC_INDEX_BYTES // 12):      # TIME_ENTRY_SIZE
        return 6
    if not (0 <= p.bytes_since_index <= SC_MAX_POSITION):
        return 7
    if not (0 <= p.recovery_point <= nxt):
        return 8
    if markable and p.log_start_offset < p.active_base_offset:
        return SC_LOG_BEFORE_ACTIVE
    return 0


cdef int64_t _sc_field(object value) except? -1:
    """A state field as the payload holds it; a Python int beyond int64
    becomes one that fails every bound the value fails (the largest int64,
    or -1: every bound lies in 0..2^62)."""
    try:
        return value
    except OverflowError:
        return 0x7FFFFFFFFFFFFFFFLL if value > 0 else -1


def state_fault(st, bint markable=False):
    """The name of the first field of ``st`` (a partition.state payload as
    a dict of STATE_FIELDS, as PartitionState.snapshot gives it) that
    cannot be true, in STATE_CHECKS order; with ``markable``, also
    "log_start_offset" for a log that starts below its active segment
    (``log_start_offset < active_base_offset``, which no mark is left for);
    None when it passes. The check the native close and replay paths make
    (_state_fault)."""
    cdef StatePayload p
    cdef int fault
    memset(&p, 0, sizeof(StatePayload))
    p.next_offset = _sc_field(st["next_offset"])
    p.log_start_offset = _sc_field(st["log_start_offset"])
    p.active_base_offset = _sc_field(st["active_base_offset"])
    p.active_position = _sc_field(st["active_position"])
    p.offset_index_entries = _sc_field(st["offset_index_entries"])
    p.time_index_entries = _sc_field(st["time_index_entries"])
    p.bytes_since_index = _sc_field(st["bytes_since_index"])
    p.recovery_point = _sc_field(st["recovery_point"])
    fault = _state_fault(&p, markable)
    if fault == 0:
        return None
    if fault == SC_LOG_BEFORE_ACTIVE:
        return "log_start_offset"
    return STATE_CHECKS[fault - 1]
