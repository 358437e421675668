"""The admin APIs: topics (create, delete, grow), their configs (topic_configs.py),
records deletion, the cluster and producers described, and what one node cannot
do. Part of the Broker (broker.py); the event loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arrowlog import errors as AE

from . import broker_configs as BC
from . import errors as E
from . import topic_configs as TC

log = logging.getLogger("arrowlog.server")

# Authorized operations as Kafka reports them without an authorizer: every operation
# that applies to the resource type (bit n set for AclOperation code n).
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))   # READ ... ALTER_CONFIGS
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8))                    # READ, DELETE, DESCRIBE
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))   # CREATE ... IDEMPOTENT_WRITE
NO_OPERATIONS = -2147483648   # "not requested"
# DescribeConfigs v3+ config_type: BOOLEAN 1, STRING 2, INT 3, SHORT 4, LONG 5, DOUBLE 6, LIST 7.
_CONFIG_TYPES = {"boolean": 1, "string": 2, "int": 3, "long": 5, "double": 6, "list": 7}
# CreateTopics creates this many topics (about 1 ms each: directories, topic.json,
# fsyncs) before it lets the event loop serve other connections.
TOPICS_PER_SLICE = 16
# A creation of more partitions than this (each partition's files made: ~1-3 ms apiece,
# seconds for a thousand on a busy disk) runs in a worker thread, the loop serving the
# other connections meanwhile; this connection's answers stay in order (server.py).
INLINE_PARTITIONS = 8


class AdminHandlers:
    """CreateTopics, DeleteTopics, DescribeConfigs, DescribeCluster, CreatePartitions,
    AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DescribeProducers, ElectLeaders
    and the partition reassignment calls on a Broker."""

    def __init__(self, broker):
        self.broker = broker
        self.cluster_id = broker.cluster_id
        self.config = broker.config
        self.ignored_configs = broker.ignored_configs
        self.offsets = broker.offsets
        self.producers = broker.producers
        self.store = broker.store
        self.txns = broker.txns
        self.broker_configs = BC.BrokerConfigs(broker.store.data_dir, broker.config.node_id)

    def register(self, handlers: dict) -> None:
        handlers.update({19: self.create_topics, 20: self.delete_topics, 32: self.describe_configs,
                         60: self.describe_cluster, 37: self.create_partitions, 33: self.alter_configs,
                         44: self.incremental_alter_configs, 21: self.delete_records,
                         61: self.describe_producers, 43: self.elect_leaders,
                         45: self.alter_partition_reassignments, 46: self.list_partition_reassignments})

    async def create_topics(self, ctx, req: dict) -> dict:
        results = []
        per_topic, per_request = self.config.max_partitions_per_topic, self.config.max_partitions_per_request
        requested = 0
        for i, ct in enumerate(req["topics"]):
            if i and i % TOPICS_PER_SLICE == 0:
                await asyncio.sleep(0)  # thousands of topics: let the other connections in between
            name = ct["name"]
            n = ct["num_partitions"]
            if n == -1:
                n = len(ct["assignments"]) or self.config.default_partitions
            rf = ct["replication_factor"]
            config, ignored, problem = TC.split({c["name"]: c["value"] for c in ct["configs"]
                                                 if c["value"] is not None})
            if problem:
                code, msg = E.INVALID_CONFIG, problem
            elif rf not in (-1, 1) or any(len(a["broker_ids"]) > 1 for a in ct["assignments"]):
                code, msg = E.INVALID_REPLICATION_FACTOR, "this broker has one node: replication factor 1"
            elif n > per_topic:
                code, msg = E.INVALID_PARTITIONS, (
                    f"topic {name!r} asks for {n} partitions; this server allows at most {per_topic} "
                    "per topic (max.partitions.per.topic, arrowlog serve --max-partitions-per-topic)")
            elif requested + max(n, 0) > per_request:
                code, msg = E.POLICY_VIOLATION, (
                    f"this request asks for more than {per_request} partitions in all; create the topics in "
                    "several requests (max.partitions.per.request, --max-partitions-per-request)")
            else:
                args = (name, n, config, req["validate_only"])
                code, msg = await asyncio.to_thread(self.store.create_topic, *args) \
                    if n > INLINE_PARTITIONS and not req["validate_only"] else self.store.create_topic(*args)
                if code == E.NONE:
                    requested += n
                    if not req["validate_only"]:
                        self.ignored_configs.set(name, ignored)
            r = {"name": name, "error_code": code, "error_message": msg,
                 "topic_id": self.store.topic_id(name) if code == E.NONE else bytes(16)}
            if code == E.NONE:
                r.update(num_partitions=n, replication_factor=1, configs=self._configs(
                    name, self.store.topic(name), None) if not req["validate_only"] else [])
                log.info("created topic %s with %d partition(s)", name, n)
            results.append(r)
        return {"topics": results}

    def delete_topics(self, ctx, req: dict) -> dict:
        if ctx.version >= 6:
            names = [t["name"] or self.store.topic_by_id(t["topic_id"]) for t in req["topics"]]
        else:
            names = req["topic_names"]
        out = []
        for name in names:
            code, msg = self.store.delete_topic(name) if name else (E.UNKNOWN_TOPIC_OR_PARTITION, None)
            if code == E.NONE:
                self.broker.fetching.forget_cached(name)
                self.producers.forget_topic(name)
                self.txns.forget_topic(name)
                self.offsets.delete_topic(name)
                self.ignored_configs.forget(name)
                self.broker._dirty = {pl for pl in self.broker._dirty if pl.topic != name}
                self.broker._written = {pl for pl in self.broker._written if pl.topic != name}
                log.info("deleted topic %s", name)
            out.append({"name": name, "topic_id": self.store.topic_id(name or ""), "error_code": code,
                        "error_message": msg})
        return {"responses": out}

    def _configs(self, name: str, topic: Any, keys: set[str] | None) -> list[dict[str, Any]]:
        """The topic's configs as DescribeConfigs reports them: what storage applies, what
        was accepted but means nothing on one node, and Kafka's defaults for the rest."""
        values = dict(TC.KAFKA_DEFAULTS)
        stored = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (topic.config or {}).items() if v is not None and k in TC.HONOURED} \
            if topic is not None else {}
        explicit = {**stored, **self.ignored_configs.get(name)}
        values.update(explicit)
        out = []
        for k in sorted(values):
            if keys is not None and k not in keys:
                continue
            # config_source 1 = DYNAMIC_TOPIC_CONFIG, 5 = DEFAULT_CONFIG
            out.append({"name": k, "value": values[k], "read_only": False,
                        "config_source": 1 if k in explicit else 5, "is_sensitive": False,
                        "synonyms": [], "config_type": _CONFIG_TYPES.get(TC.KAFKA_TOPIC_CONFIGS.get(k, ""), 0)})
        return out

    def describe_configs(self, ctx, req: dict) -> dict:
        results = []
        for r in req["resources"]:
            rtype, rname, keys = r["resource_type"], r["resource_name"], r["configuration_keys"]
            keys = set(keys) if keys is not None else None
            res = {"error_code": E.NONE, "error_message": None, "resource_type": rtype,
                   "resource_name": rname, "configs": []}
            if rtype == 2:      # TOPIC
                t = self.store.topic(rname)
                if t is None:
                    res.update(error_code=E.UNKNOWN_TOPIC_OR_PARTITION, error_message=f"unknown topic {rname!r}")
                else:
                    res["configs"] = self._configs(rname, t, keys)
            elif rtype == 4:    # BROKER
                static = {"broker.id": str(self.config.node_id), "num.partitions": str(self.config.default_partitions),
                          "auto.create.topics.enable": str(self.config.auto_create_topics).lower(),
                          "log.dirs": self.store.data_dir}
                res["configs"] = self.broker_configs.describe(rname, static, keys)
            else:
                res.update(error_code=E.INVALID_REQUEST, error_message=f"resource type {rtype} is not supported")
            results.append(res)
        return {"results": results}

    def describe_cluster(self, ctx, req: dict) -> dict:
        if req["endpoint_type"] != 1:  # 2: controllers; this node's controller has no listener of its own
            return {"error_code": E.UNSUPPORTED_ENDPOINT_TYPE, "error_message":
                    "arrowlog serve has one node and no separate controller listener: ask for brokers (1)",
                    "endpoint_type": req["endpoint_type"], "cluster_id": self.cluster_id}
        return {"error_code": E.NONE, "cluster_id": self.cluster_id, "controller_id": self.config.node_id,
                "brokers": [{"broker_id": self.config.node_id, "host": self.config.advertised,
                             "port": self.config.port, "rack": None}],
                "cluster_authorized_operations": CLUSTER_OPERATIONS
                if req["include_cluster_authorized_operations"] else NO_OPERATIONS}

    # ------------------------------------------------------------ admin: partitions and configs
    async def create_partitions(self, ctx, req: dict) -> dict:
        results = []
        per_topic = self.config.max_partitions_per_topic
        async with self.broker._produce_lock:
            for ct in req["topics"]:
                name, count = ct["name"], ct["count"]
                t = self.store.topic(name)
                code, msg = E.NONE, None
                if t is None:
                    code, msg = E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"
                elif count > per_topic:
                    code, msg = E.INVALID_PARTITIONS, (
                        f"topic {name!r} cannot have {count} partitions; this server allows at most {per_topic} "
                        "per topic (arrowlog serve --max-partitions-per-topic)")
                elif count <= t.num_partitions:
                    code, msg = E.INVALID_PARTITIONS, (
                        f"topic {name!r} already has {t.num_partitions} partitions; ask for more (partitions "
                        "cannot be removed)")
                elif ct["assignments"] is not None and (
                        len(ct["assignments"]) != count - t.num_partitions
                        or any(a["broker_ids"] != [self.config.node_id] for a in ct["assignments"])):
                    code, msg = E.INVALID_REPLICA_ASSIGNMENT, (
                        f"this server is one node (id {self.config.node_id}): each new partition's replicas "
                        f"must be [{self.config.node_id}], one assignment per new partition")
                elif not req["validate_only"]:
                    code, msg, staged = (await asyncio.to_thread(self.store.stage_partitions, name, count)) \
                        if count - t.num_partitions > INLINE_PARTITIONS else (E.NONE, None, None)
                    if code == E.NONE:  # (produces wait for the lock: the topic's partitions close here)
                        self.broker._release_topic(name)
                        code, msg = self.store.add_partitions(name, count, staged)
                    if code == E.NONE:
                        log.info("topic %s now has %d partitions", name, count)
                results.append({"name": name, "error_code": code, "error_message": msg})
        return {"results": results}

    def _check_resource(self, rtype: int, rname: str) -> tuple[int, str | None]:
        if rtype == 2:
            if self.store.topic(rname) is None:
                return E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {rname!r}"
            return E.NONE, None
        if rtype == 4:
            return self.broker_configs.check_resource(rname)
        return E.INVALID_REQUEST, f"resource type {rtype} has no configs on arrowlog serve"

    def _apply_configs(self, rtype: int, name: str, changes: dict, validate_only: bool) -> tuple[int, str | None]:
        if rtype == 4:
            code, msg = self.broker_configs.apply(name, changes, validate_only)
            if code == E.NONE and not validate_only:
                log.info("altered broker configs %r: %s", name, changes)
            return code, msg
        return self._apply_topic_configs(name, changes, validate_only)

    def _explicit_configs(self, rtype: int, name: str) -> set:
        """The names set on the resource (what AlterConfigs returns to defaults when not given)."""
        if rtype == 4:
            return set(self.broker_configs.get(name))
        t = self.store.topic(name)
        return set(self.ignored_configs.get(name)) | {
            k for k, v in (t.config or {}).items() if k in TC.HONOURED and v is not None}

    def _apply_topic_configs(self, name: str, changes: dict, validate_only: bool) -> tuple[int, str | None]:
        """Apply ``changes`` ({name: value or None to reset}) to the topic's configs."""
        honoured, ignoring, problem = TC.split(changes)
        if problem:
            return E.INVALID_CONFIG, problem
        ignored = self.ignored_configs.get(name)
        ignored.update(ignoring)
        if validate_only:
            return E.NONE, None
        if honoured:
            self.broker._release_topic(name)
            code, msg = self.store.alter_topic(name, honoured)
            if code != E.NONE:
                return code, msg
        self.ignored_configs.set(name, ignored)
        log.info("altered configs of topic %s: %s", name, changes)
        return E.NONE, None

    async def alter_configs(self, ctx, req: dict) -> dict:
        """AlterConfigs replaces a resource's whole config: keys not given return to defaults."""
        out = []
        async with self.broker._produce_lock:
            for r in req["resources"]:
                rtype, rname = r["resource_type"], r["resource_name"]
                code, msg = self._check_resource(rtype, rname)
                if code == E.NONE:
                    given = {c["name"]: c["value"] for c in r["configs"]}
                    changes = {k: None for k in self._explicit_configs(rtype, rname) if k not in given}
                    changes.update(given)
                    code, msg = self._apply_configs(rtype, rname, changes, req["validate_only"])
                out.append({"error_code": code, "error_message": msg, "resource_type": rtype,
                            "resource_name": rname})
        return {"responses": out}

    async def incremental_alter_configs(self, ctx, req: dict) -> dict:
        """Operations: 0 SET, 1 DELETE (back to the default); APPEND (2) and SUBTRACT (3)
        apply to list configs (cleanup.policy, the throttled-replica lists, and on the
        broker log.cleanup.policy)."""
        out = []
        async with self.broker._produce_lock:
            for r in req["resources"]:
                rtype, rname = r["resource_type"], r["resource_name"]
                code, msg = self._check_resource(rtype, rname)
                changes: dict = {}
                for c in r["configs"] if code == E.NONE else []:
                    op, k, v = c["config_operation"], c["name"], c["value"]
                    if op == 0:
                        changes[k] = v
                    elif op == 1:
                        changes[k] = None
                    elif op in (2, 3) and (BC.is_list(k) if rtype == 4 else TC.KAFKA_TOPIC_CONFIGS.get(k) == "list"):
                        have = [x for x in (changes.get(k) or self._current_value(rtype, rname, k) or "").split(",")
                                if x]
                        items = [x for x in (v or "").split(",") if x]
                        have = have + [x for x in items if x not in have] if op == 2 else \
                            [x for x in have if x not in items]
                        changes[k] = ",".join(have) or None
                    else:
                        code, msg = E.INVALID_CONFIG, (f"operation {op} on {k!r}: APPEND and SUBTRACT need a "
                                                       "list config; SET is 0, DELETE 1")
                        break
                if code == E.NONE:
                    code, msg = self._apply_configs(rtype, rname, changes, req["validate_only"])
                out.append({"error_code": code, "error_message": msg, "resource_type": rtype,
                            "resource_name": rname})
        return {"responses": out}

    def _current_value(self, rtype: int, name: str, key: str) -> str | None:
        if rtype == 4:   # the broker's own value, or the cluster-wide one, or Kafka's default
            return self.broker_configs.get(name).get(key) or self.broker_configs.get("").get(key) or \
                TC.KAFKA_DEFAULTS.get(BC.TOPIC_DEFAULTS.get(key, ""))
        for c in self._configs(name, self.store.topic(name), {key}):
            return c["value"]
        return None

    async def delete_records(self, ctx, req: dict) -> dict:
        topics = []
        async with self.broker._produce_lock:
            for dt in req["topics"]:
                parts = []
                for dp in dt["partitions"]:
                    idx = dp["partition_index"]
                    pl, code, _ = self.broker._partition(dt["name"], idx)
                    low = -1
                    if pl is not None:
                        try:
                            low = await asyncio.to_thread(pl.delete_records, dp["offset"])
                        except AE.OffsetOutOfRangeError as exc:
                            log.info("refused DeleteRecords on %s-%d: %s", dt["name"], idx, exc)
                            code = E.OFFSET_OUT_OF_RANGE
                        except OSError as exc:
                            log.error("DeleteRecords on %s-%d failed: %s", dt["name"], idx, exc)
                            code = E.KAFKA_STORAGE_ERROR
                        else:
                            log.info("records of %s-%d below %d deleted", dt["name"], idx, low)
                    parts.append({"partition_index": idx, "low_watermark": low, "error_code": code})
                topics.append({"name": dt["name"], "partitions": parts})
        return {"topics": topics}

    def describe_producers(self, ctx, req: dict) -> dict:
        topics = []
        for t in req["topics"]:
            parts = []
            for idx in t["partition_indexes"]:
                pl, code, msg = self.broker._partition(t["name"], idx)
                active = self.producers.describe(t["name"], idx) if pl is not None else []
                parts.append({"partition_index": idx, "error_code": code, "error_message": msg,
                              "active_producers": active})
            topics.append({"name": t["name"], "partitions": parts})
        return {"topics": topics}

    # ------------------------------------------------------------ what one node cannot do
    def elect_leaders(self, ctx, req: dict) -> dict:
        msg = ("arrowlog serve is one node: it leads every partition, so there is no leader to elect")
        results = [{"topic": tp["topic"], "partition_result": [
            {"partition_id": p, "error_code": E.INVALID_REQUEST, "error_message": msg} for p in tp["partitions"]]}
            for tp in req["topic_partitions"] or []]
        return {"error_code": E.INVALID_REQUEST if req["topic_partitions"] is None else E.NONE,
                "replica_election_results": results}

    def alter_partition_reassignments(self, ctx, req: dict) -> dict:
        return {"error_code": E.INVALID_REQUEST, "responses": [],
                "error_message": "arrowlog serve is one node with one replica of each partition: "
                                 "there is nowhere to reassign a partition to"}

    def list_partition_reassignments(self, ctx, req: dict) -> dict:
        return {"error_code": E.NONE, "topics": []}   # one node: never a reassignment in progress
