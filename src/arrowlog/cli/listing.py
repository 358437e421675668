"""The ``list`` command of the offline admin groups (``acl``, ``user``, ``txn``): it reads
what the data directory holds and prints it as an aligned table, or with ``--json``
as JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

from .common import command_body, out, print_table

# what a list command's body returns: (the items as JSON takes them, the table's headers,
# the table's rows of those items)
Listing = tuple[Any, Sequence[str], Callable[[], Sequence[Sequence[Any]]]]


def list_command(group: click.Group, json_help: str, *, examples: str = "") -> Callable:
    """Make ``body(data) -> Listing`` the ``list`` command of ``group`` (its docstring is the
    command's help); ``examples``: more lines for the help's examples."""
    def register(body: Callable[[str | None], Listing]) -> Callable:
        def list_cmd(as_json: bool, data: str | None) -> None:
            items, headers, rows = body(data)
            if as_json:
                out(json.dumps(items))
            else:
                print_table(headers, rows())

        list_cmd.__doc__ = body.__doc__
        epilog = f"\b\nExamples:\n  arrowlog {group.name} list{examples}\n  arrowlog {group.name} list --json\n"
        decorated = click.option("--json", "as_json", is_flag=True, help=json_help)(command_body(list_cmd))
        group.command("list", epilog=epilog)(decorated)
        return body
    return register
