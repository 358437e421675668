# The per-call produce() path, in C so that a call costs a few hundred
# nanoseconds: argument checks, Kafka's partitioner, and an append to the
# partition's accumulator. Everything slower (opening topics, taking full
# batches, delivery reports) is a Python method of the Producer subclass.

from cpython.pyport cimport PY_SSIZE_T_MAX

import random as _random

from arrowlog.errors import InvalidArgumentError


cdef class TopicSlot:
    """A topic's accumulators inside one producer."""

    def __init__(self, str name, object topic, int32_t partitions, Py_ssize_t batch_bytes=0,
                 Py_ssize_t max_record_bytes=PY_SSIZE_T_MAX, object validate=None):
        self.name = name
        self.topic = topic
        self.partitions = partitions
        self.max_record_bytes = max_record_bytes
        self.validate = validate
        self.check_above = -1 if validate is not None else max_record_bytes
        self.accumulators = [RecordAccumulator(batch_bytes) for _ in range(partitions)]
        self.logs = [None] * partitions
        self.locks = [None] * partitions
        self.sticky = _random.randrange(partitions)
        free(self.sent)
        self.sent = <int64_t *>malloc(2 * <size_t>max(partitions, 1) * sizeof(int64_t))
        if self.sent == NULL:
            raise MemoryError()
        memset(self.sent, 0, 2 * <size_t>max(partitions, 1) * sizeof(int64_t))

    def __dealloc__(self):
        free(self.sent)

    cpdef count_sent(self, int32_t partition, int64_t records, int64_t nbytes):
        """Statistics: ``records`` of ``nbytes`` left ``partition``'s queue for the log."""
        if not 0 <= partition < self.partitions:
            raise IndexError(f"no partition {partition}")
        self.sent[2 * partition] += records
        self.sent[2 * partition + 1] += nbytes

    def sent_counts(self, int32_t partition):
        """(records, bytes) sent from ``partition`` (count_sent)."""
        if not 0 <= partition < self.partitions:
            raise IndexError(f"no partition {partition}")
        return self.sent[2 * partition], self.sent[2 * partition + 1]

    cpdef next_sticky(self):
        """Kafka's sticky partitioner (KIP-480): unkeyed records stay on one
        partition until its batch is sent, then move to another."""
        if self.partitions > 1:
            nxt = _random.randrange(self.partitions - 1)
            self.sticky = nxt + 1 if nxt >= self.sticky else nxt


cdef object as_bytes(object obj):
    """A key or value that is neither bytes, str nor None, as bytes."""
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise InvalidArgumentError(f"key and value must be bytes, str, a buffer or None, "
                                   f"not {type(obj).__name__}") from None


cdef inline const char *_bytes_of(object obj, Py_ssize_t *n) except? NULL:
    """Pointer and length of a bytes/str/None key or value; *n = -1 for None."""
    if obj is None:
        n[0] = -1
        return NULL
    if type(obj) is bytes:
        n[0] = PyBytes_GET_SIZE(obj)
        return PyBytes_AS_STRING(obj)
    return PyUnicode_AsUTF8AndSize(obj, n)


def normalize_headers(headers):
    """Headers as a list of (str, bytes | None); raises TypeError otherwise.
    Accepts a list of pairs or a dict, with str or bytes-like values."""
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    try:
        for hk, hv in items:
            if not isinstance(hk, str):
                raise InvalidArgumentError(f"header key must be str, not {type(hk).__name__}")
            if hv is None or type(hv) is bytes:
                out.append((hk, hv))
            elif isinstance(hv, str):
                out.append((hk, hv.encode()))
            else:
                out.append((hk, bytes(memoryview(hv))))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"headers must be a list of (str, bytes) pairs or a dict: {exc}") from None
    return out


