"""PartitionLog is put together from parts over one declared base
(storage/logbase.py): what a part uses of another is declared on LogBase for
mypy, and each declaration must be implemented by exactly one part."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import arrowlog.storage.logbase as logbase
from arrowlog.storage.partition import PartitionLog


def declared_for_the_parts() -> list[str]:
    tree = ast.parse(Path(logbase.__file__).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LogBase")
    block = next(n for n in cls.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    return [n.name for n in block.body if isinstance(n, ast.FunctionDef)]


def test_every_declared_method_is_implemented_by_one_part():
    names = declared_for_the_parts()
    assert "_recover_locked" in names and "_sync_locked" in names
    for name in names:
        owners = [c.__name__ for c in PartitionLog.__mro__ if name in vars(c)]
        assert len(owners) == 1 and owners != ["LogBase"], f"{name}: defined by {owners or 'no part'}"
        declared = getattr(PartitionLog, name)
        assert inspect.isfunction(declared), name


def test_the_parts_share_one_base():
    parts = [c for c in PartitionLog.__mro__[1:] if c.__module__.startswith("arrowlog.storage.")
             and c is not logbase.LogBase]
    assert {c.__module__.rsplit(".", 1)[1] for c in parts} == {"sessions", "appending", "recovery", "sync",
                                                                 "retention", "reading"}
    assert all(issubclass(c, logbase.LogBase) for c in parts)
