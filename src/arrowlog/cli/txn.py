"""``arrowlog txn list|abort``: the Kafka transactions of ``arrowlog serve``.

``list`` reads ``<data>/transactions/`` without writing (safe while the server
runs). ``abort`` ends a transaction that holds a partition's last stable offset
back (read_committed readers stall behind it): over the wire with
``--bootstrap`` (an InitProducerId for its transactional id, which aborts it and
fences the producer that opened it, as a restarted producer would), or on the
directory itself, whether a server runs on it or not (the transaction state is
shared by every process of the directory, under its lock). docs/PROTOCOL.md.
"""

from __future__ import annotations

import fcntl
import os
import time

import click

from .common import (
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    CliError,
    command_body,
    existing_data_dir,
    note,
    resolve_data_dir,
)
from .listing import Listing, list_command


def _coordinator(data: str, producers=None, offsets=None, partition=None, appended=None, read_only: bool = True):
    from arrowlog.server.transactions import TransactionCoordinator

    return TransactionCoordinator(data, producers, offsets, partition, appended, read_only=read_only)


@click.group("txn", epilog="""\b
Examples:
  arrowlog txn list
  arrowlog txn abort orders-etl --bootstrap 127.0.0.1:9092
""")
def txn_group() -> None:
    """See and abort the Kafka transactions of 'arrowlog serve' (see docs/PROTOCOL.md)."""


@list_command(txn_group, "Print the transactions as JSON.", examples="              # open ones first")
def txn_list(data: str | None) -> Listing:
    """List transactional ids: state, producer, partitions and the first offset each holds."""
    from arrowlog.server.transactions import OPEN_STATES

    txns = _coordinator(existing_data_dir(resolve_data_dir(data))).describe()
    txns.sort(key=lambda t: (t["state"] not in OPEN_STATES, t["transactional_id"]))
    now = time.time() * 1000
    return txns, ["TRANSACTIONAL ID", "STATE", "PRODUCER", "EPOCH", "AGE", "HOLDS (PARTITION@OFFSET)"], lambda: [
        [t["transactional_id"], t["state"], t["producer_id"], t["producer_epoch"],
         f"{(now - t['start_ms']) / 1000:.0f}s" if t["state"] in OPEN_STATES else "-",
         " ".join(f"{p}@{o}" for p, o in sorted(t["first_offsets"].items())) if t["state"] in OPEN_STATES
         else "-"]
        for t in txns]


@txn_group.command("abort", epilog="""\b
Examples:
  arrowlog txn abort orders-etl                               # on the directory
  arrowlog txn abort orders-etl --bootstrap 127.0.0.1:9092   # asking a server
""")
@click.argument("transactional_id")
@click.option("--bootstrap", default=None, metavar="HOST:PORT",
              help="Ask this server instead of changing the directory (either way the producer is fenced).")
@command_body
def txn_abort(transactional_id: str, bootstrap: str | None, data: str | None) -> None:
    """Abort TRANSACTIONAL_ID's open transaction and fence its producer."""
    if bootstrap:
        from arrowlog._optional import require

        ck = require("confluent_kafka", "arrowlog txn abort --bootstrap")
        producer = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
        try:
            producer.init_transactions(30)
        except ck.KafkaException as exc:
            raise CliError(f"the server at {bootstrap} did not abort {transactional_id!r}: {exc.args[0]}",
                           EXIT_UNAVAILABLE) from None
        note(f"transaction {transactional_id!r} aborted (if one was open); its producer is fenced")
        return
    _abort_offline(existing_data_dir(resolve_data_dir(data)), transactional_id)


def _served(data: str) -> bool:
    """Whether a server holds the directory (its producer-state lock, server/producers.py)."""
    try:
        fd = os.open(os.path.join(data, "producers", "lock"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _abort_offline(data: str, transactional_id: str) -> None:
    """Abort on the directory itself. The transaction state is shared by every process of
    the directory (under its lock), so this works while a server runs too: the server
    sees the markers and the new epoch at its next look at the state."""
    from arrowlog.server.offsets import GroupOffsetStore
    from arrowlog.server.producers import ProducerRegistry
    from arrowlog.storage import LogDir

    producers: ProducerRegistry | None = None if _served(data) else ProducerRegistry(data)
    if producers is not None and producers._files is None:   # a server started meanwhile: leave its ids
        producers.close()
        producers = None
    log = LogDir(data)

    def partition(topic, index):
        try:
            return log.topic(topic).partition(index), 0, None
        except Exception as exc:   # a deleted topic: nothing to mark there
            return None, 3, str(exc)

    try:
        from arrowlog.server.transactions import TransactionCoordinator

        # with no server, this process owns the state for a moment (it checks and compacts it)
        txns = TransactionCoordinator(data, producers, GroupOffsetStore(data), partition, lambda pl: pl.sync(),
                                      owner=producers is not None)
        try:
            with txns.locked():   # caught up with what the server and producers wrote
                if transactional_id not in txns.txns:
                    raise CliError(f"no transactional id {transactional_id!r}; see 'arrowlog txn list'",
                                   EXIT_NOT_FOUND)
                aborted = txns.abort(transactional_id, fence=True)
            if not aborted:
                note(f"transaction {transactional_id!r} is not open: nothing to abort")
            else:
                note(f"transaction {transactional_id!r} aborted; its producer is fenced")
        finally:
            txns.close()
    finally:
        if producers is not None:
            producers.close()
        log.close()
