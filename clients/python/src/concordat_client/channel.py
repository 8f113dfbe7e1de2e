"""The channel to a node: TLS, a fresh bearer token per attempt, and gRPC's own retry policy.

Retries are gRPC's (its service config's `retryPolicy`): a call answered UNAVAILABLE, by the
node or by the transport, is sent again after a jittered, growing backoff, within the call's
deadline. The token reaches gRPC as call credentials, which gRPC asks for again on every
attempt, so a retry never replays a single-use token.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

SERVICE = "concordat.exchange.v1.ExchangeService"

TokenProvider = Callable[[], str]
"""Returns a fresh bearer token (a JWT from your identity provider) each time it is called.

gRPC calls it on one of its own threads for every attempt of every call: it must be
thread-safe, and it must not block for long.
"""


def command_token(command: str) -> TokenProvider:
    """A token provider that runs `command` (split as a shell would, but run without one) for
    each token and takes what it prints: e.g. `concordat token ...` in development."""
    argv = shlex.split(command)

    def token() -> str:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 - the caller's own command
        if done.returncode != 0:
            raise RuntimeError(
                f"the token command exited with {done.returncode}: {done.stderr.strip()[-300:]}"
            )
        return done.stdout.strip()

    return token


ChannelOption = tuple[str, str | int]

# gRPC clamps maxAttempts above this (and logs an error), so the kit refuses more.
_MOST_ATTEMPTS = 5
# Batches reach 4 MiB; gRPC's default receive limit is exactly 4 MiB.
_MAX_RECEIVE = 16 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call answered UNAVAILABLE is sent again (gRPC A6).

    Attempt n waits about `initial_backoff * backoff_multiplier ** (n - 2)` seconds (at most
    `max_backoff`, give or take a fifth); the call's deadline bounds them all. With the
    defaults the fifth attempt is sent about 7.5 s after the first.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 5.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= _MOST_ATTEMPTS:
            raise ValueError(f"max_attempts must be 1 to {_MOST_ATTEMPTS} (gRPC's limit)")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.backoff_multiplier <= 0:
            raise ValueError("backoffs and their multiplier must be positive")

    def service_config(self) -> str:
        """gRPC's service config (JSON) for the exchange API under this policy."""
        method: dict[str, object] = {"name": [{"service": SERVICE}]}
        if self.max_attempts > 1:
            method["retryPolicy"] = {
                "maxAttempts": self.max_attempts,
                "initialBackoff": f"{self.initial_backoff}s",
                "maxBackoff": f"{self.max_backoff}s",
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }
        return json.dumps({"methodConfig": [method]})


DEFAULT_RETRY = RetryPolicy()
NO_RETRIES = RetryPolicy(max_attempts=1)


class _BearerToken(grpc.AuthMetadataPlugin):
    def __init__(self, token: TokenProvider) -> None:
        self._token = token

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            token = self._token()
        except Exception as exc:  # noqa: BLE001 - the caller's code: gRPC fails the attempt
            callback((), exc)
            return
        callback((("authorization", f"Bearer {token}"),), None)


def credentials(token: TokenProvider, ca_cert: Path | bytes | None) -> grpc.ChannelCredentials:
    """TLS, trusting `ca_cert` (a PEM file or its bytes; None: the system's roots), and the
    token as call credentials."""
    roots = ca_cert.read_bytes() if isinstance(ca_cert, Path) else ca_cert
    composite: grpc.ChannelCredentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=roots),
        grpc.metadata_call_credentials(_BearerToken(token), name="concordat-bearer-token"),
    )
    return composite


def options(
    retry: RetryPolicy, server_name: str | None, extra: Sequence[ChannelOption]
) -> list[ChannelOption]:
    """The channel's options: the retry policy, a receive limit that fits a batch, and a
    reconnect backoff short enough for retries to find a node that has just come back."""
    chosen: list[ChannelOption] = [
        ("grpc.service_config", retry.service_config()),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", _MAX_RECEIVE),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    if server_name:
        chosen.append(("grpc.ssl_target_name_override", server_name))
    return [*chosen, *extra]
