from concordat.exchange.v1 import exchange_pb2 as _exchange_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RelayRequest(_message.Message):
    __slots__ = ("exchange_id", "assertion", "request")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    assertion: str
    request: _exchange_pb2.GetRecordRequest
    def __init__(self, exchange_id: _Optional[str] = ..., assertion: _Optional[str] = ..., request: _Optional[_Union[_exchange_pb2.GetRecordRequest, _Mapping]] = ...) -> None: ...

class RelayResponse(_message.Message):
    __slots__ = ("response", "receipt")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    response: _exchange_pb2.GetRecordResponse
    receipt: str
    def __init__(self, response: _Optional[_Union[_exchange_pb2.GetRecordResponse, _Mapping]] = ..., receipt: _Optional[str] = ...) -> None: ...

class RelayStreamRequest(_message.Message):
    __slots__ = ("exchange_id", "assertion", "request", "accepts_encoded_batch")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_ENCODED_BATCH_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    assertion: str
    request: _exchange_pb2.StreamRecordsRequest
    accepts_encoded_batch: bool
    def __init__(self, exchange_id: _Optional[str] = ..., assertion: _Optional[str] = ..., request: _Optional[_Union[_exchange_pb2.StreamRecordsRequest, _Mapping]] = ..., accepts_encoded_batch: _Optional[bool] = ...) -> None: ...

class RelayStreamResponse(_message.Message):
    __slots__ = ("batch", "receipt", "encoded_batch")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ENCODED_BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _exchange_pb2.StreamRecordsResponse
    receipt: str
    encoded_batch: bytes
    def __init__(self, batch: _Optional[_Union[_exchange_pb2.StreamRecordsResponse, _Mapping]] = ..., receipt: _Optional[str] = ..., encoded_batch: _Optional[bytes] = ...) -> None: ...

class RelayedBatchView(_message.Message):
    __slots__ = ("records", "released_fields")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedScalarFieldContainer[bytes]
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, records: _Optional[_Iterable[bytes]] = ..., released_fields: _Optional[_Iterable[str]] = ...) -> None: ...
