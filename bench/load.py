"""A bounded closed-loop load generator: C callers in one event loop, each call timed on its own."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

Call = Callable[[], Awaitable[object]]


async def drive(call: Call, *, concurrency: int, count: int) -> dict[str, float]:
    """Makes `count` calls with `concurrency` in flight; returns calls/s and p50/p99 in ms."""
    latencies: list[int] = []
    remaining = count

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            begun = time.perf_counter_ns()
            await call()
            latencies.append(time.perf_counter_ns() - begun)

    started = time.perf_counter_ns()
    await asyncio.gather(*(caller() for _ in range(min(concurrency, count))))
    elapsed = time.perf_counter_ns() - started
    latencies.sort()
    return {
        "calls": count,
        "throughput": round(count / (elapsed / 1e9), 1),
        "p50_ms": round(percentile(latencies, 0.50) / 1e6, 3),
        "p99_ms": round(percentile(latencies, 0.99) / 1e6, 3),
    }


def percentile(ordered: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def medians(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The median of each numeric field over repeated rounds, with the round count."""
    keys = [key for key, value in samples[0].items() if isinstance(value, int | float)]
    summary: dict[str, Any] = {key: statistics.median(s[key] for s in samples) for key in keys}
    summary["rounds"] = len(samples)
    return summary
