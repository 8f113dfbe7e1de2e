"""Runs the benchmark suite and writes bench/results/latest.json and latest.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.children import REPO_ROOT
from bench.measures import MEASURES


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks the code runs")
    parser.add_argument(
        "--only",
        action="append",
        choices=MEASURES,
        metavar="NAME",
        help=f"run only this measure (repeatable): {', '.join(MEASURES)}",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    arguments = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    for name in arguments.only or MEASURES:
        print(f"{name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results[name] = _run(name, arguments.smoke)
        results[name]["wall_seconds"] = round(time.perf_counter() - started, 1)
        outcome = results[name].get("skipped") or results[name].get("error") or "done"
        print(f"{name}: {outcome} ({results[name]['wall_seconds']} s)", file=sys.stderr)
    print(report.write(arguments.out, results, smoke=arguments.smoke))
    return 1 if any("error" in result for result in results.values()) else 0


def _run(name: str, smoke: bool) -> dict[str, Any]:
    module = importlib.import_module(f"bench.measures.{name}")
    with tempfile.TemporaryDirectory(prefix=f"concordat-bench-{name}-") as workdir:
        try:
            return dict(module.run(smoke, Path(workdir)))
        except Exception as exc:  # noqa: BLE001 - one broken measure must not hide the others
            traceback.print_exc()
            return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
