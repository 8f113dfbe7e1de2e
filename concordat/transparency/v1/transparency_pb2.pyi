import datetime

from concordat.exchange.v1 import exchange_pb2 as _exchange_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListMyExchangesRequest(_message.Message):
    __slots__ = ("subjects",)
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[_exchange_pb2.SubjectIdentifier]
    def __init__(self, subjects: _Optional[_Iterable[_Union[_exchange_pb2.SubjectIdentifier, _Mapping]]] = ...) -> None: ...

class ListMyExchangesResponse(_message.Message):
    __slots__ = ("exchanges", "unanswered_administrations")
    EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    UNANSWERED_ADMINISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    exchanges: _containers.RepeatedCompositeFieldContainer[ExchangeAboutYou]
    unanswered_administrations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exchanges: _Optional[_Iterable[_Union[ExchangeAboutYou, _Mapping]]] = ..., unanswered_administrations: _Optional[_Iterable[str]] = ...) -> None: ...

class ExchangeAboutYou(_message.Message):
    __slots__ = ("exchange_id", "at", "requester", "provider", "purpose", "record_type", "agreement", "fields_released")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    RECORD_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    at: _timestamp_pb2.Timestamp
    requester: Body
    provider: Body
    purpose: _exchange_pb2.Purpose
    record_type: _exchange_pb2.RecordType
    agreement: RegisterEntry
    fields_released: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exchange_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requester: _Optional[_Union[Body, _Mapping]] = ..., provider: _Optional[_Union[Body, _Mapping]] = ..., purpose: _Optional[_Union[_exchange_pb2.Purpose, str]] = ..., record_type: _Optional[_Union[_exchange_pb2.RecordType, str]] = ..., agreement: _Optional[_Union[RegisterEntry, _Mapping]] = ..., fields_released: _Optional[_Iterable[str]] = ...) -> None: ...

class Body(_message.Message):
    __slots__ = ("id", "name", "administration")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    administration: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., administration: _Optional[str] = ...) -> None: ...

class RegisterEntry(_message.Message):
    __slots__ = ("id", "name", "legal_power", "purpose", "start_date", "end_date", "review_date", "status", "contact")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEGAL_POWER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_DATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTACT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    legal_power: str
    purpose: str
    start_date: str
    end_date: str
    review_date: str
    status: str
    contact: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., legal_power: _Optional[str] = ..., purpose: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., review_date: _Optional[str] = ..., status: _Optional[str] = ..., contact: _Optional[str] = ...) -> None: ...
