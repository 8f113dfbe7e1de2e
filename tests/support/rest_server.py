"""A real HTTP server on loopback that plays a local REST system, with faults to order.

It answers GETs from a table of raw request paths to JSON bodies, checks a bearer token, and
records every request as the server saw it (path still percent-encoded), so tests can prove
what went over the wire.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class SeenRequest:
    path: str
    authorization: str | None


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None = None
    broken_json: bool = False
    delay_seconds: float = 0.0


class FakeRestSystem:
    """Serves `routes` (raw path -> JSON) and applies queued faults, one per request."""

    def __init__(self, *, token: str, scheme: str = "Bearer") -> None:
        self.expected_authorization = f"{scheme} {token}"
        self.routes: dict[str, Any] = {}
        self.seen: list[SeenRequest] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def fail_with(self, status: int, *, times: int = 1) -> None:
        self._queue(_Fault(status=status), times)

    def break_json(self, *, times: int = 1) -> None:
        self._queue(_Fault(broken_json=True), times)

    def delay(self, seconds: float, *, times: int = 1) -> None:
        self._queue(_Fault(delay_seconds=seconds), times)

    def _queue(self, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self) -> _Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else _Fault()

    @contextmanager
    def running(self) -> Iterator[FakeRestSystem]:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown, and so each test's teardown, quick.
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            # Wake handlers sleeping in a delay fault so shutdown does not wait for them.
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        authorization = handler.headers.get("Authorization")
        with self._lock:
            self.seen.append(SeenRequest(path=handler.path, authorization=authorization))
        fault = self._next_fault()
        if fault.delay_seconds:
            self._stopping.wait(fault.delay_seconds)
        if authorization != self.expected_authorization:
            _send(handler, 401, b'{"error": "unauthorised"}')
        elif fault.status is not None:
            _send(handler, fault.status, b'{"error": "fault"}')
        elif fault.broken_json:
            _send(handler, 200, b'{"name": {"given": "Ailsa"')
        elif handler.path in self.routes:
            _send(handler, 200, json.dumps(self.routes[handler.path]).encode())
        else:
            _send(handler, 404, b'{"error": "not found"}')


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        # The client gave up waiting (a timeout test); nobody is left to answer.
        return


def _handler_for(system: FakeRestSystem) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            system._answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output clean; `system.seen` is the record of requests.
            return

    return Handler
