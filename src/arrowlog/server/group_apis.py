"""The group APIs: membership (groups.py's coordinator), committed offsets
(offsets.py), and the admin calls on groups. Part of the Broker (broker.py).
"""

from __future__ import annotations

import logging
from typing import Any

from . import errors as E
from .admin import GROUP_OPERATIONS, NO_OPERATIONS
from .offsets import group_id_problem, metadata_too_large

log = logging.getLogger("arrowlog.server")


class GroupHandlers:
    """FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
    OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete on a Broker."""

    def __init__(self, broker):
        self.broker = broker
        self.config = broker.config
        self.groups = broker.groups
        self.offsets = broker.offsets
        self.store = broker.store
        self.txns = broker.txns

    def register(self, handlers: dict) -> None:
        handlers.update({10: self.find_coordinator, 11: self.join_group, 14: self.sync_group,
                         12: self.heartbeat, 13: self.leave_group, 8: self.offset_commit,
                         9: self.offset_fetch, 15: self.describe_groups, 16: self.list_groups,
                         42: self.delete_groups, 47: self.offset_delete})

    def find_coordinator(self, ctx, req: dict) -> dict:
        return {"error_code": E.NONE, "error_message": None, "node_id": self.config.node_id,
                "host": self.config.advertised, "port": self.config.port}

    def join_group(self, ctx, req: dict):
        return self.groups.join(req, ctx.client_id, ctx.client_host, ctx.version)

    def sync_group(self, ctx, req: dict):
        return self.groups.sync(req)

    def heartbeat(self, ctx, req: dict) -> dict:
        return self.groups.heartbeat(req)

    def leave_group(self, ctx, req: dict) -> dict:
        return self.groups.leave(req, ctx.version)

    def offset_commit(self, ctx, req: dict) -> dict:
        problem = group_id_problem(req["group_id"])
        if problem:
            log.info("refused OffsetCommit: %s", problem)
            code = E.INVALID_GROUP_ID
        else:
            code = self.groups.check_commit(req["group_id"], req["generation_id"], req["member_id"],
                                            req.get("group_instance_id"))
        topics: list[dict[str, Any]] = []
        updates: dict[str, dict[int, dict[str, Any]]] = {}
        for ct in req["topics"]:
            known = self.store.topic(ct["name"])
            parts = []
            for cp in ct["partitions"]:
                idx = cp["partition_index"]
                pcode = code
                if pcode == E.NONE and (known is None or not 0 <= idx < known.num_partitions):
                    pcode = E.UNKNOWN_TOPIC_OR_PARTITION
                if pcode == E.NONE and metadata_too_large(cp["committed_metadata"]):
                    pcode = E.OFFSET_METADATA_TOO_LARGE
                if pcode == E.NONE and not self.groups.commit_allowed(req["group_id"], req["member_id"],
                                                                      ct["name"], idx):
                    pcode = E.ILLEGAL_GENERATION   # another member owns it now
                if pcode == E.NONE:
                    updates.setdefault(ct["name"], {})[idx] = {
                        "offset": cp["committed_offset"], "metadata": cp["committed_metadata"],
                        "leader_epoch": cp["committed_leader_epoch"]}
                parts.append({"partition_index": idx, "error_code": pcode})
            topics.append({"name": ct["name"], "partitions": parts})
        if updates:
            try:
                self.offsets.commit(req["group_id"], updates)
            except OSError as exc:
                log.error("commit for group %s failed: %s", req["group_id"], exc)
                for t in topics:
                    for p in t["partitions"]:
                        p["error_code"] = E.COORDINATOR_NOT_AVAILABLE
        return {"topics": topics}

    def offset_fetch(self, ctx, req: dict) -> dict:
        code = E.NONE
        if group_id_problem(req["group_id"]):
            code, committed = E.INVALID_GROUP_ID, {}
        else:
            try:
                committed = self.offsets.load(req["group_id"])
            except OSError as exc:
                log.error("cannot read the offsets of group %s: %s", req["group_id"], exc)
                code, committed = E.COORDINATOR_NOT_AVAILABLE, {}
        wanted = req["topics"]
        if wanted is None:
            wanted = [{"name": t, "partition_indexes": sorted(ps)} for t, ps in committed.items()]
        topics = []
        for wt in wanted:
            have = committed.get(wt["name"], {})
            parts = []
            for idx in wt["partition_indexes"]:
                e = have.get(idx)
                parts.append({"partition_index": idx, "error_code": code,
                              "committed_offset": e["offset"] if e else -1,
                              "committed_leader_epoch": e.get("leader_epoch", -1) if e else -1,
                              "metadata": (e.get("metadata") if e else "") or ""})
            topics.append({"name": wt["name"], "partitions": parts})
        if req.get("require_stable"):
            self.txns.mark_unstable(req["group_id"], topics)
        return {"error_code": code, "topics": topics}

    def describe_groups(self, ctx, req: dict) -> dict:
        ops = GROUP_OPERATIONS if req["include_authorized_operations"] else NO_OPERATIONS
        return {"groups": [{**self.groups.describe(g), "authorized_operations": ops} for g in req["groups"]]}

    def list_groups(self, ctx, req: dict) -> dict:
        states = set(req.get("states_filter") or [])
        # every group here is a classic group (no KIP-848 consumer groups); filters are case-insensitive
        types = {t.lower() for t in req.get("types_filter") or []}
        groups = [{**g, "group_type": "classic"} for g in self.groups.list()
                  if (not states or g["group_state"] in states) and (not types or "classic" in types)]
        return {"error_code": E.NONE, "groups": groups}

    def delete_groups(self, ctx, req: dict) -> dict:
        return {"results": [{"group_id": g, "error_code": self.groups.delete(g)} for g in req["groups_names"]]}

    def offset_delete(self, ctx, req: dict) -> dict:
        group = req["group_id"]
        if group_id_problem(group):
            return {"error_code": E.INVALID_GROUP_ID, "topics": []}
        try:
            known = group in self.offsets.groups()
            committed = self.offsets.load(group) if known else {}
        except OSError as exc:
            log.error("cannot read the offsets of group %s: %s", group, exc)
            return {"error_code": E.COORDINATOR_NOT_AVAILABLE, "topics": []}
        if not known and self.groups.subscribed_topics(group) is None:
            return {"error_code": E.GROUP_ID_NOT_FOUND, "topics": []}
        subscribed = self.groups.subscribed_topics(group) or set()
        topics, drop = [], []
        for t in req["topics"]:
            exists = self.store.topic(t["name"])
            parts = []
            for p in t["partitions"]:
                idx = p["partition_index"]
                if exists is None or not 0 <= idx < exists.num_partitions:
                    code = E.UNKNOWN_TOPIC_OR_PARTITION
                elif t["name"] in subscribed:
                    code = E.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    code = E.NONE
                    if idx in committed.get(t["name"], {}):
                        drop.append((t["name"], idx))
                parts.append({"partition_index": idx, "error_code": code})
            topics.append({"name": t["name"], "partitions": parts})
        if drop:
            try:
                self.offsets.drop(group, drop)
            except OSError as exc:
                log.error("cannot delete offsets of group %s: %s", group, exc)
                return {"error_code": E.COORDINATOR_NOT_AVAILABLE, "topics": []}
        return {"error_code": E.NONE, "topics": topics}
