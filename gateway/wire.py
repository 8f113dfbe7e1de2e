"""Responses handed to gRPC already in wire form.

A requesting node relays most batches of a bulk extract exactly as the providing node signed
them. Parsing each batch into a message only for gRPC to serialise it again cost the node more
than everything else it does per record, so such a batch travels as its bytes, wrapped in
`EncodedResponse`; the server's serializer for StreamRecords sends the bytes as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from google.protobuf.message import Message


# Final, so that `type(response) is EncodedResponse` (cheaper than isinstance) narrows for mypy.
@final
@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response message in wire form, sent by gRPC without being parsed or copied."""

    data: bytes


def serialize_response(response: Message | EncodedResponse) -> bytes:
    """gRPC's response serializer for a method whose handler may yield EncodedResponse."""
    if type(response) is EncodedResponse:
        return response.data
    return response.SerializeToString()
