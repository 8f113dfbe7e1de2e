"""A stand-in for OPA that misbehaves on request, for tests of how the OPA engine fails closed.

Use it only where a test needs OPA to misbehave: answer with an HTTP error (`fail_with`),
with a body that is not a decision (`respond_with`), too late (`delay_seconds`), or to
vanish mid-test. Anything that needs a well-behaved OPA runs the real one instead
(tests/support/real_opa.py: `opa run --server` on the bundle `concordat policy build`
writes), since only the real OPA proves the bundle, the Data API and the client agree.
It speaks OPA's Data API (`POST /v1/data/<path>`, `GET /health`) over loopback HTTP and
evaluates the bundle with rego-cpp, so the faults above come between real answers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from gateway.policy.bundle import PolicyBundle
from gateway.policy.embedded import load_interpreter
from tests.support.loopback import LoopbackHttpServer

_DATA_PATH = re.compile(r"^/v1/data/([A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)$")


class OpaDataApiServer(LoopbackHttpServer):
    """`with OpaDataApiServer(bundle) as server:` serves the bundle at `server.url`.

    Faults: `fail_with` answers every data request with that HTTP status, `respond_with`
    answers with those raw bytes as a 200 JSON body, `delay_seconds` waits before answering.
    `seen` records each data request's path and input.
    """

    def __init__(self, bundle: PolicyBundle) -> None:
        self.fail_with: int | None = None
        self.respond_with: bytes | None = None
        self.delay_seconds = 0.0
        self.seen: list[tuple[str, Any]] = []
        # One interpreter behind a lock: regopy's thread safety is undocumented.
        self._interpreter = load_interpreter(bundle)
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    def __enter__(self) -> OpaDataApiServer:
        super().__enter__()
        return self

    def evaluate(self, path: str, policy_input: Any) -> tuple[int, dict[str, Any]]:
        """Evaluate `data.<path>` as OPA would: status and JSON body."""
        with self._lock:
            self.seen.append((path, policy_input))
            self._interpreter.set_input(policy_input)
            output = self._interpreter.query("data." + path.replace("/", "."))
            if not output.ok():
                return 500, {"code": "internal_error", "message": "evaluation failed"}
            expressions = output[0].expressions
        return 200, ({"result": expressions[0]} if expressions else {})


def _handler_for(server: OpaDataApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b"{}")
            else:
                self._send_json(404, {"code": "resource_not_found"})

        def do_POST(self) -> None:
            match = _DATA_PATH.match(self.path)
            if match is None:
                self._send_json(404, {"code": "resource_not_found"})
                return
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, {"code": "invalid_parameter"})
                return
            if server.delay_seconds:
                time.sleep(server.delay_seconds)
            if server.fail_with is not None:
                self._send_json(server.fail_with, {"code": "internal_error"})
            elif server.respond_with is not None:
                self._send(200, server.respond_with)
            else:
                self._send_json(*server.evaluate(match.group(1), body.get("input")))

        def _send_json(self, status: int, document: dict[str, Any]) -> None:
            self._send(status, json.dumps(document).encode())

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
