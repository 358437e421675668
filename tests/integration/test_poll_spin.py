"""The consumer's low-latency mode, poll.spin.us (docs/CLIENTS.md#latency)."""

import threading

import pytest

from arrowlog import Consumer, Producer, TopicPartition, errors


def test_poll_with_a_spin_returns_a_record_another_thread_produces(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"first")
        p.flush()
        c = Consumer({"log.dir": data_dir, "poll.spin.us": 200})
        c.assign([TopicPartition("t", 0, 1)])
        assert c.poll(0.01) is None  # nothing yet: spins, then sleeps for the rest
        t = threading.Thread(target=lambda: (p.produce("t", b"second"), p.flush()))
        t.start()
        m = c.poll(60)
        t.join(60)
        assert m is not None and m.error() is None and m.value() == b"second"
        c.close()


def test_poll_spin_us_is_checked(data_dir):
    with pytest.raises(errors.ConfigError, match="poll.spin.us"):
        Consumer({"log.dir": data_dir, "poll.spin.us": -1})
