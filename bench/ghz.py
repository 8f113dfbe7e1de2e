"""ghz, an independent gRPC load generator (Go, grpc-go), driving an Endpoint's GetRecord.

It confirms the figures of the Python generator (bench/load.py): the same request bytes, the
same TLS and CA, one connection, the same concurrency and warm-up, and a fresh single-use
token for every call, minted before the run as the Python generator mints its own. ghz reads
request metadata from a JSON template executed for each call; it has no list of metadata to
take one from per call, so the tokens go into the environment ghz starts with, one variable
per request number, and the template reads the one for its call:

    {"authorization": "Bearer {{env (printf `CONCORDAT_BENCH_TOKEN_%d` .RequestNumber)}}"}

ghz numbers its requests 0..n-1 (its warm-up, `--skipFirst`, included), so each token is
sent once and verified as any other: replay protection stays on. Linux caps what an exec may
carry at a quarter of the stack limit and at 6 MiB in all, so a run carries at most
MAX_TOKENS tokens; the stack limit is raised, for the moment ghz is started, to what its
environment needs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.children import REPO_ROOT
from bench.clients import Endpoint
from bench.load import percentile

PINNED_VERSION = "v0.120.0"
METHOD = "concordat.exchange.v1.ExchangeService/GetRecord"
VARIABLE_PREFIX = "CONCORDAT_BENCH_TOKEN_"
METADATA = '{"authorization": "Bearer {{env (printf `' + VARIABLE_PREFIX + '%d` .RequestNumber)}}"}'
# About 560 bytes a token and its variable name: 5,200 take 2.9 MiB of the 6 MiB an exec may carry.
MAX_TOKENS = 5_200
_EXEC_CEILING = 6 * 1024 * 1024
_STAMP = re.compile(
    r"(?P<whole>.+T\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)"
)


class GhzMissing(RuntimeError):
    """The pinned ghz is not built; `scripts/setup_services.sh tools` builds it."""


class GhzFailed(RuntimeError):
    """ghz did not run, or a call it made was not answered OK."""


def ghz_binary() -> Path:
    """The ghz the bench uses: `$CONCORDAT_GHZ`, the pinned build in .tools/bin, or PATH's."""
    configured = os.environ.get("CONCORDAT_GHZ")
    candidate = Path(configured) if configured else REPO_ROOT / ".tools" / "bin" / "ghz"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("ghz")
    if found and not configured:
        return Path(found)
    raise GhzMissing(
        f"no ghz at {candidate}; run scripts/setup_services.sh tools (it builds ghz "
        f"{PINNED_VERSION} with go install)"
    )


def drive(
    endpoint: Endpoint, *, concurrency: int, calls: int, warmup: int, workdir: Path
) -> dict[str, float]:
    """`calls` timed GetRecords after `warmup` untimed: calls/s and p50/p99 in ms, as load.drive."""
    if endpoint.tokens is None:
        raise ValueError("ghz drives a node's exchange API: the endpoint must mint tokens")
    total = warmup + calls
    if total > MAX_TOKENS:
        raise ValueError(f"{total} calls need more tokens than an exec can carry ({MAX_TOKENS})")
    request = workdir / "ghz-request.bin"
    request.write_bytes(endpoint.request.SerializeToString())
    environment = {
        f"{VARIABLE_PREFIX}{number}": token for number, token in enumerate(endpoint.tokens(total))
    }
    argv = [
        str(ghz_binary()),
        "--proto",
        str(REPO_ROOT / "proto" / "concordat" / "exchange" / "v1" / "exchange.proto"),
        "--import-paths",
        str(REPO_ROOT / "proto"),
        "--call",
        METHOD,
        "--cacert",
        str(endpoint.ca_cert),
        "--binary-file",
        str(request),
        "--metadata",
        METADATA,
        "--concurrency",
        str(concurrency),
        "--connections",
        "1",
        "--total",
        str(total),
        "--skipFirst",
        str(warmup),
        "--timeout",
        "30s",
        "--format",
        "json",
        endpoint.address,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with _stack_limit_for(argv, environment):
        process = subprocess.Popen(
            argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    output, errors = process.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise GhzFailed(f"ghz exited with {process.returncode}: {errors.decode()[-2000:]}")
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        **_figures(json.loads(output), calls),
        # ghz's whole run: its start (parsing the proto), warm-up and timed calls.
        "client_cpu_ms_per_call": round(cpu_seconds * 1000 / total, 4),
    }


def _figures(report: dict[str, Any], calls: int) -> dict[str, float]:
    """Throughput and percentiles from ghz's per-call details, as load.drive reckons them."""
    statuses = report.get("statusCodeDistribution") or {}
    if statuses != {"OK": calls}:
        errors = list(report.get("errorDistribution") or {})[:3]
        raise GhzFailed(f"ghz calls were not all OK: {statuses}; first errors: {errors}")
    details = report["details"]
    latencies = sorted(int(call["latency"]) for call in details)
    ends = [_nanoseconds(call["timestamp"]) for call in details]
    # A call's timestamp is when it ended; the window opens when the first timed call began.
    began = min(end - int(call["latency"]) for end, call in zip(ends, details, strict=True))
    return {
        "calls": len(latencies),
        "throughput": round(len(latencies) / ((max(ends) - began) / 1e9), 1),
        "p50_ms": round(percentile(latencies, 0.50) / 1e6, 3),
        "p99_ms": round(percentile(latencies, 0.99) / 1e6, 3),
    }


def _nanoseconds(stamp: str) -> int:
    """An RFC 3339 time with nanoseconds (Go's time.Time in JSON) as integer ns since the epoch."""
    found = _STAMP.fullmatch(stamp)
    if found is None:
        raise GhzFailed(f"ghz reported a time it did not format as RFC 3339: {stamp!r}")
    zone = "+00:00" if found["zone"] == "Z" else found["zone"]
    seconds = int(dt.datetime.fromisoformat(found["whole"] + zone).timestamp())
    return seconds * 1_000_000_000 + int((found["fraction"] or "0").ljust(9, "0")[:9])


@contextmanager
def _stack_limit_for(argv: list[str], environment: dict[str, str]) -> Iterator[None]:
    """Raises this process's soft stack limit while a child is started with this environment.

    The kernel lets an exec carry a quarter of the stack limit (6 MiB at most); the child
    inherits the raised limit, this process gets its own back as soon as the child runs.
    """
    carried = sum(len(a) + 1 for a in argv) + sum(
        len(k) + len(v) + 2 + 8 for k, v in environment.items()
    )
    if carried > _EXEC_CEILING - 256 * 1024:
        raise ValueError(f"ghz's arguments and tokens take {carried} bytes; an exec carries 6 MiB")
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    needed = 4 * carried + 1024 * 1024
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ValueError(f"the stack limit's hard cap ({hard}) is below the {needed} ghz needs")
    resource.setrlimit(resource.RLIMIT_STACK, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
