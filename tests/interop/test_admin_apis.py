"""The Kafka admin APIs through unmodified clients: confluent-kafka's AdminClient
(librdkafka) and kafka-python's KafkaAdminClient, against the session's server."""

from __future__ import annotations

import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

TIMEOUT = 30


def admin(server):
    return AdminClient({"bootstrap.servers": server.bootstrap})


def wait(futures):
    return {k: f.result(TIMEOUT) for k, f in futures.items()}


def topic_configs(a, topic, *keys):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = wait(a.describe_configs([res]))[res]
    return {k: entries[k].value for k in keys}


def produce(server, topic, n, partition=0):
    p = ck.Producer({"bootstrap.servers": server.bootstrap})
    for i in range(n):
        p.produce(topic, value=b"v%d" % i, partition=partition)
    assert p.flush(TIMEOUT) == 0


KAFKA_CONFIGS = {"delete.retention.ms": "1000", "max.message.bytes": "2000000", "cleanup.policy": "delete",
                 "min.insync.replicas": "1", "segment.ms": "3600000", "unclean.leader.election.enable": "false",
                 "compression.type": "gzip", "flush.ms": "12345678"}


def test_create_topics_takes_kafkas_topic_configs(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1, config=KAFKA_CONFIGS)]))
    assert topic_configs(a, topic, *KAFKA_CONFIGS) == KAFKA_CONFIGS


def test_create_topics_refuses_an_unknown_or_mistyped_config(server, topic):
    a = admin(server)
    for config in ({"no.such.config": "1"}, {"min.insync.replicas": "two"}):
        with pytest.raises(KafkaException) as err:
            wait(a.create_topics([NewTopic(topic, 1, 1, config=config)]))
        assert err.value.args[0].name() == "INVALID_CONFIG"
    assert topic not in a.list_topics(timeout=TIMEOUT).topics


def test_create_partitions_grows_a_topic_and_refuses_to_shrink_it(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    wait(a.create_partitions([NewPartitions(topic, 4)]))
    assert len(a.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions) == 4
    produce(server, topic, 3, partition=3)
    with pytest.raises(KafkaException) as err:
        wait(a.create_partitions([NewPartitions(topic, 2)]))
    assert err.value.args[0].name() == "INVALID_PARTITIONS"


def test_alter_configs_and_incremental_alter_configs(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "100000"})]))
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"min.insync.replicas": "1",
                                                                       "segment.bytes": "1048576"})
    wait(a.alter_configs([res]))
    # AlterConfigs replaces the whole set: retention.ms is back to arrowlog's default (forever)
    assert topic_configs(a, topic, "retention.ms", "segment.bytes", "min.insync.replicas") == {
        "retention.ms": "-1", "segment.bytes": "1048576", "min.insync.replicas": "1"}
    wait(a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={
        "compression.type": "lz4", "min.insync.replicas": "1", "segment.bytes": "1048576"})]))
    assert topic_configs(a, topic, "compression.type") == {"compression.type": "lz4"}
    inc = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    wait(a.incremental_alter_configs([inc]))
    assert topic_configs(a, topic, "retention.ms", "segment.bytes", "min.insync.replicas") == {
        "retention.ms": "5000", "segment.bytes": "1073741824", "min.insync.replicas": "1"}
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "soon"})
    with pytest.raises(KafkaException) as err:
        wait(a.alter_configs([bad]))
    assert err.value.args[0].name() == "INVALID_CONFIG"


def test_the_configs_described_can_be_altered_back_unchanged(server, topic):
    # what librdkafka's test_AlterConfigs_simple does: describe, then set them all plus one
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = wait(a.describe_configs([res]))[res]
    every = {k: e.value for k, e in described.items()}
    every["message.format.version"] = "0.10.0.0"
    wait(a.alter_configs([ConfigResource(ConfigResource.Type.TOPIC, topic, set_config=every)]))
    assert topic_configs(a, topic, *every) == every


def test_delete_records_moves_the_log_start(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    produce(server, topic, 10)
    tp = TopicPartition(topic, 0, 6)
    result = wait(a.delete_records([tp]))[tp]
    assert result.low_watermark == 6
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "dr-" + topic,
                     "auto.offset.reset": "earliest"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), TIMEOUT) == (6, 10)
        c.assign([TopicPartition(topic, 0, 0)])   # below the start: reset to earliest
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 4 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.offset())
        assert got == [6, 7, 8, 9]
    finally:
        c.close()


def group_consumer(server, group, **extra):
    return ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                        "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra})


