from concordat.exchange.v1 import exchange_pb2 as _exchange_pb2
from concordat.transparency.v1 import transparency_pb2 as _transparency_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubjectSearchRequest(_message.Message):
    __slots__ = ("lookup_id", "subjects")
    LOOKUP_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    lookup_id: str
    subjects: _containers.RepeatedCompositeFieldContainer[_exchange_pb2.SubjectIdentifier]
    def __init__(self, lookup_id: _Optional[str] = ..., subjects: _Optional[_Iterable[_Union[_exchange_pb2.SubjectIdentifier, _Mapping]]] = ...) -> None: ...

class SubjectSearchResponse(_message.Message):
    __slots__ = ("exchanges", "withheld_exchange_ids")
    EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_EXCHANGE_IDS_FIELD_NUMBER: _ClassVar[int]
    exchanges: _containers.RepeatedCompositeFieldContainer[_transparency_pb2.ExchangeAboutYou]
    withheld_exchange_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exchanges: _Optional[_Iterable[_Union[_transparency_pb2.ExchangeAboutYou, _Mapping]]] = ..., withheld_exchange_ids: _Optional[_Iterable[str]] = ...) -> None: ...
