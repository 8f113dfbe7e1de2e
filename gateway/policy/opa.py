"""The OPA server engine: decisions from an OPA sidecar over its Data API.

Fails closed: an OPA that cannot be reached, times out or answers with an HTTP error is a
denial ("concordat.engine_unavailable"), never an allow, and an answer that is not a
decision document is a denial too ("concordat.decision_malformed"). `bundles_ready` asks
OPA whether its bundles are activated, for the node's health (gateway/policy/opa_readiness.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from opa_client.opa_async import AsyncOpaClient

from gateway.domain import Decision, Direction
from gateway.policy.decision import (
    ENGINE_ERROR_RULE,
    ENGINE_UNAVAILABLE_RULE,
    MALFORMED_RULE,
    deny,
    parse_decision,
    requested_agreement,
    requested_fields,
)

log = structlog.get_logger("concordat.policy")

PACKAGES: Mapping[Direction, str] = {"egress": "concordat.egress", "ingress": "concordat.ingress"}


class OpaServerEngine:
    """Asks an OPA server for `data.concordat.<direction>.decision`."""

    def __init__(self, *, url: str, timeout_seconds: float = 1.0, revision: str = "opa") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA url must be http(s)://host[:port], not {url!r}")
        if parts.path not in ("", "/"):
            raise ValueError(f"OPA url must not carry a path: {url!r}")
        https = parts.scheme == "https"
        self._health_url = f"{parts.scheme}://{parts.netloc}/health?bundles"
        self._client = AsyncOpaClient(
            host=parts.hostname,
            port=parts.port or (443 if https else 8181),
            ssl=https,
            timeout=timeout_seconds,
            # A retry would stretch the caller's wait past the timeout; a denial is
            # retryable by the caller anyway.
            retries=0,
        )
        self._revision = revision
        self._session: AsyncExitStack | None = None
        self._closed = False

    @property
    def revision(self) -> str:
        return self._revision

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        decision_id = uuid.uuid4().hex
        agreement_id = requested_agreement(policy_input)
        if self._closed:
            return deny(
                decision_id,
                ENGINE_UNAVAILABLE_RULE,
                "the policy engine is closed",
                agreement_id=agreement_id,
            )
        package = PACKAGES.get(direction)
        if package is None:
            return deny(
                decision_id,
                ENGINE_ERROR_RULE,
                "unknown decision direction",
                agreement_id=agreement_id,
            )
        try:
            client = await self._open()
            body = await client.query_rule(dict(policy_input), package, "decision")
        except (aiohttp.ContentTypeError, ValueError) as exc:
            # A body that is not JSON (ValueError covers JSONDecodeError): OPA answered,
            # but not with a decision.
            self._log_failure("policy.opa_malformed_answer", decision_id, direction, exc)
            return deny(
                decision_id,
                MALFORMED_RULE,
                "OPA answered with something other than JSON",
                agreement_id=agreement_id,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._log_failure("policy.opa_unavailable", decision_id, direction, exc)
            return deny(
                decision_id,
                ENGINE_UNAVAILABLE_RULE,
                _unavailable_reason(exc),
                agreement_id=agreement_id,
            )
        except TypeError as exc:
            self._log_failure("policy.engine_error", decision_id, direction, exc)
            return deny(
                decision_id,
                ENGINE_ERROR_RULE,
                "the policy input is not JSON",
                agreement_id=agreement_id,
            )
        if not isinstance(body, dict):
            return deny(
                decision_id,
                MALFORMED_RULE,
                "OPA's answer is not a JSON object",
                agreement_id=agreement_id,
            )
        # OPA's own decision id, when decision logging is on, ties our audit to its log.
        opa_decision_id = body.get("decision_id")
        if isinstance(opa_decision_id, str) and opa_decision_id:
            decision_id = opa_decision_id
        return parse_decision(
            body.get("result"),
            decision_id=decision_id,
            requested_fields=requested_fields(policy_input),
            agreement_id=agreement_id,
        )

    async def bundles_ready(self) -> bool:
        """Whether OPA answers `GET /health?bundles` with 200: up, with its bundles activated."""
        if self._closed:
            return False
        client = await self._open()
        # check_health answers False for any failure (no answer, timeout, non-200).
        return bool(await client.check_health(diagnostic_url=self._health_url))

    async def close(self) -> None:
        """Close the HTTP session, if one was opened; decisions after this are denials."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.aclose()

    async def _open(self) -> AsyncOpaClient:
        """Open the HTTP session on first use, inside the running event loop."""
        if self._session is None:
            session = AsyncExitStack()
            await session.enter_async_context(self._client)
            self._session = session
        return self._client

    def _log_failure(
        self, event: str, decision_id: str, direction: Direction, exc: BaseException
    ) -> None:
        # Exception texts can quote the request, so only the type is logged.
        log.warning(
            event,
            decision_id=decision_id,
            direction=direction,
            revision=self._revision,
            error=type(exc).__name__,
            status=getattr(exc, "status", None),
        )


def _unavailable_reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"OPA answered HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "OPA did not answer in time"
    return "OPA could not be reached"
