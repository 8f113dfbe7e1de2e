from concordat_client.contracts.records.v1 import records_pb2 as _records_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_TYPE_UNSPECIFIED: _ClassVar[RecordType]
    RECORD_TYPE_PERSON: _ClassVar[RecordType]
    RECORD_TYPE_BIRTH_REGISTRATION: _ClassVar[RecordType]
    RECORD_TYPE_DEATH_REGISTRATION: _ClassVar[RecordType]
    RECORD_TYPE_MARRIAGE_REGISTRATION: _ClassVar[RecordType]
    RECORD_TYPE_BENEFIT_AWARD: _ClassVar[RecordType]
    RECORD_TYPE_COUNCIL_TAX_ACCOUNT: _ClassVar[RecordType]
    RECORD_TYPE_HEALTH_SUMMARY: _ClassVar[RecordType]

class Purpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PURPOSE_UNSPECIFIED: _ClassVar[Purpose]
    PURPOSE_PUBLIC_SERVICE_DELIVERY: _ClassVar[Purpose]
    PURPOSE_CIVIL_REGISTRATION: _ClassVar[Purpose]
    PURPOSE_DEBT: _ClassVar[Purpose]
    PURPOSE_FRAUD: _ClassVar[Purpose]
    PURPOSE_RESEARCH: _ClassVar[Purpose]
    PURPOSE_STATISTICS: _ClassVar[Purpose]
RECORD_TYPE_UNSPECIFIED: RecordType
RECORD_TYPE_PERSON: RecordType
RECORD_TYPE_BIRTH_REGISTRATION: RecordType
RECORD_TYPE_DEATH_REGISTRATION: RecordType
RECORD_TYPE_MARRIAGE_REGISTRATION: RecordType
RECORD_TYPE_BENEFIT_AWARD: RecordType
RECORD_TYPE_COUNCIL_TAX_ACCOUNT: RecordType
RECORD_TYPE_HEALTH_SUMMARY: RecordType
PURPOSE_UNSPECIFIED: Purpose
PURPOSE_PUBLIC_SERVICE_DELIVERY: Purpose
PURPOSE_CIVIL_REGISTRATION: Purpose
PURPOSE_DEBT: Purpose
PURPOSE_FRAUD: Purpose
PURPOSE_RESEARCH: Purpose
PURPOSE_STATISTICS: Purpose

class SubjectIdentifier(_message.Message):
    __slots__ = ("nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id")
    NINO_FIELD_NUMBER: _ClassVar[int]
    NHS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHI_NUMBER_FIELD_NUMBER: _ClassVar[int]
    HC_NUMBER_FIELD_NUMBER: _ClassVar[int]
    UPRN_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    nino: str
    nhs_number: str
    chi_number: str
    hc_number: str
    uprn: int
    registration_id: str
    def __init__(self, nino: _Optional[str] = ..., nhs_number: _Optional[str] = ..., chi_number: _Optional[str] = ..., hc_number: _Optional[str] = ..., uprn: _Optional[int] = ..., registration_id: _Optional[str] = ...) -> None: ...

class Obligation(_message.Message):
    __slots__ = ("code", "description", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    code: str
    description: str
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WithheldField(_message.Message):
    __slots__ = ("field", "rule")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    field: str
    rule: str
    def __init__(self, field: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("idempotency_key", "record_type", "subject", "purpose", "agreement_id", "field_mask", "case_reference", "provider_node")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECORD_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    CASE_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NODE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    record_type: RecordType
    subject: SubjectIdentifier
    purpose: Purpose
    agreement_id: str
    field_mask: _field_mask_pb2.FieldMask
    case_reference: str
    provider_node: str
    def __init__(self, idempotency_key: _Optional[str] = ..., record_type: _Optional[_Union[RecordType, str]] = ..., subject: _Optional[_Union[SubjectIdentifier, _Mapping]] = ..., purpose: _Optional[_Union[Purpose, str]] = ..., agreement_id: _Optional[str] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., case_reference: _Optional[str] = ..., provider_node: _Optional[str] = ...) -> None: ...

class GetRecordResponse(_message.Message):
    __slots__ = ("exchange_id", "records", "released_fields", "obligations", "egress_decision_id", "ingress_decision_id", "provider_node", "withheld")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    INGRESS_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NODE_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    records: _containers.RepeatedCompositeFieldContainer[_records_pb2.Record]
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    obligations: _containers.RepeatedCompositeFieldContainer[Obligation]
    egress_decision_id: str
    ingress_decision_id: str
    provider_node: str
    withheld: _containers.RepeatedCompositeFieldContainer[WithheldField]
    def __init__(self, exchange_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_records_pb2.Record, _Mapping]]] = ..., released_fields: _Optional[_Iterable[str]] = ..., obligations: _Optional[_Iterable[_Union[Obligation, _Mapping]]] = ..., egress_decision_id: _Optional[str] = ..., ingress_decision_id: _Optional[str] = ..., provider_node: _Optional[str] = ..., withheld: _Optional[_Iterable[_Union[WithheldField, _Mapping]]] = ...) -> None: ...

class StreamRecordsRequest(_message.Message):
    __slots__ = ("idempotency_key", "record_type", "subjects", "purpose", "agreement_id", "field_mask", "case_reference", "batch_size", "resume_token", "provider_node")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECORD_TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_MASK_FIELD_NUMBER: _ClassVar[int]
    CASE_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NODE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    record_type: RecordType
    subjects: _containers.RepeatedCompositeFieldContainer[SubjectIdentifier]
    purpose: Purpose
    agreement_id: str
    field_mask: _field_mask_pb2.FieldMask
    case_reference: str
    batch_size: int
    resume_token: str
    provider_node: str
    def __init__(self, idempotency_key: _Optional[str] = ..., record_type: _Optional[_Union[RecordType, str]] = ..., subjects: _Optional[_Iterable[_Union[SubjectIdentifier, _Mapping]]] = ..., purpose: _Optional[_Union[Purpose, str]] = ..., agreement_id: _Optional[str] = ..., field_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., case_reference: _Optional[str] = ..., batch_size: _Optional[int] = ..., resume_token: _Optional[str] = ..., provider_node: _Optional[str] = ...) -> None: ...

class StreamRecordsResponse(_message.Message):
    __slots__ = ("exchange_id", "records", "released_fields", "obligations", "egress_decision_id", "ingress_decision_id", "provider_node", "resume_token", "withheld")
    EXCHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    INGRESS_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NODE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    exchange_id: str
    records: _containers.RepeatedCompositeFieldContainer[_records_pb2.Record]
    released_fields: _containers.RepeatedScalarFieldContainer[str]
    obligations: _containers.RepeatedCompositeFieldContainer[Obligation]
    egress_decision_id: str
    ingress_decision_id: str
    provider_node: str
    resume_token: str
    withheld: _containers.RepeatedCompositeFieldContainer[WithheldField]
    def __init__(self, exchange_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_records_pb2.Record, _Mapping]]] = ..., released_fields: _Optional[_Iterable[str]] = ..., obligations: _Optional[_Iterable[_Union[Obligation, _Mapping]]] = ..., egress_decision_id: _Optional[str] = ..., ingress_decision_id: _Optional[str] = ..., provider_node: _Optional[str] = ..., resume_token: _Optional[str] = ..., withheld: _Optional[_Iterable[_Union[WithheldField, _Mapping]]] = ...) -> None: ...
