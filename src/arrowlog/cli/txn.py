"""``arrowlog txn list|abort``: the Kafka transactions of ``arrowlog serve``.

``list`` reads ``<data>/transactions/`` without writing (safe while the server
runs). ``abort`` ends a transaction that holds a partition's last stable offset
back (read_committed readers stall behind it): over the wire with
``--bootstrap`` (an InitProducerId for its transactional id, which aborts it and
fences the producer that opened it, as a restarted producer would), or, when no
server runs on the directory, on the directory itself. docs/PROTOCOL.md.
"""

from __future__ import annotations

import json
import time

import click

from .common import (
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    CliError,
    command_body,
    note,
    out,
    print_table,
    resolve_data_dir,
)


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


@txn_group.command("list", epilog="""\b
Examples:
  arrowlog txn list              # open ones first
  arrowlog txn list --json
""")
@click.option("--json", "as_json", is_flag=True, help="Print the transactions as JSON.")
@command_body
def txn_list(as_json: bool, data: str | None) -> None:
    """List transactional ids: state, producer, partitions and the first offset each holds."""
    from arrowlog.server.transactions import OPEN_STATES

    txns = _coordinator(resolve_data_dir(data)).describe()
    txns.sort(key=lambda t: (t["state"] not in OPEN_STATES, t["transactional_id"]))
    if as_json:
        out(json.dumps(txns))
        return
    now = time.time() * 1000
    print_table(["TRANSACTIONAL ID", "STATE", "PRODUCER", "EPOCH", "AGE", "HOLDS (PARTITION@OFFSET)"], [
        [t["transactional_id"], t["state"], t["producer_id"], t["producer_epoch"],
         f"{(now - t['start_ms']) / 1000:.0f}s" if t["state"] in OPEN_STATES else "-",
         " ".join(f"{p}@{o}" for p, o in sorted(t["first_offsets"].items())) if t["state"] in OPEN_STATES
         else "-"]
        for t in txns])


@txn_group.command("abort", epilog="""\b
Examples:
  arrowlog txn abort orders-etl --bootstrap 127.0.0.1:9092   # the server is running
  arrowlog txn abort orders-etl                               # it is not
""")
@click.argument("transactional_id")
@click.option("--bootstrap", default=None, metavar="HOST:PORT",
              help="The running server to ask (its producer for this id is fenced).")
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
    _abort_offline(resolve_data_dir(data), transactional_id)


def _abort_offline(data: str, transactional_id: str) -> None:
    from arrowlog.server.offsets import GroupOffsetStore
    from arrowlog.server.producers import ProducerRegistry
    from arrowlog.storage import LogDir

    producers = ProducerRegistry(data)
    if producers._files is None:   # a server holds the directory's producer state
        producers.close()
        raise CliError(f"a server is serving {data}: run 'arrowlog txn abort {transactional_id} --bootstrap "
                       "HOST:PORT' against it", EXIT_UNAVAILABLE)
    log = LogDir(data)

    def partition(topic, index):
        try:
            return log.topic(topic).partition(index), 0, None
        except Exception as exc:   # a deleted topic: nothing to mark there
            return None, 3, str(exc)

    try:
        txns = _coordinator(data, producers, GroupOffsetStore(data), partition, lambda pl: pl.sync(),
                            read_only=False)
        if transactional_id not in txns.txns:
            raise CliError(f"no transactional id {transactional_id!r}; see 'arrowlog txn list'", EXIT_NOT_FOUND)
        if not txns.abort(transactional_id, fence=True):
            note(f"transaction {transactional_id!r} is not open: nothing to abort")
        else:
            note(f"transaction {transactional_id!r} aborted; its producer is fenced")
        txns.close()
    finally:
        producers.close()
        log.close()
