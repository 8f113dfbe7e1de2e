"""A client for Concordat's exchange API, for departmental systems.

    from concordat_client import BirthRegistration, Client, Subject

    with Client("127.0.0.1:7401", ca_cert=Path("ca.pem"), token=my_identity_provider) as node:
        release = node.get_record(
            BirthRegistration,
            Subject("registration_id", "SC-B-1931-000037"),
            purpose="CIVIL_REGISTRATION",
            agreement_id="cr-dwp-nrs-births-2026",
            fields=["registration_id", "given_name", "date_of_birth"],
        )
    release.records[0].given_name

`AsyncClient` makes the same calls from asyncio code. Errors are the classes of
`concordat_client.errors`, one per reason a node gives; `docs/departmental-developers.md`
in the Concordat repository shows the same call from other languages.
"""

from concordat_client.aio import AsyncClient
from concordat_client.channel import NO_RETRIES, RetryPolicy, TokenProvider, command_token
from concordat_client.client import Client
from concordat_client.contracts.records.v1.records_pb2 import (
    BenefitAward,
    BirthRegistration,
    CouncilTaxAccount,
    DeathRegistration,
    HealthSummary,
    MarriageRegistration,
    Person,
)
from concordat_client.errors import (
    ConcordatClientError,
    DeadlineExceeded,
    ExchangeError,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    LocalDataInvalid,
    NoRoute,
    PeerRejected,
    PolicyDenied,
    RecordNotFound,
    ReleaseChanged,
    Unauthenticated,
    Unavailable,
)
from concordat_client.messages import (
    RECORD_CLASSES,
    Batch,
    Decisions,
    Obligation,
    Purpose,
    Release,
    Subject,
    SubjectKind,
    Withheld,
)

__all__ = [
    "NO_RETRIES",
    "RECORD_CLASSES",
    "AsyncClient",
    "Batch",
    "BenefitAward",
    "BirthRegistration",
    "Client",
    "ConcordatClientError",
    "CouncilTaxAccount",
    "DeadlineExceeded",
    "DeathRegistration",
    "Decisions",
    "ExchangeError",
    "HealthSummary",
    "IdempotencyConflict",
    "InternalError",
    "InvalidRequest",
    "LocalDataInvalid",
    "MarriageRegistration",
    "NoRoute",
    "Obligation",
    "PeerRejected",
    "Person",
    "PolicyDenied",
    "Purpose",
    "RecordNotFound",
    "Release",
    "ReleaseChanged",
    "RetryPolicy",
    "Subject",
    "SubjectKind",
    "TokenProvider",
    "Unauthenticated",
    "Unavailable",
    "Withheld",
    "command_token",
]
