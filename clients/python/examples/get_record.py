"""GetRecord with the Python kit: DWP, at Whitehall, asks for a Scottish birth registration.

With `make up` running, from the checkout: `.venv/bin/python clients/python/examples/get_record.py`.
CONCORDAT_TARGET, CONCORDAT_CA_CERT and CONCORDAT_TOKEN_COMMAND name another node, its CA and
the command that prints a fresh token.
"""

import os
from pathlib import Path

from concordat_client import BirthRegistration, Client, ExchangeError, Subject, command_token

target = os.environ.get("CONCORDAT_TARGET", "127.0.0.1:7401")
ca_cert = Path(os.environ.get("CONCORDAT_CA_CERT", ".state/whitehall/ca.pem"))
# Tokens are single use: the client asks for a fresh one for every attempt of every call.
token = command_token(
    os.environ.get(
        "CONCORDAT_TOKEN_COMMAND",
        ".venv/bin/concordat token --node whitehall --organisation dwp --system my-system",
    )
)

with Client(target, ca_cert=ca_cert, token=token) as whitehall:
    try:
        release = whitehall.get_record(
            BirthRegistration,
            Subject("registration_id", "SC-B-1931-000037"),
            purpose="CIVIL_REGISTRATION",
            agreement_id="cr-dwp-nrs-births-2026",
            fields=["registration_id", "given_name", "date_of_birth"],
        )
    except ExchangeError as error:  # PolicyDenied, Unavailable, ...: one class per reason
        raise SystemExit(f"{type(error).__name__}: {error}") from error

birth = release.records[0]
print(f"{birth.registration_id}: {birth.given_name}, born {birth.date_of_birth}")
print(f"from {release.provider_node}, exchange {release.exchange_id}")
print(f"released: {', '.join(release.decisions.released_fields)}")
for obligation in release.decisions.obligations:
    print(f"obligation: {obligation.code} {dict(obligation.parameters)}")
