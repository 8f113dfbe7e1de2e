"""Synthetic subject identifiers for demo and test data, with valid check digits."""

from __future__ import annotations

import random
from datetime import date

from gateway.identifiers import mod10_check_digit, mod11_check_digit

# Synthetic identifiers for demo and test data. NHS numbers come from the 999 test range,
# which is never issued. HMRC's example prefix QQ fails the format rules, so synthetic NINOs
# use the ZX prefix: well-formed, random, and tied to no record of ours about a real person.


def synthetic_nino(rng: random.Random) -> str:
    return f"ZX{rng.randrange(10**6):06d}{rng.choice('ABCD')}"


def _with_mod11(prefix: str, rng: random.Random, width: int) -> str:
    while True:
        first_nine = prefix + "".join(str(rng.randrange(10)) for _ in range(width))
        check = mod11_check_digit(first_nine)
        if check is not None:
            return first_nine + str(check)


def synthetic_nhs_number(rng: random.Random) -> str:
    return _with_mod11("999", rng, 6)


def synthetic_hc_number(rng: random.Random) -> str:
    while True:
        number = _with_mod11("3", rng, 8)
        if 320_000_001 <= int(number[:9]) <= 399_999_999:
            return number


def synthetic_chi_number(
    rng: random.Random, born: date, *, female: bool, luhn: bool = False
) -> str:
    while True:
        sex_digit = rng.choice("02468" if female else "13579")
        first_nine = born.strftime("%d%m%y") + f"{rng.randrange(100):02d}" + sex_digit
        if luhn:
            return first_nine + str(mod10_check_digit(first_nine))
        check = mod11_check_digit(first_nine)
        if check is not None:
            return first_nine + str(check)