cdef Py_ssize_t _headers_size(list headers) except -1:
    """Bytes of normalized headers' keys (UTF-8) and values: they count
    towards message.max.bytes, as in Kafka."""
    cdef Py_ssize_t total = 0, n
    for hk, hv in headers:
        PyUnicode_AsUTF8AndSize(hk, &n)
        total += n
        if hv is not None:
            total += PyBytes_GET_SIZE(hv)
    return total


cdef void _both(object helper, StagePass two, RecordAccumulator scratch) except *:
    """``two`` on the ``helper`` executor's thread and on this one; returns
    once neither runs it any more (its job cancelled before it started, or
    ended). An interrupt while waiting is raised after: the helper reads the
    caller's stage and arrays until then. An executor that takes no more
    work (shut down at the interpreter's exit) leaves it all to this thread."""
    try:
        later = helper.submit(two)
    except RuntimeError:
        _pass_run(two, scratch)
        return
    _pass_run(two, scratch)
    if later.cancel():
        return
    interrupted = None
    while not later.done():
        try:
            later.exception()  # waits; an error of the job itself leaves its partitions to the caller
        except BaseException as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


cdef class ProducerCore:
    """State the produce() fast path needs; arrowlog.Producer extends it."""

    def __cinit__(self):
        self._slots = {}
        self._default_delivery = None
        self._batch_bytes = 1000000
        self._batch_records = 1000000
        self._queued = 0
        self._closed = False
        self._error = None
        self._bg_idle = True
        self._hash_null_keys = False

    cdef int _check_record(self, TopicSlot slot, object value, Py_ssize_t size) except -1:
        """The rare path of produce()'s per-record checks (see TopicSlot)."""
        if size > slot.max_record_bytes:
            self._too_large(slot, size)
        if slot.validate is not None:
            slot.validate(value)
        return 0

    def _sent(self, Py_ssize_t n):
        """Records left the queue (appended or failed); atomic under the GIL."""
        self._queued -= n

    def _append_ready(self, TopicSlot slot, set dirty, list rest):
        """flush()'s common case for one topic in one native loop: every
        partition whose batch has records, bytes values and no delivery
        callback is appended by RecordAccumulator.append_at into its
        PartitionLog's append_target() (``slot.logs``), under the
        partition's in-process lock (``slot.locks``) and the log's, with no
        per-partition Python of the producer's. The partitions left to the
        caller's general path go to ``rest``: a batch with callbacks, a
        partition not opened yet, and an empty one whose lock is held (the
        linger thread is appending the batch it took: the caller waits for
        it). A batch the native call declines (append_at returned -1) goes
        through PartitionLog.append_records here. The caller checked the
        topic has no value schema, and that the producer has neither a
        transaction nor durability=fsync. Appended logs go to ``dirty``;
        returns the number of records appended."""
        cdef RecordAccumulator acc, batch
        cdef AppendTarget target
        cdef Py_ssize_t p, n, nbytes, sent = 0
        cdef int64_t base
        cdef list accs = slot.accumulators, logs = slot.logs, locks = slot.locks
        for p in range(slot.partitions):
            acc = <RecordAccumulator>accs[p]
            lock = locks[p]
            if acc.count == 0:
                if lock is not None and lock.locked():
                    rest.append(p)
                continue
            log = logs[p]
            if acc.callbacks is not None or log is None or lock is None:
                rest.append(p)
                continue
            lock.acquire()
            try:
                batch = <RecordAccumulator>acc.detach()
                n, nbytes = batch.count, batch.nbytes
                if n == 0:
                    continue
                if p == slot.sticky:
                    slot.next_sticky()
                try:
                    base = -1
                    log_lock = log._lock
                    log_lock.acquire()
                    try:
                        t = log.append_target()
                        if t is not None:
                            target = <AppendTarget>t
                            base = batch._append_at(target, now_ms())
                    except OSError:
                        base = -1  # append_records tries again, and raises what is wrong
                    finally:
                        log_lock.release()
                    if base < 0:
                        log.append_records(batch, fsync=False)
                    acc.recycle(batch)  # its memory serves the next batch
                finally:
                    self._queued -= n
                dirty.add(log)
                slot.sent[2 * p] += n
                slot.sent[2 * p + 1] += nbytes
                sent += n
            finally:
                lock.release()
        return sent

    def _append_staged(self, TopicSlot slot, set dirty, object helper=None, Py_ssize_t parallel_bytes=0):
        """flush()'s common case for a topic with a stage (stage.pxi): write
        each partition's staged records as one frame, gathered into a
        scratch accumulator and appended as _append_ready appends a batch.
        Every staged record is taken: a partition that cannot be written
        here (not opened yet, its in-process lock held by another thread, a
        record already in its accumulator) gets its records in its
        accumulator instead, for the caller's general path. Deciding that
        runs under the GIL before anything is written, and a partition
        written here is locked from then until its frame is written, so its
        records never overtake, nor are overtaken by, another batch of the
        same partition.

        With at least ``parallel_bytes`` staged for two partitions or more,
        and an executor from ``helper()`` (storage/helper.py), the partitions
        whose log lock is free are first written by two threads at once
        (StagePass: this one and the helper, without the GIL), in a second
        pass for those whose segment had to grow first (grown in between,
        as append_at grows it: _pass_grown); what the passes leave (a
        segment to roll, a failed write, anything append_at would not do
        alone), with nothing of it published, then goes through the
        one-thread loop below, as every partition does without a helper:
        the same frames, the same errors. An error
        appending one partition's frame is raised after the other
        partitions are written (the first in partition order). Appended
        logs go to ``dirty``; returns the number of records appended."""
        cdef RecordStage live = slot.stage, s
        cdef RecordAccumulator acc, scratch
        cdef AppendTarget target
        cdef StagePass two = None
        cdef Py_ssize_t p, k, n, nbytes, sent = 0, mine_count = 0
        cdef int64_t mine_bytes = 0
        cdef Py_ssize_t *start = NULL
        cdef int32_t *order = NULL
        cdef uint8_t *mine = NULL
        cdef int64_t base
        cdef list accs = slot.accumulators, logs = slot.logs, locks = slot.locks, held = []
        if live is None or live.count == 0:
            return 0
        s = live.take()
        error = None
        try:
            start = <Py_ssize_t *>malloc((<size_t>s.partitions + 1) * sizeof(Py_ssize_t))
            mine = <uint8_t *>calloc(<size_t>s.partitions, 1)
            if start == NULL or mine == NULL:
                raise MemoryError()
            order = _stage_order(s, start)
            # which partitions are written here: decided, and their locks taken, before any is written
            for p in range(s.partitions):
                if s.pending[2 * p] == 0:
                    continue
                acc = <RecordAccumulator>accs[p]
                lock = locks[p]
                if acc.count == 0 and logs[p] is not None and lock is not None and lock.acquire(False):
                    mine[p] = 1
                    mine_count += 1
                    mine_bytes += s.pending[2 * p + 1]
                else:
                    _stage_fill(acc, s, order, start[p], start[p + 1])
            scratches = slot.scratch if slot.scratch is not None else [RecordAccumulator(0), RecordAccumulator(0)]
            slot.scratch = None  # (another thread's flush builds its own)
            scratch = <RecordAccumulator>scratches[0]
            if helper is not None and mine_count > 1 and mine_bytes >= parallel_bytes:
                helper = helper()
            else:
                helper = None
            if helper is not None:
                two = StagePass(s, <RecordAccumulator>scratches[1], mine_count)
                two.order, two.start = order, start
                for p in range(s.partitions):
                    if not mine[p]:
                        continue
                    log_lock = (<object>logs[p])._lock
                    if not log_lock.acquire(False):
                        continue  # (another thread is at this log: the loop below waits for it)
                    held.append(log_lock)
                    t = (<object>logs[p]).append_target()
                    if t is not None:
                        _pass_add(two, <int32_t>p, <AppendTarget>t)
                passes = []
                if two.count > 1:
                    _both(helper, two, scratch)
                    passes.append(two)
                    two = _pass_grown(two)  # (segments to grow first: again, once grown)
                    if two is not None:
                        _both(helper, two, scratch)
                        passes.append(two)
                while held:
                    (<object>held.pop()).release()
                for two in passes:
                    for k in range(two.count):
                        p = two.parts[k]
                        if two.bases[k] < 0:
                            continue  # nothing of it published: the loop below appends it
                        mine[p] = 0
                        n, nbytes = s.pending[2 * p], s.pending[2 * p + 1]
                        self._queued -= n
                        (<object>locks[p]).release()
                        if p == slot.sticky:
                            slot.next_sticky()
                        dirty.add(logs[p])
                        slot.sent[2 * p] += n
                        slot.sent[2 * p + 1] += nbytes
                        sent += n
            for p in range(s.partitions):
                if not mine[p]:
                    continue
                log = logs[p]
                n, nbytes = s.pending[2 * p], s.pending[2 * p + 1]
                try:
                    _stage_fill(scratch, s, order, start[p], start[p + 1])
                    if p == slot.sticky:
                        slot.next_sticky()
                    base = -1
                    log_lock = log._lock
                    log_lock.acquire()
                    try:
                        t = log.append_target()
                        if t is not None:
                            target = <AppendTarget>t
                            base = scratch._append_at(target, now_ms())
                    except OSError:
                        base = -1  # append_records tries again, and raises what is wrong
                    finally:
                        log_lock.release()
                    if base < 0:
                        log.append_records(scratch, fsync=False)
                    dirty.add(log)
                    slot.sent[2 * p] += n
                    slot.sent[2 * p + 1] += nbytes
                    sent += n
                except Exception as exc:
                    if error is None:
                        error = exc
                finally:
                    self._queued -= n
                    scratch._empty()
                    mine[p] = 0
                    (<object>locks[p]).release()
            slot.scratch = scratches
        finally:
            while held:
                (<object>held.pop()).release()
            if mine != NULL:
                # only after an error outside a partition's append: what was not written goes to the accumulators
                for p in range(s.partitions):
                    if mine[p]:
                        _stage_fill(<RecordAccumulator>accs[p], s, order, start[p], start[p + 1])
                        (<object>locks[p]).release()
            free(start)
            free(order)
            free(mine)
            live.give_back(s)
        if error is not None:
            raise error
        return sent

    # -- the upcall contract ----------------------------------------------------
    # produce() handles the common case here and calls these on its rare paths.
    # Declared cpdef in core.pxd; the subclass overrides every one (arrowlog.Producer,
    # backends/local/producer.py);
    # tests/unit/test_import_layers.py checks that produce() calls nothing else.

    cpdef _open_slot(self, topic):
        """The TopicSlot of ``topic`` (a topic not in ``_slots`` yet): check the
        name, open or create the topic, cache the slot in ``_slots``; or raise."""
        raise NotImplementedError("ProducerCore._open_slot: implemented by the subclass")

    cpdef _raise_closed(self):
        """produce() on a closed producer: raise the closed error."""
        raise NotImplementedError("ProducerCore._raise_closed: implemented by the subclass")

    cpdef _too_large(self, TopicSlot slot, Py_ssize_t size):
        """A record of ``size`` bytes over ``slot.max_record_bytes``: raise."""
        raise NotImplementedError("ProducerCore._too_large: implemented by the subclass")

    cpdef _unkeyed(self, TopicSlot slot, str where=""):
        """A record without a key for a compacted topic (``slot.keyed_only``): raise."""
        raise NotImplementedError("ProducerCore._unkeyed: implemented by the subclass")

    cpdef _bad_partition(self, TopicSlot slot, partition):
        """An explicit ``partition`` that the topic does not have: raise."""
        raise NotImplementedError("ProducerCore._bad_partition: implemented by the subclass")

    cpdef _coerce_timestamp(self, timestamp):
        """A timestamp that is not an int (datetime, date, float) as epoch ms."""
        raise NotImplementedError("ProducerCore._coerce_timestamp: implemented by the subclass")

    cpdef _batch_full(self, TopicSlot slot, int32_t partition):
        """The batch of ``partition`` reached batch.size / batch.num.messages: send it."""
        raise NotImplementedError("ProducerCore._batch_full: implemented by the subclass")

    cpdef _first_in_batch(self, TopicSlot slot, int32_t partition):
        """A record started a new batch of ``partition`` (linger.ms starts now)
        while ``_bg_idle`` is set or ``_error`` holds an error."""
        raise NotImplementedError("ProducerCore._first_in_batch: implemented by the subclass")

    def produce(self, topic, value=None, key=None, partition=-1, on_delivery=None, timestamp=0,
                headers=None, callback=None):
        """Queue one record for ``topic``; see arrowlog.Producer.produce."""
        cdef TopicSlot slot
        cdef RecordAccumulator acc
        cdef RecordStage stage
        cdef const char *vp
        cdef const char *kp
        cdef Py_ssize_t vn, kn, size
        cdef int64_t ts
        cdef int32_t p
        if self._closed:
            self._raise_closed()
        s = self._slots.get(topic)
        if s is None:
            s = self._open_slot(topic)
        slot = <TopicSlot>s
        if value is not None and type(value) is not bytes and not isinstance(value, str):
            value = as_bytes(value)
        if key is not None and type(key) is not bytes and not isinstance(key, str):
            key = as_bytes(key)
        vp = _bytes_of(value, &vn)
        kp = _bytes_of(key, &kn)
        size = (vn if vn > 0 else 0) + (kn if kn > 0 else 0)
        if headers is not None:
            headers = normalize_headers(headers)
            size += _headers_size(headers)
        if size > slot.check_above:
            self._check_record(slot, value, size)
        if kn < 0 and slot.keyed_only:
            self._unkeyed(slot)
        if partition is None or partition == -1:
            if kn >= 0:
                p = arrowlog_murmur2_partition(kp, <size_t>kn, slot.partitions)
            elif self._hash_null_keys:
                p = arrowlog_murmur2_partition(<const char *>"", 0, slot.partitions)
            else:
                p = slot.sticky
        else:
            if type(partition) is not int or not 0 <= partition < slot.partitions:
                self._bad_partition(slot, partition)
            p = partition
        if timestamp is None or (type(timestamp) is int and timestamp == 0):
            ts = now_ms()
        elif type(timestamp) is int:
            ts = timestamp
        else:
            ts = self._coerce_timestamp(timestamp)
        acc = <RecordAccumulator>slot.accumulators[p]
        cb = callback if callback is not None else on_delivery  # both given: callback, as confluent-kafka
        if cb is None:
            cb = self._default_delivery
        stage = slot.stage
        if stage is not None:
            if acc.count == 0 and headers is None and cb is None:
                stage.add(p, kp, kn, vp, vn, ts)
                self._queued += 1
                if stage.pending[2 * p + 1] >= self._batch_bytes or stage.pending[2 * p] >= self._batch_records:
                    self._batch_full(slot, p)
                elif stage.pending[2 * p] == 1 and (self._bg_idle or self._error is not None):
                    self._first_in_batch(slot, p)
                return
            if stage.pending[2 * p]:
                stage.drain(slot.accumulators)  # the staged records of p go first (stage.pxi)
        acc.append(kp, kn, vp, vn, ts)
        if headers is not None:
            acc.append_headers(headers)
        if cb is not None:
            acc.add_callback(acc.count - 1, cb)
        self._queued += 1
        if acc.nbytes >= self._batch_bytes or acc.count >= self._batch_records:
            self._batch_full(slot, p)
        elif acc.count == 1 and (self._bg_idle or self._error is not None):
            self._first_in_batch(slot, p)
