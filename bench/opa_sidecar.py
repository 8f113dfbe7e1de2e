"""An OPA Data API server as a child process, serving a bundle with rego-cpp.

    python -m bench.opa_sidecar [--per-query] DIR...

Prints `READY <port>` and serves `POST /v1/data/...` until its standard input closes. No OPA
binary can be installed here, so this is `tests/support/opa_server.py`, the server the OPA
engine's tests use, in a process of its own.

That server answers each request with `Interpreter.query`, which compiles the query every
time (about 16 ms a decision at 10 agreements, seconds at 10,000). OPA itself prepares a
query once and reuses it, so by default this child answers the two decision paths from a
plan compiled once, as the embedded engine does: the figure is then HTTP, JSON and one
evaluation. `--per-query` keeps the test server's own behaviour.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

import regopy

from gateway.policy.bundle import PolicyBundle, load_bundle
from gateway.policy.embedded import ENTRYPOINTS
from tests.support.opa_server import OpaDataApiServer


class CompiledOpaDataApiServer(OpaDataApiServer):
    """Answers the decision entrypoints from a compiled plan; anything else as the base does."""

    def __init__(self, bundle: PolicyBundle) -> None:
        super().__init__(bundle)
        self._plan = self._interpreter.build(None, list(ENTRYPOINTS.values()))
        self._runner = regopy.Interpreter()
        self._plan_lock = threading.Lock()

    def evaluate(self, path: str, policy_input: Any) -> tuple[int, dict[str, Any]]:
        if path not in ENTRYPOINTS.values():
            return super().evaluate(path, policy_input)
        with self._plan_lock:
            self._runner.set_input(policy_input)
            output = self._runner.query_bundle_entrypoint(self._plan, path)
            if not output.ok():
                return 500, {"code": "internal_error", "message": "evaluation failed"}
            expressions = output[0].expressions
        return 200, ({"result": expressions[0]} if expressions else {})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.opa_sidecar", description=__doc__)
    parser.add_argument("--per-query", action="store_true", help="compile every query (slow)")
    parser.add_argument("directories", nargs="+", type=Path)
    arguments = parser.parse_args()
    bundle = load_bundle(arguments.directories)
    server_class = OpaDataApiServer if arguments.per_query else CompiledOpaDataApiServer
    with server_class(bundle) as server:
        print(f"READY {server.url.rsplit(':', 1)[1]}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
