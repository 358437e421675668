"""The Kafka messages of transactions (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
TxnOffsetCommit), as schema tables (see schema.py), at the versions clients use.

AddPartitionsToTxn v4+ (KIP-890's broker-to-broker VerifyOnly form) and EndTxn
v4+ are not advertised: clients then keep the client-driven flow.
"""

from __future__ import annotations

from .commit_messages import COMMIT_RESULTS, committed_topics
from .schema import Api
from .schema import F as f

_PRODUCER = (f("transactional_id", "string"), f("producer_id", "int64"), f("producer_epoch", "int16"))

ADD_PARTITIONS_TO_TXN = Api(24, "AddPartitionsToTxn", (0, 3), 3, request=(
    f("v3_and_below_transactional_id", "string", "0-3"),
    f("v3_and_below_producer_id", "int64", "0-3"),
    f("v3_and_below_producer_epoch", "int16", "0-3"),
    f("v3_and_below_topics", (f("name", "string"), f("partitions", ["int32"])), "0-3"),
), response=(
    f("throttle_time_ms", "int32"),
    f("results_by_topic_v3_and_below", (
        f("name", "string"),
        f("results_by_partition", (f("partition_index", "int32"), f("partition_error_code", "int16"))),
    ), "0-3"),
))

ADD_OFFSETS_TO_TXN = Api(25, "AddOffsetsToTxn", (0, 3), 3, request=(
    *_PRODUCER,
    f("group_id", "string"),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
))

END_TXN = Api(26, "EndTxn", (0, 3), 3, request=(
    *_PRODUCER,
    f("committed", "bool"),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
))

TXN_OFFSET_COMMIT = Api(28, "TxnOffsetCommit", (0, 3), 3, request=(
    f("transactional_id", "string"),
    f("group_id", "string"),
    f("producer_id", "int64"),
    f("producer_epoch", "int16"),
    f("generation_id", "int32", "3+", default=-1),
    f("member_id", "string", "3+", default=""),
    f("group_instance_id", "string", "3+", nullable="3+"),
    committed_topics(leader_epoch="2+"),
), response=(
    f("throttle_time_ms", "int32"),
    COMMIT_RESULTS,
))

TXN_APIS = (ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT)