def poll_until(consumer, condition, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        consumer.poll(0.2)


def test_groups_listed_described_and_deleted(server, topic, group):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 2, 1)]))
    c = group_consumer(server, group)
    try:
        c.subscribe([topic])
        poll_until(c, lambda: len(c.assignment()) == 2, "the assignment")
        listed = a.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
        states = {g.group_id: g.state.name for g in listed.valid}
        assert states[group] == "STABLE"
        described = wait(a.describe_consumer_groups([group], include_authorized_operations=True))[group]
        assert described.state.name == "STABLE" and len(described.members) == 1
        assert {op.name for op in described.authorized_operations} == {"READ", "DELETE", "DESCRIBE"}
        with pytest.raises(KafkaException) as err:   # Kafka refuses to delete a group with members
            wait(a.delete_consumer_groups([group]))
        assert err.value.args[0].name() == "NON_EMPTY_GROUP"
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        c.close()
    poll_states = {g.group_id: g.state.name for g in a.list_consumer_groups().result(TIMEOUT).valid}
    assert poll_states[group] == "EMPTY"
    wait(a.delete_consumer_groups([group]))
    assert group not in {g.group_id for g in a.list_consumer_groups().result(TIMEOUT).valid}
    offsets = wait(a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]))[group]
    assert offsets.topic_partitions == []


def test_describe_cluster_and_topics_report_every_operation_without_an_authorizer(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    cluster = a.describe_cluster(include_authorized_operations=True).result(TIMEOUT)
    assert {op.name for op in cluster.authorized_operations} == {
        "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"}
    from confluent_kafka import TopicCollection
    desc = wait(a.describe_topics(TopicCollection([topic]), include_authorized_operations=True))[topic]
    assert len(desc.authorized_operations) == 8


def test_committed_leader_epoch_is_returned_as_committed(server, topic, group):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    c = group_consumer(server, group)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5, leader_epoch=1)], asynchronous=False)
        (got,) = c.committed([TopicPartition(topic, 0)], TIMEOUT)
        assert (got.offset, got.leader_epoch) == (5, 1)
    finally:
        c.close()


def test_a_restarted_static_member_gets_its_assignment_back_without_a_rebalance(server, topic, group):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 4, 1)]))
    events = {"a": [], "b": []}

    def member(name):
        c = group_consumer(server, group, **{"group.instance.id": "static-" + name,
                                             "session.timeout.ms": 60000})
        c.subscribe([topic], on_assign=lambda _c, ps: events[name].append(("assign", sorted(p.partition for p in ps))),
                    on_revoke=lambda _c, ps: events[name].append(("revoke", sorted(p.partition for p in ps))))
        return c

    ca, cb = member("a"), member("b")
    try:
        def both_assigned():
            ca.poll(0.1)
            cb.poll(0.1)
            return len(ca.assignment()) + len(cb.assignment()) == 4 and ca.assignment() and cb.assignment()
        poll_until(ca, both_assigned, "both static members to share the partitions")
        before_a, before_b = sorted(p.partition for p in ca.assignment()), sorted(p.partition for p in cb.assignment())
        seen_a = len(events["a"])
        cb.close()                     # a static member does not leave the group on close
        events["b"] = []
        cb = member("b")
        poll_until(cb, lambda: bool(cb.assignment()), "the restarted member's assignment")
        assert sorted(p.partition for p in cb.assignment()) == before_b
        for _ in range(10):            # the other member sees no rebalance meanwhile
            ca.poll(0.1)
        assert events["a"][seen_a:] == [] and sorted(p.partition for p in ca.assignment()) == before_a
    finally:
        ca.close()
        cb.close()


def test_kafka_python_admin_client(server, topic):
    kadmin = pytest.importorskip("kafka.admin")
    client = kadmin.KafkaAdminClient(bootstrap_servers=server.bootstrap, request_timeout_ms=TIMEOUT * 1000)
    try:
        client.create_topics([kadmin.NewTopic(topic, 1, 1, topic_configs={"delete.retention.ms": "1000"})])
        client.create_partitions({topic: kadmin.NewPartitions(3)})
        described = client.describe_topics([topic])
        assert len(described[0]["partitions"]) == 3
        client.alter_configs([kadmin.ConfigResource(kadmin.ConfigResourceType.TOPIC, topic,
                                                    configs={"retention.ms": "7000"})])
        resp = client.describe_configs([kadmin.ConfigResource(kadmin.ConfigResourceType.TOPIC, topic)])
        text = repr(resp)
        assert "7000" in text
    finally:
        client.close()


def test_list_offsets_max_timestamp(server, topic):
    a = admin(server)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    p = ck.Producer({"bootstrap.servers": server.bootstrap})
    for i, ts in enumerate([1_700_000_005_000, 1_700_000_009_000, 1_700_000_001_000]):
        p.produce(topic, value=b"v%d" % i, partition=0, timestamp=ts)
    assert p.flush(TIMEOUT) == 0
    from confluent_kafka.admin import OffsetSpec
    tp = TopicPartition(topic, 0)
    got = wait(a.list_offsets({tp: OffsetSpec.max_timestamp()}))[tp]
    assert (got.offset, got.timestamp) == (1, 1_700_000_009_000)


def test_arrowlog_serve_partitions_apply_to_auto_created_topics(tmp_path, topic):
    """The librdkafka suite's server profile: `arrowlog serve --partitions 4`."""
    import os
    import subprocess
    import sys

    from .conftest import SRC
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "arrowlog", "serve", "--data", str(tmp_path / "d"),
                             "--listen", "127.0.0.1:0", "--partitions", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        bootstrap = proc.stdout.readline().strip()
        assert bootstrap, proc.stderr.read()
        p = ck.Producer({"bootstrap.servers": bootstrap})
        p.produce(topic, value=b"x")
        assert p.flush(TIMEOUT) == 0
        meta = p.list_topics(topic, timeout=TIMEOUT)
        assert len(meta.topics[topic].partitions) == 4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err



