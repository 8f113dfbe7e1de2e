"""Running targets without atheris: replaying files, and a short mutation run for the tests.

The mutations are libFuzzer's simplest ones (flip, insert, erase, copy, splice, insert a
dictionary token), drawn from a seeded generator: a short run is the same every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from fuzz import DICTIONARIES
from fuzz.seeds import CORPUS

DICTIONARY_FOLDER = Path(__file__).resolve().parent / "dictionaries"


def corpus(target: str, root: Path = CORPUS) -> list[tuple[str, bytes]]:
    """The target's corpus files as (name, bytes), in name order."""
    folder = root / target
    return [(path.name, path.read_bytes()) for path in sorted(folder.iterdir()) if path.is_file()]


def dictionary(target: str) -> list[bytes]:
    """The tokens of fuzz/dictionaries/<target>.dict (libFuzzer's format), if it has one."""
    if target not in DICTIONARIES:
        return []
    path = DICTIONARY_FOLDER / DICTIONARIES[target]
    tokens = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        quoted = line[line.index('"') + 1 : line.rindex('"')]
        tokens.append(quoted.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    return tokens


def _mutate(
    data: bytes, rng: random.Random, pool: Sequence[bytes], tokens: Sequence[bytes]
) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        at = rng.randint(0, len(buffer))
        if choice == 0 and buffer:
            buffer[min(at, len(buffer) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buffer[at:at] = bytes([rng.randrange(256)])
        elif choice == 2 and buffer:
            del buffer[at : at + rng.randint(1, 8)]
        elif choice == 3 and buffer:
            start = rng.randrange(len(buffer))
            buffer[at:at] = buffer[start : start + rng.randint(1, 16)]
        elif choice == 4:
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            buffer[at:] = other[start:]
        elif choice == 5 and tokens:
            buffer[at:at] = rng.choice(tokens)
        elif choice == 6 and buffer:
            buffer[min(at, len(buffer) - 1)] = rng.choice((0, 0x0A, 0x20, 0x2D, 0x7F, 0xFF))
    return bytes(buffer)


def mutants(
    seeds: Sequence[bytes], count: int, *, seed: int = 0, tokens: Sequence[bytes] = ()
) -> Iterator[bytes]:
    """`count` inputs, each one to four mutations of a seed; the same ones for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible mutations, not secrets
    pool = list(seeds) or [b""]
    for _ in range(count):
        yield _mutate(rng.choice(pool), rng, pool, tokens)
