"""A peer's refusal becomes our error by the status table; transport failures say only the peer."""

from __future__ import annotations

import grpc
import pytest

from gateway import errors
from gateway.api.status import STATUS_FOR_ERROR, to_grpc_status
from gateway.pipeline.relay import remote_error

# What a requesting node makes of each error the providing node's edge can send.
EXPECTED: dict[type[errors.ConcordatError], type[errors.ConcordatError]] = {
    errors.Unauthenticated: errors.PeerRejected,
    errors.PeerRejected: errors.PeerRejected,
    errors.InvalidRequest: errors.InvalidRequest,
    errors.PolicyDenied: errors.PolicyDenied,
    errors.NoRoute: errors.Unavailable,
    errors.RecordNotFound: errors.RecordNotFound,
    errors.IdempotencyConflict: errors.Unavailable,
    errors.Unavailable: errors.Unavailable,
    errors.DeadlineExceeded: errors.DeadlineExceeded,
    errors.LocalDataInvalid: errors.Unavailable,
    errors.InternalError: errors.Unavailable,
    # Not sent on a relay (the citizen's and the witnessing services' own refusals); were a
    # peer to send one, it is a failure after the peer may have done work, never retried.
    errors.NotYourSubject: errors.Unavailable,
    errors.WitnessRefused: errors.Unavailable,
    errors.RateLimited: errors.Unavailable,
}


def _peer_error(status: grpc.Status) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
    )


def test_every_error_in_the_status_table_has_a_meaning_when_a_peer_sends_it() -> None:
    assert set(EXPECTED) == set(STATUS_FOR_ERROR)


@pytest.mark.parametrize("kind", list(STATUS_FOR_ERROR), ids=lambda k: k.code)
def test_a_peer_edge_error_maps_by_the_status_table_keeping_its_rule(
    kind: type[errors.ConcordatError],
) -> None:
    sent = kind("the peer's message", metadata={"rule": "holyrood.some_rule"})
    received = remote_error(_peer_error(to_grpc_status(sent, "e" * 32)), "holyrood")
    assert type(received) is EXPECTED[kind]
    assert received.metadata["peer"] == "holyrood"
    assert received.metadata["rule"] == "holyrood.some_rule"
    # Only an error raised after the peer may have released data is marked so; never retried.
    may_have_released = EXPECTED[kind] is errors.Unavailable and kind is not errors.Unavailable
    assert (received.metadata.get("released") == "true") is may_have_released


def test_a_transport_failure_names_the_peer_and_keeps_the_detail_out_of_the_message() -> None:
    transport = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:7502",
    )
    received = remote_error(transport, "holyrood")
    assert isinstance(received, errors.Unavailable)
    assert "holyrood" in received.message
    assert "ipv4" not in received.message and "127.0.0.1" not in received.message
    assert received.metadata.get("released") != "true"


def test_an_error_info_whose_reason_disagrees_with_its_status_is_not_trusted() -> None:
    forged = to_grpc_status(errors.PolicyDenied("denied"), "e" * 32)
    received = remote_error(
        grpc.aio.AioRpcError(
            grpc.StatusCode.INTERNAL,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(*forged.trailing_metadata),
            details="denied",
        ),
        "holyrood",
    )
    assert isinstance(received, errors.Unavailable)
    assert received.metadata["released"] == "true"