def test_a_static_member_rejoining_keeps_its_assignment_and_fences_its_old_incarnation(server, group):
    from arrowlog.server import messages as M

    from .wireclient import call

    def join(member_id=""):
        return call(server, M.JOIN_GROUP, 7, {
            "group_id": group, "session_timeout_ms": 30000, "rebalance_timeout_ms": 30000,
            "member_id": member_id, "group_instance_id": "twin", "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b"\x00\x01"}]})

    def heartbeat(j):
        return call(server, M.HEARTBEAT, 4, {"group_id": group, "generation_id": j["generation_id"],
                                             "member_id": j["member_id"], "group_instance_id": "twin"})

    old = join()
    assert old["error_code"] == 0 and old["generation_id"] == 1
    synced = call(server, M.SYNC_GROUP, 5, {
        "group_id": group, "generation_id": 1, "member_id": old["member_id"], "group_instance_id": "twin",
        "protocol_type": "consumer", "protocol_name": "range",
        "assignments": [{"member_id": old["member_id"], "assignment": b"mine"}]})
    assert synced["assignment"] == b"mine"
    new = join()            # the same instance restarted: no member id yet
    assert (new["error_code"], new["generation_id"]) == (0, 1) and new["member_id"] != old["member_id"]
    again = call(server, M.SYNC_GROUP, 5, {
        "group_id": group, "generation_id": 1, "member_id": new["member_id"], "group_instance_id": "twin",
        "protocol_type": "consumer", "protocol_name": "range", "assignments": []})
    assert again["assignment"] == b"mine"          # no rebalance: the old assignment
    assert heartbeat(new)["error_code"] == 0
    assert heartbeat(old)["error_code"] == 82      # FENCED_INSTANCE_ID


def broker_configs(a, name="1"):
    res = ConfigResource(ConfigResource.Type.BROKER, name)
    return {k: (e.value, e.source) for k, e in wait(a.describe_configs([res]))[res].items()}


def test_dynamic_broker_configs_are_kept_and_static_ones_refused_as_kafka_does(tmp_path):
    # what librdkafka's 0081 does to the broker resource, then what Kafka refuses
    from .conftest import ServerProcess

    dynamic = ck.admin.ConfigSource.DYNAMIC_BROKER_CONFIG.value
    srv = ServerProcess(tmp_path / "data")
    try:
        a = admin(srv)
        inc = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
            ConfigEntry("background.threads", "9", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("log.cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)])
        wait(a.incremental_alter_configs([inc]))
        got = broker_configs(a)
        assert got["background.threads"] == ("9", dynamic)
        assert got["log.cleanup.policy"] == ("delete,compact", dynamic)
        assert got["broker.id"] == ("1", ck.admin.ConfigSource.STATIC_BROKER_CONFIG.value)
        inc = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
            ConfigEntry("background.threads", "", incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("log.cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT)])
        wait(a.incremental_alter_configs([inc]))
        got = broker_configs(a)
        assert "background.threads" not in got and got["log.cleanup.policy"] == ("delete", dynamic)
        # AlterConfigs replaces the broker's whole dynamic set
        wait(a.alter_configs([ConfigResource(ConfigResource.Type.BROKER, "1", set_config={
            "sasl.kerberos.min.time.before.relogin": "58000"})]))
        got = broker_configs(a)
        assert got["sasl.kerberos.min.time.before.relogin"] == ("58000", dynamic)
        assert "log.cleanup.policy" not in got
        refusals = [({"num.partitions": "3"}, "INVALID_REQUEST"),      # an arrowlog serve option: static
                    ({"log.retention.ms": "soon"}, "INVALID_CONFIG")]  # a topic default, mistyped
        for config, error in refusals:
            with pytest.raises(KafkaException) as err:
                wait(a.incremental_alter_configs([ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()])]))
            assert err.value.args[0].name() == error, (config, err.value)
        # another broker's id (librdkafka would wait for that broker: our own client sends it here)
        from arrowlog.server import messages as M

        from .wireclient import call
        resp = call(srv, M.INCREMENTAL_ALTER_CONFIGS, 1, {"validate_only": False, "resources": [
            {"resource_type": 4, "resource_name": "7", "configs": [
                {"name": "background.threads", "config_operation": 0, "value": "2"}]}]})
        assert resp["responses"][0]["error_code"] == 42   # INVALID_REQUEST
        wait(a.incremental_alter_configs([ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
            ConfigEntry("num.io.threads", "4", incremental_operation=AlterConfigOpType.SET)])], validate_only=True))
        assert "num.io.threads" not in broker_configs(a)
    finally:
        assert srv.stop() == 0, srv.log()
    srv = ServerProcess(tmp_path / "data")   # kept across a restart
    try:
        assert broker_configs(admin(srv))["sasl.kerberos.min.time.before.relogin"] == ("58000", dynamic)
    finally:
        assert srv.stop() == 0, srv.log()
