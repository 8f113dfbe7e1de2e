from concordat_client.contracts.records.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Person(_message.Message):
    __slots__ = ("nino", "given_name", "family_name", "date_of_birth", "uprn", "address_line", "postcode")
    NINO_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    UPRN_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_LINE_FIELD_NUMBER: _ClassVar[int]
    POSTCODE_FIELD_NUMBER: _ClassVar[int]
    nino: str
    given_name: str
    family_name: str
    date_of_birth: str
    uprn: int
    address_line: str
    postcode: str
    def __init__(self, nino: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., uprn: _Optional[int] = ..., address_line: _Optional[str] = ..., postcode: _Optional[str] = ...) -> None: ...

class BirthRegistration(_message.Message):
    __slots__ = ("registration_id", "registration_district", "given_name", "family_name", "date_of_birth", "place_of_birth", "sex", "mother_family_name", "registered_on")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_DISTRICT_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    PLACE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    MOTHER_FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ON_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    registration_district: str
    given_name: str
    family_name: str
    date_of_birth: str
    place_of_birth: str
    sex: str
    mother_family_name: str
    registered_on: str
    def __init__(self, registration_id: _Optional[str] = ..., registration_district: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., place_of_birth: _Optional[str] = ..., sex: _Optional[str] = ..., mother_family_name: _Optional[str] = ..., registered_on: _Optional[str] = ...) -> None: ...

class DeathRegistration(_message.Message):
    __slots__ = ("registration_id", "registration_district", "nino", "given_name", "family_name", "date_of_death", "place_of_death", "cause_of_death", "registered_on")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_DISTRICT_FIELD_NUMBER: _ClassVar[int]
    NINO_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_DEATH_FIELD_NUMBER: _ClassVar[int]
    PLACE_OF_DEATH_FIELD_NUMBER: _ClassVar[int]
    CAUSE_OF_DEATH_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ON_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    registration_district: str
    nino: str
    given_name: str
    family_name: str
    date_of_death: str
    place_of_death: str
    cause_of_death: str
    registered_on: str
    def __init__(self, registration_id: _Optional[str] = ..., registration_district: _Optional[str] = ..., nino: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., date_of_death: _Optional[str] = ..., place_of_death: _Optional[str] = ..., cause_of_death: _Optional[str] = ..., registered_on: _Optional[str] = ...) -> None: ...

class MarriageRegistration(_message.Message):
    __slots__ = ("registration_id", "registration_district", "kind", "party_one_name", "party_two_name", "date_of_ceremony", "place_of_ceremony", "registered_on")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_DISTRICT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARTY_ONE_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTY_TWO_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_CEREMONY_FIELD_NUMBER: _ClassVar[int]
    PLACE_OF_CEREMONY_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ON_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    registration_district: str
    kind: str
    party_one_name: str
    party_two_name: str
    date_of_ceremony: str
    place_of_ceremony: str
    registered_on: str
    def __init__(self, registration_id: _Optional[str] = ..., registration_district: _Optional[str] = ..., kind: _Optional[str] = ..., party_one_name: _Optional[str] = ..., party_two_name: _Optional[str] = ..., date_of_ceremony: _Optional[str] = ..., place_of_ceremony: _Optional[str] = ..., registered_on: _Optional[str] = ...) -> None: ...

class BenefitAward(_message.Message):
    __slots__ = ("award_id", "nino", "benefit", "weekly_amount_pence", "start_date", "end_date", "status", "administration")
    AWARD_ID_FIELD_NUMBER: _ClassVar[int]
    NINO_FIELD_NUMBER: _ClassVar[int]
    BENEFIT_FIELD_NUMBER: _ClassVar[int]
    WEEKLY_AMOUNT_PENCE_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADMINISTRATION_FIELD_NUMBER: _ClassVar[int]
    award_id: str
    nino: str
    benefit: str
    weekly_amount_pence: int
    start_date: str
    end_date: str
    status: str
    administration: str
    def __init__(self, award_id: _Optional[str] = ..., nino: _Optional[str] = ..., benefit: _Optional[str] = ..., weekly_amount_pence: _Optional[int] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., status: _Optional[str] = ..., administration: _Optional[str] = ...) -> None: ...

