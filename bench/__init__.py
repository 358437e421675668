"""arrowlog's benchmark harness.

``python -m bench`` (``make bench``) measures arrowlog side by side with the
event logs a Python user would pick instead (Redis Streams, NATS JetStream,
SQLite, confluent-kafka's client) and with this machine's own limits, all in
the same run, and writes ``bench/RESULTS.md`` and ``bench/results.json``.
See ``bench/README.md``.
"""
