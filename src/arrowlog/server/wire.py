"""Kafka protocol primitives: a read cursor and a growable write buffer.

Classic (non-flexible) versions length-prefix strings with int16, bytes and
arrays with int32, -1 meaning null. Flexible versions (KIP-482) use
unsigned varints holding length+1 (0 meaning null) and end every struct with
a tagged-field buffer: uvarint count, then per field uvarint tag, uvarint
size, bytes. All fixed-width integers are big-endian.
"""

from __future__ import annotations

import builtins
import struct
import uuid

from arrowlog.errors import ArrowlogError

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")

ZERO_UUID = bytes(16)


class ProtocolError(ArrowlogError, ValueError):
    """A request that cannot be parsed or breaks a limit; the connection that sent
    it is closed."""


class Reader:
    """A bounds-checked cursor over one request frame (a memoryview, no copies).

    ``max_elements`` bounds the array elements of the whole frame (all arrays,
    nested ones included), so a small request cannot make the decoder or the
    handler walk millions of items."""

    __slots__ = ("buf", "pos", "max_elements", "elements")

    def __init__(self, buf, pos: int = 0, max_elements: int | None = None):
        self.buf = memoryview(buf)
        self.pos = pos
        self.max_elements = max_elements
        self.elements = 0

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def _fixed(self, s: struct.Struct):
        pos = self.pos
        if pos + s.size > len(self.buf):
            raise ProtocolError("request is truncated")
        self.pos = pos + s.size
        return s.unpack_from(self.buf, pos)[0]

    def int8(self) -> int:
        return self._fixed(_I8)

    def int16(self) -> int:
        return self._fixed(_I16)

    def int32(self) -> int:
        return self._fixed(_I32)

    def uint32(self) -> int:
        return self._fixed(_U32)

    def int64(self) -> int:
        return self._fixed(_I64)

    def float64(self) -> float:
        return self._fixed(_F64)

    def bool(self) -> bool:
        return self._fixed(_I8) != 0

    def uvarint(self) -> int:
        value = shift = 0
        buf = self.buf
        while True:
            if self.pos >= len(buf) or shift > 63:
                raise ProtocolError("bad unsigned varint")
            b = buf[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def raw(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError("request is truncated")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def length(self, flexible: builtins.bool, wide: builtins.bool) -> int:
        """A length prefix; -1 for null."""
        if flexible:
            return self.uvarint() - 1
        return self.int32() if wide else self.int16()

    def array_length(self, flexible: builtins.bool) -> int:
        """An array's element count (-1 for null), checked against the bytes left
        (every element takes at least one) and the frame's element budget."""
        n = self.length(flexible, True)
        if n > self.remaining():
            raise ProtocolError(f"array of {n} elements is longer than the request")
        if n > 0:
            self._count(n)
        return n

    def _count(self, n: int) -> None:
        if self.max_elements is not None:
            self.elements += n
            if self.elements > self.max_elements:
                raise ProtocolError(f"request has more than {self.max_elements} array elements "
                                    "(the server's max_request_elements limit): split it")

    def string(self, flexible: builtins.bool) -> str | None:
        n = self.length(flexible, False)
        if n < 0:
            return None
        try:
            return str(self.raw(n), "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None

    def bytes(self, flexible: builtins.bool) -> memoryview | None:
        n = self.length(flexible, True)
        return None if n < 0 else self.raw(n)

    def uuid(self) -> builtins.bytes:
        return bytes(self.raw(16))

    def skip_tags(self) -> None:
        n = self.uvarint()
        if n:
            if n > self.remaining():  # every tagged field takes at least two bytes
                raise ProtocolError(f"{n} tagged fields are longer than the request")
            self._count(n)
            for _ in range(n):
                self.uvarint()
                self.raw(self.uvarint())


class Encoded(bytes):
    """A response body encoded once and kept (everything after the response header):
    encode_response writes it as it is (ApiVersions, the same bytes for every client)."""

    __slots__ = ()


class Writer:
    """A growable response buffer.

    With ``gather=True`` the stored record batches handed to ``records`` are not
    copied into ``buf``: they are kept, in order, between the pieces of ``buf``
    written around them, and ``pieces()`` gives the whole output as a list
    (a Fetch response is sent straight from the encode cache's bytes)."""

    __slots__ = ("buf", "_pieces", "_size")

    def __init__(self, gather: builtins.bool = False):
        self.buf = bytearray()
        self._pieces: list | None = [] if gather else None
        self._size = 0  # bytes in _pieces

    def frame(self) -> list:
        """Everything written, in order, as bytes-like pieces, with the int32 at the
        start (written as a placeholder) set to the size of what follows it."""
        size = (self._size + len(self.buf) - 4).to_bytes(4, "big")
        pieces = self._pieces or []
        if not pieces:
            self.buf[0:4] = size
            return [bytes(self.buf)]
        pieces[0] = size + pieces[0][4:]
        return pieces + [bytes(self.buf)] if self.buf else pieces

    def int8(self, v: int) -> None:
        self.buf += _I8.pack(v)

    def int16(self, v: int) -> None:
        self.buf += _I16.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _I32.pack(v)

    def uint32(self, v: int) -> None:
        self.buf += _U32.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _I64.pack(v)

    def float64(self, v: float) -> None:
        self.buf += _F64.pack(v)

    def bool(self, v) -> None:
        self.buf += b"\x01" if v else b"\x00"

    def uvarint(self, v: int) -> None:
        buf = self.buf
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)

    def length(self, n: int, flexible: builtins.bool, wide: builtins.bool) -> None:
        if flexible:
            self.uvarint(n + 1)
        elif wide:
            self.int32(n)
        else:
            self.int16(n)

    def string(self, v: str | None, flexible: builtins.bool) -> None:
        if v is None:
            self.length(-1, flexible, False)
            return
        data = v.encode("utf-8")
        self.length(len(data), flexible, False)
        self.buf += data

    def bytes(self, v, flexible: builtins.bool) -> None:
        if v is None:
            self.length(-1, flexible, True)
            return
        self.length(len(v), flexible, True)
        self.buf += v

    def records(self, parts, flexible: builtins.bool) -> None:
        """Records as one bytes-like or a list of them (stored batches, not joined first)."""
        if isinstance(parts, (list, tuple)):
            self.length(sum(len(p) for p in parts), flexible, True)
            if self._pieces is not None and parts:
                self._pieces.append(bytes(self.buf))
                self._size += len(self.buf) + sum(len(p) for p in parts)
                self._pieces.extend(parts)
                self.buf = bytearray()
                return
            for p in parts:
                self.buf += p
        else:
            self.bytes(parts if parts is not None else b"", flexible)

    def uuid(self, v) -> None:
        if isinstance(v, uuid.UUID):
            v = v.bytes
        self.buf += v if v else ZERO_UUID

    def empty_tags(self) -> None:
        self.buf.append(0)