class CouncilTaxAccount(_message.Message):
    __slots__ = ("account_ref", "uprn", "liable_nino", "liable_name", "band", "annual_charge_pence", "arrears_pence", "local_authority")
    ACCOUNT_REF_FIELD_NUMBER: _ClassVar[int]
    UPRN_FIELD_NUMBER: _ClassVar[int]
    LIABLE_NINO_FIELD_NUMBER: _ClassVar[int]
    LIABLE_NAME_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    ANNUAL_CHARGE_PENCE_FIELD_NUMBER: _ClassVar[int]
    ARREARS_PENCE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    account_ref: str
    uprn: int
    liable_nino: str
    liable_name: str
    band: str
    annual_charge_pence: int
    arrears_pence: int
    local_authority: str
    def __init__(self, account_ref: _Optional[str] = ..., uprn: _Optional[int] = ..., liable_nino: _Optional[str] = ..., liable_name: _Optional[str] = ..., band: _Optional[str] = ..., annual_charge_pence: _Optional[int] = ..., arrears_pence: _Optional[int] = ..., local_authority: _Optional[str] = ...) -> None: ...

class HealthSummary(_message.Message):
    __slots__ = ("nhs_number", "chi_number", "hc_number", "given_name", "family_name", "date_of_birth", "gp_practice", "conditions", "medications", "allergies", "last_updated")
    NHS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHI_NUMBER_FIELD_NUMBER: _ClassVar[int]
    HC_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    GP_PRACTICE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    MEDICATIONS_FIELD_NUMBER: _ClassVar[int]
    ALLERGIES_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_FIELD_NUMBER: _ClassVar[int]
    nhs_number: str
    chi_number: str
    hc_number: str
    given_name: str
    family_name: str
    date_of_birth: str
    gp_practice: str
    conditions: _containers.RepeatedScalarFieldContainer[str]
    medications: _containers.RepeatedScalarFieldContainer[str]
    allergies: _containers.RepeatedScalarFieldContainer[str]
    last_updated: str
    def __init__(self, nhs_number: _Optional[str] = ..., chi_number: _Optional[str] = ..., hc_number: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., gp_practice: _Optional[str] = ..., conditions: _Optional[_Iterable[str]] = ..., medications: _Optional[_Iterable[str]] = ..., allergies: _Optional[_Iterable[str]] = ..., last_updated: _Optional[str] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("person", "birth_registration", "death_registration", "marriage_registration", "benefit_award", "council_tax_account", "health_summary", "pseudonym")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    BIRTH_REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    DEATH_REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    MARRIAGE_REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    BENEFIT_AWARD_FIELD_NUMBER: _ClassVar[int]
    COUNCIL_TAX_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    person: Person
    birth_registration: BirthRegistration
    death_registration: DeathRegistration
    marriage_registration: MarriageRegistration
    benefit_award: BenefitAward
    council_tax_account: CouncilTaxAccount
    health_summary: HealthSummary
    pseudonym: str
    def __init__(self, person: _Optional[_Union[Person, _Mapping]] = ..., birth_registration: _Optional[_Union[BirthRegistration, _Mapping]] = ..., death_registration: _Optional[_Union[DeathRegistration, _Mapping]] = ..., marriage_registration: _Optional[_Union[MarriageRegistration, _Mapping]] = ..., benefit_award: _Optional[_Union[BenefitAward, _Mapping]] = ..., council_tax_account: _Optional[_Union[CouncilTaxAccount, _Mapping]] = ..., health_summary: _Optional[_Union[HealthSummary, _Mapping]] = ..., pseudonym: _Optional[str] = ...) -> None: ...
