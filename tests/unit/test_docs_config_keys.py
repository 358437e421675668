"""docs/CLIENTS.md's "Every config key" tables name exactly the keys the
clients and topics accept, with their defaults, so the list cannot drift
from arrowlog.config."""

import os
import re

import pytest

from arrowlog import config

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "CLIENTS.md")


def documented(title: str) -> dict[str, str]:
    """``{key: default cell}`` of the table under ``### <title>`` in the section."""
    text = open(DOC, encoding="utf-8").read()
    section = text[text.index("## Every config key"):]
    table = section[section.index(f"### {title}"):]
    table = table[table.index("\n") + 1:].split("\n### ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*?) \|", table, re.M)}


@pytest.mark.parametrize(("title", "keys"), [("Producer", config.PRODUCER), ("Consumer", config.CONSUMER),
                                              ("Topic", config.TOPIC)])
def test_every_key_is_documented_with_its_default(title, keys):
    expected = {k.name: "—" if k.default is None else f"`{k.default!r}`" for k in keys}
    assert documented(title) == expected
