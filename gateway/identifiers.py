"""Subject identifiers: validation at the edge (synthetic ones are made in gateway/dev).

The rules are those of docs DOMAIN.md: NINO format and never-issued prefixes; modulus 11 for
NHS, CHI and Health and Care numbers; CHI numbers also accepted with the newer modulus 10
check digit; UPRN up to 12 digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any, TypeGuard

from gateway.domain import Subject, SubjectKind
from gateway.errors import InvalidRequest

# Patterns are matched whole (`fullmatch`): `$` would also accept a trailing newline.
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]", re.ASCII)
_NINO_NEVER_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_TEN_DIGITS = re.compile(r"[0-9]{10}", re.ASCII)
_REGISTRATION_ID = re.compile(r"[A-Z]{2,4}-[BDM]-[0-9]{4}-[0-9]{6}", re.ASCII)
# The longest spelling worth normalising: a 10-digit number written with spaces or hyphens.
_MAX_RAW_LENGTH = 32


def mod11_check_digit(first_nine: str) -> int | None:
    """The NHS modulus 11 check digit, or None when no valid digit exists (remainder 10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def mod10_check_digit(first_nine: str) -> int:
    """Luhn check digit over the first nine digits (the newer CHI numbers)."""
    total = 0
    for position, digit in enumerate(reversed(first_nine)):
        value = int(digit)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return (10 - total % 10) % 10


def normalise(kind: str, raw: str) -> str:
    """The one normalisation before an identifier is checked (docs/departmental-developers).

    Only the spellings printed on cards and letters are accepted: ASCII spaces anywhere, and
    for the numbers ASCII hyphens between digit groups (`943 476 5919`, `943-476-5919`,
    `AB 12 34 56 C`); letters are upper-cased. Nothing else is removed: a tab, newline, NUL,
    full-width digit or any other character makes the identifier malformed, so the value
    that policy, the local system and the subject hash see is exactly the one checked.
    """
    if kind == "registration_id":
        return raw.replace(" ", "").upper()
    value = raw.replace(" ", "")
    if kind in ("nhs_number", "chi_number", "hc_number"):
        value = value.replace("-", "")
    return value.upper()


def _checked_length(raw: str, what: str) -> str:
    if len(raw) > _MAX_RAW_LENGTH:
        raise InvalidRequest(f"subject.{what} is too long to be an identifier")
    # Checked before normalising: str.upper() turns some other letters into ASCII ones
    # (U+017F long s into S, U+00DF sharp s into SS), which would let them pass.
    if not raw.isascii():
        raise InvalidRequest(f"subject.{what} must be written in ASCII")
    return raw


def validate_nino(raw: str) -> str:
    nino = normalise("nino", _checked_length(raw, "nino"))
    if not _NINO.fullmatch(nino) or nino[:2] in _NINO_NEVER_ISSUED:
        raise InvalidRequest("subject.nino is not a well-formed National Insurance number")
    return nino


def _ten_digits(raw: str, what: str) -> str:
    digits = normalise(what, _checked_length(raw, what))
    if not _TEN_DIGITS.fullmatch(digits):
        raise InvalidRequest(f"subject.{what} must be 10 digits")
    return digits


def _validate_mod11(raw: str, what: str) -> str:
    digits = _ten_digits(raw, what)
    if mod11_check_digit(digits[:9]) != int(digits[9]):
        raise InvalidRequest(f"subject.{what} fails its modulus 11 check digit")
    return digits


def validate_nhs_number(raw: str) -> str:
    return _validate_mod11(raw, "nhs_number")


def validate_chi_number(raw: str) -> str:
    digits = _ten_digits(raw, "chi_number")
    if not _is_plausible_birth_date(digits[:6]):
        raise InvalidRequest("subject.chi_number does not start with a valid date of birth")
    check = int(digits[9])
    if check not in (mod11_check_digit(digits[:9]), mod10_check_digit(digits[:9])):
        raise InvalidRequest("subject.chi_number fails both its modulus 11 and modulus 10 checks")
    return digits


def validate_hc_number(raw: str) -> str:
    digits = _validate_mod11(raw, "hc_number")
    if not 320_000_001 <= int(digits[:9]) <= 399_999_999:
        raise InvalidRequest("subject.hc_number is outside the Health and Care number range")
    return digits


def validate_uprn(raw: int) -> str:
    if not 0 < raw < 10**12:
        raise InvalidRequest("subject.uprn must be a positive number of at most 12 digits")
    return str(raw)


def validate_registration_id(raw: str) -> str:
    value = normalise("registration_id", _checked_length(raw, "registration_id"))
    if not _REGISTRATION_ID.fullmatch(value):
        raise InvalidRequest(
            "subject.registration_id must look like EW-B-2019-000123 "
            "(authority, B/D/M, year, six digits)"
        )
    return value


# Each validator takes its proto field's type: a UPRN is a number, the others are text.
_VALIDATORS: dict[SubjectKind, Callable[[Any], str]] = {
    "nino": validate_nino,
    "nhs_number": validate_nhs_number,
    "chi_number": validate_chi_number,
    "hc_number": validate_hc_number,
    "uprn": validate_uprn,
    "registration_id": validate_registration_id,
}


def validate_subject(kind: str, raw: str | int) -> Subject:
    """Returns the normalised subject, or raises InvalidRequest naming what is wrong."""
    if not _is_subject_kind(kind):
        raise InvalidRequest("subject must carry exactly one identifier")
    return Subject(kind=kind, value=_VALIDATORS[kind](raw))


def normalise_held(kind: str, value: str) -> str:
    """A subject identifier read from a local system, in the form `validate_subject` gives.

    Not a check: a local system's value is what it holds. Only the spelling is made the same
    as a caller's, so a research pseudonym is the same whichever way the subject reached us.
    """
    return normalise(kind, value.strip())


def _is_subject_kind(kind: str) -> TypeGuard[SubjectKind]:
    return kind in _VALIDATORS


def _is_plausible_birth_date(ddmmyy: str) -> bool:
    day, month, year = int(ddmmyy[:2]), int(ddmmyy[2:4]), int(ddmmyy[4:6])
    for century in (1900, 2000):
        try:
            date(century + year, month, day)
        except ValueError:
            continue
        return True
    return False
