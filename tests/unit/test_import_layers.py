"""The package's import structure: no circle at import time, and the shared
layers (schema, conversions, errors, storage) never reach up into a client."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import arrowlog

PKG = Path(arrowlog.__file__).resolve().parent
LOCAL = {"arrowlog.backends.local.producer", "arrowlog.backends.local.consumer", "arrowlog.backends.local.replay"}
KAFKA = {"arrowlog.backends.kafka.client", "arrowlog.backends.kafka.producer", "arrowlog.backends.kafka.consumer",
         "arrowlog.backends.kafka.replay"}
CLIENTS = LOCAL | KAFKA | {"arrowlog.asyncio", "arrowlog.mirror", "arrowlog.dataset"}
# modules every layer may use: they must not import a client, not even lazily
SHARED = ["arrowlog.schema", "arrowlog.convert", "arrowlog.errors", "arrowlog._types", "arrowlog._json",
          "arrowlog._callbacks", "arrowlog.config", "arrowlog.backends"]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(node: ast.ImportFrom | ast.Import, current: str, is_pkg: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def imports(path: Path, *, lazy: bool) -> set[str]:
    """The arrowlog modules ``path`` imports: at import time only (module
    level, TYPE_CHECKING blocks left out), or anywhere (``lazy``)."""
    tree = ast.parse(path.read_text())
    current, is_pkg = module_name(path), path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)) and (top or lazy):
                found.update(n for n in resolve(child, current, is_pkg) if n.startswith("arrowlog"))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not nested)

    visit(tree, True)
    known = {module_name(p) for p in PKG.rglob("*.py")}
    return {n for n in found if n in known and n != current}


def graph(lazy: bool) -> dict[str, set[str]]:
    return {module_name(p): imports(p, lazy=lazy) for p in PKG.rglob("*.py")}


def test_no_import_circle_at_import_time():
    g = graph(lazy=False)
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            # a package importing its own submodules (arrowlog/__init__ re-exports) is not a circle
            if not all(m == cycle[0] or m.startswith(cycle[0] + ".") for m in cycle) and \
                    not any(b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                pytest.fail("import circle: " + " -> ".join(cycle))
            return
        if node in done:
            return
        for nxt in sorted(g.get(node, ())):
            walk(nxt, path + [node])
        done.add(node)

    for name in sorted(g):
        walk(name, [])


@pytest.mark.parametrize("shared", SHARED)
def test_shared_modules_never_import_a_client(shared):
    path = PKG.parent.joinpath(*shared.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    assert not imports(path, lazy=True) & CLIENTS


def test_storage_never_imports_a_client():
    for path in (PKG / "storage").glob("*.py"):
        assert not imports(path, lazy=True) & CLIENTS, path.name


def test_the_kafka_client_does_not_import_the_local_backend():
    """The old circle ran producer -> kafka_backend -> kafka_replay -> replay -> producer."""
    kafka = PKG / "backends" / "kafka"
    for client in ("client.py", "producer.py", "consumer.py"):
        assert not imports(kafka / client, lazy=True) & (LOCAL | {"arrowlog.backends.kafka.replay"}), client
    # kafka's replay is a Replay (local.replay's base class), nothing more of the local backend
    assert imports(kafka / "replay.py", lazy=True) & LOCAL == {"arrowlog.backends.local.replay"}
    local = PKG / "backends" / "local"
    assert "arrowlog.backends.local.producer" not in imports(local / "replay.py", lazy=True)
    assert "arrowlog.backends.local.producer" not in imports(local / "consumer.py", lazy=True)


def test_both_backends_implement_the_one_interface():
    from arrowlog.backends import ConsumerBackend, ProducerBackend, ReplayBackend
    from arrowlog.backends.kafka.consumer import KafkaConsumer
    from arrowlog.backends.kafka.producer import KafkaProducer
    from arrowlog.backends.kafka.replay import KafkaReplay
    from arrowlog.backends.local.consumer import Consumer
    from arrowlog.backends.local.producer import Producer
    from arrowlog.backends.local.replay import Replay

    for interface, classes in ((ProducerBackend, (Producer, KafkaProducer)), (ConsumerBackend, (Consumer, KafkaConsumer)),
                               (ReplayBackend, (Replay, KafkaReplay))):
        wanted = [n for n, v in vars(interface).items()
                  if (callable(v) or isinstance(v, property)) and (not n.startswith("_") or n == "__iter__")]
        for cls in classes:
            missing = [n for n in wanted if not hasattr(cls, n)]
            assert not missing, f"{cls.__qualname__} lacks {missing} of {interface.__name__}"


def test_each_client_and_shared_module_imports_on_its_own():
    """Imported first, in a fresh interpreter, each of them works (an import
    circle that only bites in some order fails here)."""
    for module in sorted(CLIENTS | set(SHARED) | {"arrowlog.storage.reader"}):
        r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                           cwd=str(PKG.parent))
        assert r.returncode == 0, f"import {module}: {r.stderr}"


def test_no_lookup_scaffolding_left():
    """Modules of the package import each other directly: no importlib
    lookups of siblings, no signature probing of our own storage, and the
    topic-name rule is written once (storage.validate_topic_name)."""
    source = {p.relative_to(PKG).as_posix(): p.read_text() for p in PKG.rglob("*.py")}
    # _optional.py imports optional third-party packages by name; nothing imports arrowlog that way
    assert [p for p, s in source.items() if "importlib.import_module" in s] == ["_optional.py"]
    assert not [p for p, s in source.items() if "inspect.signature" in s]
    assert [p for p, s in source.items() if re.search(r"re\.compile\(r?\"\^?\[A-Za-z0-9._-\]\{1,249\}", s)] == \
        ["storage/logdir.py"]
    # and its character class is written in one regular expression, not again for the error message
    assert [p for p, s in source.items() for _ in re.finditer(r"r\"\^?\[A-Za-z0-9\._-\]", s)] == ["storage/logdir.py"]


def test_the_native_producer_upcalls_are_declared_and_implemented():
    """ProducerCore.produce (Cython) calls back into Python on its rare paths:
    each upcall is a cpdef method declared in core.pxd (the contract; the
    core's own version raises NotImplementedError) and implemented by
    arrowlog.Producer; produce() calls no other method of its own."""
    from arrowlog._native import core
    from arrowlog.backends.local.producer import Producer

    pxd = (PKG / "_native" / "core.pxd").read_text()
    decl = pxd[pxd.index("cdef class ProducerCore"):]
    decl = decl[:decl.index("\ncdef class ")]
    contract = set(re.findall(r"^    cpdef (_[a-z_]+)\(self", decl, re.M))
    own = set(re.findall(r"^    cdef [\w ]*?(_[a-z_]+)\(self", decl, re.M))   # the core's cdef methods
    pxi = (PKG.parents[1] / "_native" / "core" / "producer.pxi").read_text()
    body = pxi[pxi.index("cdef class ProducerCore"):]
    body = body[:body.index("\ncdef class ", 10)] if "\ncdef class " in body[10:] else body
    upcalls = set(re.findall(r"self\.(_[a-z_]+)\(", body)) - own
    args = {"_open_slot": ("t",), "_raise_closed": (), "_too_large": (None, 1), "_bad_partition": (None, 9), "_unkeyed": (None,),
            "_coerce_timestamp": (0.5,), "_batch_full": (None, 0), "_first_in_batch": (None, 0)}
    assert upcalls == contract == set(args)
    core_obj = core.ProducerCore()
    for name in sorted(upcalls):
        assert name in vars(core.ProducerCore), f"produce() calls self.{name}() that ProducerCore does not declare"
        assert name in vars(Producer), f"arrowlog.Producer does not implement {name}()"
        with pytest.raises(NotImplementedError):
            getattr(core_obj, name)(*args[name])


def test_produce_dispatches_each_upcall_to_the_python_override():
    """The cpdef upcalls reach a Python subclass's methods from C."""
    from arrowlog._native import core

    seen = []

    class Core(core.ProducerCore):
        def _open_slot(self, topic):
            slot = self._slots[topic] = core.TopicSlot(topic, None, 2, max_record_bytes=4)
            seen.append(("open", topic))
            return slot

        def _raise_closed(self):
            raise RuntimeError("closed here")

        def _too_large(self, slot, size):
            raise OverflowError(size)

        def _coerce_timestamp(self, timestamp):
            seen.append(("ts", timestamp))
            return 7

        def _first_in_batch(self, slot, partition):
            seen.append(("first", partition))

        def _bad_partition(self, slot, partition):
            raise IndexError(partition)

    c = Core()
    c.produce("t", b"ab", partition=1, timestamp=1.5)
    assert seen == [("open", "t"), ("ts", 1.5), ("first", 1)]
    with pytest.raises(OverflowError, match="5"):
        c.produce("t", b"abcde")
    with pytest.raises(IndexError, match="9"):
        c.produce("t", b"a", partition=9)
    c._closed = True
    with pytest.raises(RuntimeError, match="closed here"):
        c.produce("t", b"a")
