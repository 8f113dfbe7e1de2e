"""Responses handed to gRPC already in wire form.

A requesting node relays most batches of a bulk extract exactly as the providing node signed
them. Parsing each batch into a message only for gRPC to serialise it again cost the node more
than everything else it does per record, so such a batch travels as its bytes, wrapped in
`EncodedResponse`; the server's serializer for StreamRecords sends the bytes as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

_M = TypeVar("_M")


def field_bytes(number: int, value: str) -> bytes:
    """One length-delimited field (a string) in protobuf wire form.

    Appended to an encoded message it replaces that field's value, since a parser keeps the
    last value it reads for a singular field.
    """
    data = value.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response message in wire form, sent by gRPC without being parsed or copied."""

    data: bytes

    def parsed(self, message_class: type[_M]) -> _M:
        """The message these bytes encode (for tests and tools; the node never needs it)."""
        return message_class.FromString(self.data)  # type: ignore[attr-defined, no-any-return]


def serialize_response(response: Any) -> bytes:
    """gRPC's response serializer for a method whose handler may yield EncodedResponse."""
    if type(response) is EncodedResponse:
        return response.data
    return response.SerializeToString()  # type: ignore[no-any-return]
