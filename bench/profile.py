"""Profile the nodes of the cross-node path under load with py-spy (issue 6's method).

    python -m bench.profile [--seconds 15] [--concurrency 32] [--gil] [--out bench/results/profile]

Starts the same two nodes as `cross_node`, drives GetRecord at the given concurrency, and
has py-spy sample each node process meanwhile. Writes one speedscope JSON and one
collapsed-stack text file per node, and prints each node's top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import concordat_paths
from bench.clients import _bearers, _metadata
from bench.load import drive
from concordat.exchange.v1 import exchange_pb2_grpc
from gateway.api.client import secure_channel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL: Python's own CPU, without idle waits",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as workdir,
        concordat_paths.cross_node_exchange(Path(workdir)) as path,
    ):
        endpoint = path.endpoint
        recorders = {
            name: subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(node.pid),
                    "--duration",
                    str(args.seconds),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    str(args.out / f"{name}.txt"),
                    "--nonblocking",
                    *(["--gil"] if args.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, node in path.nodes.items()
        }
        calls = asyncio.run(_load(endpoint, args.concurrency, args.seconds + 2))
        for recorder in recorders.values():
            recorder.wait(timeout=60)
    print(f"{calls} calls at concurrency {args.concurrency}")
    for name in recorders:
        print(f"\n== {name}: top functions by own samples")
        for line in _top(args.out / f"{name}.txt", args.top):
            print(line)


async def _load(endpoint: concordat_paths.Endpoint, concurrency: int, seconds: float) -> int:
    rate_guess = 300
    count = int(rate_guess * seconds)
    bearers = _bearers(endpoint, count + 100)
    channel = secure_channel(endpoint.address, endpoint.ca_cert)
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)

    async def call() -> None:
        await stub.GetRecord(endpoint.request, metadata=_metadata(bearers), timeout=30)

    await channel.channel_ready()
    await drive(call, concurrency=concurrency, count=count)
    await channel.close()
    return count


def _top(collapsed: Path, limit: int) -> list[str]:
    """Own ('self') samples per frame and total samples per frame, from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples"]
    lines += [f"own {n / samples:6.1%}  {frame}" for frame, n in own.most_common(limit)]
    ours = [
        (frame, n)
        for frame, n in total.most_common()
        if "gateway/" in frame or "adapters/" in frame
    ]
    lines += ["-- inclusive, Concordat frames"]
    lines += [f"all {n / samples:6.1%}  {frame}" for frame, n in ours[:limit]]
    return lines


if __name__ == "__main__":
    main()
