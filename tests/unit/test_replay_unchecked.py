"""Replay of a damaged frame with check.crcs off (LogDir(check_crcs=False)):
nothing vouches for the frame, so what replay returns is a CorruptRecordError
naming it, or batches whose offsets fit their buffers (a user's compute on
them must not read past the mapping), never a crash."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mangle import flip_body

import arrowlog
from arrowlog import Producer, errors
from arrowlog.storage import LogDir

TOPIC = "t"


@contextlib.contextmanager
def damaged_log(data: str, flips: list[tuple[float, int]]):
    """A LogDir with check.crcs off over a topic of two one-record frames,
    the second's body flipped at ``flips`` ((where in the body, xor mask)),
    open while the producer that wrote them is (so the partition was opened
    before the damage, as a long-running reader's was)."""
    LogDir(data).create_topic(TOPIC)
    with Producer({"log.dir": data, "linger.ms": 0}) as p:
        logdir = LogDir(data, check_crcs=False)
        log = logdir.topic(TOPIC).partition(0)
        p.produce(TOPIC, b"first", key=b"k", partition=0)
        p.flush()
        start = log.state.snapshot()["active_position"]
        p.produce(TOPIC, b"x" * 64, partition=0)
        p.flush()
        st_ = log.state.snapshot()
        path, end = os.path.join(log.directory, f"{st_['active_base_offset']:020d}.log"), st_["active_position"]
        flip_body(path, start, end, flips)
        yield logdir


def read_unchecked(logdir: LogDir, how: str):
    r = arrowlog.replay(logdir, TOPIC)
    return r.to_arrow() if how == "to_arrow" else r.to_reader().read_all()


@pytest.mark.parametrize("how", ["to_arrow", "to_reader"])
def test_a_bad_value_offset_replayed_unchecked_is_a_corrupt_record(data_dir, how):
    # pyarrow decodes this frame without looking at its offsets; the table
    # replay returned pointed values past their data (a crash in compute)
    with damaged_log(data_dir, [(0.8515625, 1)]) as logdir, \
            pytest.raises(errors.CorruptRecordError, match="frame at"):
        read_unchecked(logdir, how)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
       how=st.sampled_from(["to_arrow", "to_reader"]))
def test_a_mangled_frame_replayed_unchecked_is_an_error_or_valid_data(tmp_path_factory, flips, how):
    with damaged_log(str(tmp_path_factory.mktemp("data")), flips) as logdir:
        try:
            table = read_unchecked(logdir, how)
        except errors.ArrowlogError:
            return
        table.validate(full=True)  # raises if an offset or a length does not fit
