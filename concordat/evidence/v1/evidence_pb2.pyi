from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChainHead(_message.Message):
    __slots__ = ("seq", "entry_hash", "commitment", "recorded_at")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entry_hash: str
    commitment: str
    recorded_at: str
    def __init__(self, seq: _Optional[int] = ..., entry_hash: _Optional[str] = ..., commitment: _Optional[str] = ..., recorded_at: _Optional[str] = ...) -> None: ...

class ListExchangeHashesRequest(_message.Message):
    __slots__ = ("after_exchange_id", "page_size")
    AFTER_EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    after_exchange_id: str
    page_size: int
    def __init__(self, after_exchange_id: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ExchangeEntry(_message.Message):
    __slots__ = ("exchange_id", "seq", "entry_hash")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    seq: int
    entry_hash: str
    def __init__(self, exchange_id: _Optional[str] = ..., seq: _Optional[int] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class ListExchangeHashesResponse(_message.Message):
    __slots__ = ("head", "entries", "next_after_exchange_id")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    head: ChainHead
    entries: _containers.RepeatedCompositeFieldContainer[ExchangeEntry]
    next_after_exchange_id: str
    def __init__(self, head: _Optional[_Union[ChainHead, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[ExchangeEntry, _Mapping]]] = ..., next_after_exchange_id: _Optional[str] = ...) -> None: ...

class GetWitnessedHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWitnessedHeadResponse(_message.Message):
    __slots__ = ("head",)
    HEAD_FIELD_NUMBER: _ClassVar[int]
    head: ChainHead
    def __init__(self, head: _Optional[_Union[ChainHead, _Mapping]] = ...) -> None: ...

class WitnessHeadRequest(_message.Message):
    __slots__ = ("head", "since_seq", "entry_hashes")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    SINCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASHES_FIELD_NUMBER: _ClassVar[int]
    head: ChainHead
    since_seq: int
    entry_hashes: bytes
    def __init__(self, head: _Optional[_Union[ChainHead, _Mapping]] = ..., since_seq: _Optional[int] = ..., entry_hashes: _Optional[bytes] = ...) -> None: ...

class WitnessHeadResponse(_message.Message):
    __slots__ = ("witness", "kid", "signed_at", "signature")
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    witness: str
    kid: str
    signed_at: str
    signature: str
    def __init__(self, witness: _Optional[str] = ..., kid: _Optional[str] = ..., signed_at: _Optional[str] = ..., signature: _Optional[str] = ...) -> None: ...
