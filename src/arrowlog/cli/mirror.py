"""``arrowlog mirror SRC DST --topics PATTERN``: copy topics between logs.

SRC and DST are each a data directory (or ``file://`` URL) or a Kafka
cluster (``kafka://host:port[,host:port]``). Keys, values, headers,
timestamps and partition numbers are kept. Progress goes to stderr; the
copy resumes where it stopped (see :mod:`arrowlog.mirror`).
"""

from __future__ import annotations

import click

from ..mirror import CHECKPOINT_INTERVAL_S, mirror
from .common import EXIT_OK, friendly_errors


def parse_kafka_options(options: tuple[str, ...]) -> dict:
    out = {}
    for item in options:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"-X wants KEY=VALUE (a librdkafka setting), got {item!r}")
        out[name.strip()] = value
    return out


@click.command(
    "mirror",
    epilog="""\b
Examples:
  arrowlog mirror ./arrowlog-data kafka://broker:9092 --topics 'orders|payments'
  arrowlog mirror kafka://broker:9092 ./copy --topics 'orders.*' --follow
  arrowlog mirror kafka://a:9092 kafka://b:9092 --topics '.*' --state a-to-b.json

Run it again after a stop or a crash: it continues where it stopped, and an
arrowlog destination gets no record twice.
""",
)
@click.argument("src")
@click.argument("dst")
@click.option("--topics", "topics", required=True, metavar="PATTERN",
              help="Regular expression for the whole topic name (internal __ topics are left out).")
@click.option("--follow", is_flag=True, help="Keep copying new records and new matching topics until stopped.")
@click.option("--state", metavar="FILE", default=None,
              help="Checkpoint file [default: under the destination data directory, else the source's].")
@click.option("--checkpoint-ms", "checkpoint_ms", type=click.IntRange(1), default=int(CHECKPOINT_INTERVAL_S * 1000),
              show_default=True, help="How often progress is made durable and recorded.")
@click.option("-X", "kafka_options", multiple=True, metavar="KEY=VALUE",
              help="A librdkafka setting for the Kafka side (security.protocol=SSL, ...); repeatable.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@friendly_errors
def mirror_cmd(src: str, dst: str, topics: str, follow: bool, state: str | None, checkpoint_ms: int,
               kafka_options: tuple[str, ...], quiet: bool) -> int:
    """Copy the topics of SRC matching PATTERN to DST (directories or kafka:// clusters)."""
    mirror(src, dst, topics, follow=follow, state=state, kafka_config=parse_kafka_options(kafka_options),
           checkpoint_interval=checkpoint_ms / 1000.0, progress=(lambda line: None) if quiet else None)
    return EXIT_OK
