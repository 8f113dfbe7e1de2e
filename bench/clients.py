"""The caller's side of every exchange measure: one Endpoint shape for bare servers and real nodes.

Rounds are interleaved across the endpoints being compared, so a noisy neighbour or thermal
drift hits the gateway and its baseline alike; each figure is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import drive, medians
from bench.memory import cpu_seconds
from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from gateway.api.client import secure_channel

CONCURRENCIES = (1, 32)
# One streamed batch in this many has its size taken (see _stream_sample).
SIZE_SAMPLE_EVERY = 32


@dataclass(frozen=True)
class Endpoint:
    """A running exchange API (bare or Concordat), the processes serving it, and what to ask."""

    address: str
    ca_cert: Path
    pids: tuple[int, ...]
    request: exchange_pb2.GetRecordRequest
    stream_request: exchange_pb2.StreamRecordsRequest
    # Mints n single-use bearer tokens before the timed calls; None for the bare servers.
    tokens: Callable[[int], list[str]] | None = None


@dataclass(frozen=True)
class Plan:
    rounds: int
    calls: Mapping[int, int]
    warmup: int


def plan(smoke: bool) -> Plan:
    if smoke:
        return Plan(rounds=1, calls={1: 20, 32: 64}, warmup=8)
    return Plan(rounds=3, calls={1: 2_000, 32: 10_000}, warmup=200)


def measure_unary(
    endpoints: Mapping[str, Endpoint], smoke: bool, *, rounds: int | None = None
) -> dict[str, dict[str, Any]]:
    """GetRecord at each concurrency on each endpoint: {name: {"c1": {...}, "c32": {...}}}."""
    chosen = plan(smoke)
    if rounds is not None:
        chosen = Plan(rounds=rounds, calls=chosen.calls, warmup=chosen.warmup)
    return asyncio.run(_measure_unary(endpoints, chosen))


def measure_stream(endpoints: Mapping[str, Endpoint], smoke: bool) -> dict[str, dict[str, Any]]:
    """One whole StreamRecords extract per round on each endpoint: {name: {records_per_s, ...}}."""
    return asyncio.run(_measure_stream(endpoints, plan(smoke).rounds))


async def _measure_unary(
    endpoints: Mapping[str, Endpoint], plan: Plan
) -> dict[str, dict[str, Any]]:
    samples: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for _ in range(plan.rounds):
        for name, endpoint in endpoints.items():
            for concurrency in CONCURRENCIES:
                sample = await _unary_sample(
                    endpoint, concurrency, plan.calls[concurrency], plan.warmup
                )
                samples[name, concurrency].append(sample)
    return {name: {f"c{c}": medians(samples[name, c]) for c in CONCURRENCIES} for name in endpoints}


async def _unary_sample(
    endpoint: Endpoint, concurrency: int, calls: int, warmup: int
) -> dict[str, float]:
    bearers = _bearers(endpoint, warmup + calls)
    channel = secure_channel(endpoint.address, endpoint.ca_cert)
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    sizes: list[int] = []

    async def call() -> None:
        reply = await stub.GetRecord(endpoint.request, metadata=_metadata(bearers), timeout=30)
        if not sizes:
            sizes.append(reply.ByteSize())

    try:
        await channel.channel_ready()
        await drive(call, concurrency=concurrency, count=warmup)
        with _cpu_meter(endpoint.pids) as cpu:
            sample = await drive(call, concurrency=concurrency, count=calls)
    finally:
        await channel.close()
    return {**sample, "response_bytes": sizes[0], **cpu.per(calls, "call")}


async def _measure_stream(
    endpoints: Mapping[str, Endpoint], rounds: int
) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _ in range(rounds):
        for name, endpoint in endpoints.items():
            samples[name].append(await _stream_sample(endpoint))
    return {name: medians(samples[name]) for name in endpoints}


async def _stream_sample(endpoint: Endpoint) -> dict[str, float]:
    bearers = _bearers(endpoint, 1)
    channel = secure_channel(endpoint.address, endpoint.ca_cert)
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    records = batches = sampled_bytes = sampled_records = 0
    try:
        await channel.channel_ready()
        with _cpu_meter(endpoint.pids) as cpu:
            started = time.perf_counter_ns()
            async for batch in stub.StreamRecords(
                endpoint.stream_request, metadata=_metadata(bearers), timeout=600
            ):
                records += len(batch.records)
                batches += 1
                # The records' mean size from one batch in SIZE_SAMPLE_EVERY: ByteSize
                # re-encodes the batch (about 0.1-0.2 ms for 1,000 records), which on every
                # batch would take a tenth of a core from the bare stream it is compared with.
                if batches % SIZE_SAMPLE_EVERY == 1:
                    sampled_bytes += batch.ByteSize()
                    sampled_records += len(batch.records)
            seconds = (time.perf_counter_ns() - started) / 1e9
    finally:
        await channel.close()
    return {
        "records": records,
        "batches": batches,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        # Bytes on the wire per record, its batch's other fields shared out (a few bytes).
        "record_bytes": round(sampled_bytes / sampled_records) if sampled_records else 0,
        **cpu.per(records / 1000, "1k_records"),
    }


def _bearers(endpoint: Endpoint, count: int) -> Iterator[str] | None:
    return iter(endpoint.tokens(count)) if endpoint.tokens is not None else None


def _metadata(bearers: Iterator[str] | None) -> tuple[tuple[str, str], ...] | None:
    return None if bearers is None else (("authorization", f"Bearer {next(bearers)}"),)


@dataclass
class CpuUse:
    """CPU seconds the caller (this process) and the serving processes spent in a block."""

    client: float = 0.0
    servers: float = 0.0

    def per(self, units: float, unit: str) -> dict[str, float]:
        """CPU milliseconds per unit of work, so a profile can start from where the time goes."""
        return {
            f"client_cpu_ms_per_{unit}": round(self.client * 1000 / units, 4),
            f"servers_cpu_ms_per_{unit}": round(self.servers * 1000 / units, 4),
        }


@contextmanager
def _cpu_meter(pids: tuple[int, ...]) -> Iterator[CpuUse]:
    use = CpuUse()
    client, servers = time.process_time(), sum(cpu_seconds(pid) for pid in pids)
    try:
        yield use
    finally:
        use.client = time.process_time() - client
        use.servers = sum(cpu_seconds(pid) for pid in pids) - servers
