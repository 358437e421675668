"""The .pxd contracts of the native modules match what Python sees: every
``cdef public`` / ``cdef readonly`` attribute a .pxd declares is an attribute
of the built class (readonly ones refuse writes), the private ones are not
visible, and no .pxi declares an attribute of a class again (a second
declaration once shadowed the .pxd's and hid public attributes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# the source tree's files (the wheel test runs this suite against an installed
# package, which ships the .pxd but not the .pyx/.pxi it is checked against)
ROOT = Path(__file__).resolve().parents[2]
PXDS = sorted((ROOT / "src" / "arrowlog" / "_native").glob("*.pxd"))
ATTR = re.compile(r"^    cdef (?:(public|readonly) )?(?:const )?[\w]+ \**(\w+)\s*(?:#.*)?$", re.M)


def class_blocks(text: str) -> dict[str, str]:
    """{class: its indented body} of every ``cdef class`` in ``text``."""
    out = {}
    for block in re.split(r"^cdef class ", text, flags=re.M)[1:]:
        name, _, rest = block.partition("\n")
        body = re.split(r"^(?=\S)", rest, maxsplit=1, flags=re.M)[0]
        out[re.match(r"\w+", name).group(0)] = body
    return out


def declared(pxd: Path) -> dict[str, list[tuple[str | None, str]]]:
    """{class: [(visibility, attribute)]} of one .pxd."""
    return {name: [(vis or None, attr) for vis, attr in ATTR.findall(body)]
            for name, body in class_blocks(pxd.read_text()).items()}


# extension types a module defines that its .pxd does not declare yet (core.pxd says why)
UNDECLARED = {"core": {"RecordAccumulator", "NativeBuffer", "SmallReader"}}


def pxd_named(name: str) -> Path:
    return next(p for p in PXDS if p.name == name)


def sources(module: str) -> list[Path]:
    """The .pyx of ``module`` and the .pxi files it includes."""
    return [ROOT / "_native" / f"{module}.pyx", *sorted((ROOT / "_native" / module).glob("*.pxi"))]


def test_there_is_a_pxd_for_the_core_and_kafka_modules():
    assert {"core.pxd", "kafka.pxd"} <= {p.name for p in PXDS}
    assert declared(pxd_named("core.pxd"))["ProducerCore"], "the .pxd lists no attribute: the parser above is broken"
    assert ("public", "records") in declared(pxd_named("kafka.pxd"))["DecodedBatch"]


@pytest.mark.parametrize("pxd", PXDS, ids=lambda p: p.name)
def test_every_extension_type_is_declared_in_the_pxd(pxd):
    defined = {name for src in sources(pxd.stem) for name in class_blocks(src.read_text())}
    missing = defined - set(declared(pxd)) - UNDECLARED.get(pxd.stem, set())
    assert not missing, f"{sorted(missing)} defined in _native/{pxd.stem} but not declared in {pxd.name}"


def test_extension_types_without_a_pxd_module():
    """A native module with extension types has a .pxd (avro has none, so needs none)."""
    for pyx in sorted((ROOT / "_native").glob("*.pyx")):
        if any(class_blocks(src.read_text()) for src in sources(pyx.stem)):
            assert pyx.stem + ".pxd" in {p.name for p in PXDS}, f"{pyx.name} defines extension types: add its .pxd"


@pytest.mark.parametrize("pxd", PXDS, ids=lambda p: p.name)
def test_pxd_attributes_are_what_python_sees(pxd):
    import importlib

    module = importlib.import_module(f"arrowlog._native.{pxd.stem}")
    for cls_name, attrs in declared(pxd).items():
        cls = getattr(module, cls_name)
        for visibility, attr in attrs:
            descriptor = vars(cls).get(attr)
            if visibility is None:
                assert descriptor is None, f"{cls_name}.{attr} is private in {pxd.name} but visible from Python"
                continue
            assert descriptor is not None, f"{cls_name}.{attr} is cdef {visibility} in {pxd.name} but not visible"
            writable = hasattr(descriptor, "__set__") and type(descriptor).__name__ == "getset_descriptor"
            assert writable, f"{cls_name}.{attr}: not a C attribute descriptor ({type(descriptor).__name__})"


def test_readonly_attributes_refuse_writes_and_public_ones_take_them():
    from arrowlog._native import core

    slot = core.TopicSlot("t", None, 2)
    slot.keyed_only = True
    assert slot.keyed_only is True
    with pytest.raises(AttributeError):
        slot.max_record_bytes = 1


def test_decoded_batch_attributes_are_public_and_typed_by_the_pxd():
    """DecodedBatch's attributes (declared in kafka.pxd) are readable and writable from
    Python, with the C type's range: producer_epoch is an int16."""
    import pyarrow as pa

    from arrowlog._native import kafka
    from arrowlog.schema import ENVELOPE_SCHEMA

    records = pa.RecordBatch.from_pylist([{"offset": 0, "timestamp": 1_700_000_000_000, "key": b"k",
                                           "value": b"v"}], schema=ENVELOPE_SCHEMA)
    (decoded,) = kafka.decode_record_set(kafka.encode_batch(records, producer_id=7, producer_epoch=3))
    assert (decoded.producer_id, decoded.producer_epoch, decoded.record_count) == (7, 3, 1)
    assert decoded.records.column("value").to_pylist() == [b"v"]
    decoded.producer_epoch = 4
    assert decoded.producer_epoch == 4
    with pytest.raises(OverflowError):
        decoded.producer_epoch = 1 << 15


@pytest.mark.parametrize("pxd", PXDS, ids=lambda p: p.name)
def test_no_pxi_declares_a_pxd_attribute_again(pxd):
    classes = declared(pxd)
    for src in sources(pxd.stem):
        for name, body in class_blocks(src.read_text()).items():
            if name in classes:
                again = [attr for _, attr in ATTR.findall(body)]
                assert not again, f"{src.name}: {name} declares {again} again (they belong in {pxd.name} only)"
