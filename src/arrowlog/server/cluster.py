"""The stable identity of the single-node cluster a data directory forms."""

from __future__ import annotations

import base64
import os
import uuid


def cluster_id_for(data_dir: str) -> str:
    """A Kafka-style cluster id (22 characters of URL-safe base64) that is the
    same every time the same directory is served."""
    real = os.path.realpath(data_dir)
    raw = uuid.uuid5(uuid.NAMESPACE_URL, "arrowlog-cluster:" + real).bytes
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
