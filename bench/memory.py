"""A child's peak memory and CPU time from /proc, and a node's start-up time until SERVING."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.children import ChildFailed

# Without these a refused first connection backs off for a second and inflates start-up times.
_FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 10),
    ("grpc.min_reconnect_backoff_ms", 10),
    ("grpc.max_reconnect_backoff_ms", 50),
)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise ValueError(f"/proc/{pid}/status has no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    # The command name may hold spaces; the fields after its closing parenthesis start at
    # field 3 of proc(5), so utime (14) and stime (15) are at 11 and 12.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seconds_until_serving(
    process: subprocess.Popen[bytes],
    address: str,
    ca_cert: Path,
    *,
    started: float,
    timeout: float = 30.0,
) -> float:
    """Seconds from `started` (a perf_counter reading) until the health check says SERVING."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    with grpc.secure_channel(address, credentials, options=_FAST_RECONNECT) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise ChildFailed(f"{process.args} exited with {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            except grpc.RpcError:
                time.sleep(0.01)
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return time.perf_counter() - started
            time.sleep(0.01)
    raise ChildFailed(f"{process.args} was not SERVING at {address} within {timeout} s")
