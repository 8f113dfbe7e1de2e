"""The node's gRPC server: the exchange API with health checking and reflection, over TLS."""

from __future__ import annotations

import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from concordat.evidence.v1 import evidence_pb2
from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2
from gateway.api.evidence_service import EvidenceService
from gateway.api.exchange_service import ExchangeService
from gateway.api.federation_service import FederationService
from gateway.wire import serialize_response

_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
)
# How long calls on a connection past its age may take to finish: an extract's worth.
_CONNECTION_AGE_GRACE_MS = 15 * 60 * 1000
EXCHANGE_SERVICE = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
FEDERATION_SERVICE = federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name


class ServerCertificates:
    """One port's key, certificate and (where clients must present one) client roots.

    gRPC asks `_fetch` before every new TLS handshake, on a thread of its own; it answers
    None (keep what you have) except once after `offer` changed something. So new
    connections get the new material at once and established ones keep theirs: no call
    fails for a rotation, and no handshake reads a file.
    """

    def __init__(self, *, key_pem: bytes, cert_pem: bytes, client_roots: bytes | None) -> None:
        self._key_pem = key_pem
        self._cert_pem = cert_pem
        self._client_roots = client_roots
        self._lock = threading.Lock()
        self._pending: object | None = None

    @property
    def requires_client_certificates(self) -> bool:
        return self._client_roots is not None

    def credentials(self) -> grpc.ServerCredentials:
        # The grpc functions are unannotated; what they return is stated here.
        credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,
            require_client_authentication=self._client_roots is not None,
        )
        return credentials

    def offer(
        self,
        *,
        key_pem: bytes | None = None,
        cert_pem: bytes | None = None,
        client_roots: bytes | None = None,
    ) -> bool:
        """Serves what is given (the rest unchanged) from the next handshake; False if the same.

        The caller has checked the material (gateway/keys.py): gRPC would refuse a key that
        is not the certificate's only in its own log, at a handshake.
        """
        with self._lock:
            key_pem = key_pem if key_pem is not None else self._key_pem
            cert_pem = cert_pem if cert_pem is not None else self._cert_pem
            if self._client_roots is None or client_roots is None:
                client_roots = self._client_roots
            if (key_pem, cert_pem, client_roots) == (
                self._key_pem,
                self._cert_pem,
                self._client_roots,
            ):
                return False
            self._key_pem, self._cert_pem, self._client_roots = key_pem, cert_pem, client_roots
            self._pending = self._configuration()
            return True

    def _configuration(self) -> object:
        configuration: object = grpc.ssl_server_certificate_configuration(
            [(self._key_pem, self._cert_pem)], root_certificates=self._client_roots
        )
        return configuration

    def _fetch(self) -> object | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def build_exchange_server(
    service: ExchangeService,
    *,
    listen: str,
    certificates: ServerCertificates,
    share_port: bool = False,
    connection_max_age_seconds: float = 0,
    reflected: tuple[str, ...] = (),
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Creates (but does not start) the server; returns it, its bound port and its health.

    Only replicas of one node share their ports (SO_REUSEPORT); otherwise a second process on
    a port in use fails to start rather than silently taking half its calls. A connection
    older than `connection_max_age_seconds` is sent GOAWAY: its calls finish (an extract has
    `_CONNECTION_AGE_GRACE_MS` before it is cut, and resumes), and the client's next call
    opens a new connection, which may reach another replica.
    """
    options: list[tuple[str, int]] = [*SERVER_OPTIONS, ("grpc.so_reuseport", int(share_port))]
    if connection_max_age_seconds:
        options += [
            ("grpc.max_connection_age_ms", round(connection_max_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", _CONNECTION_AGE_GRACE_MS),
        ]
    server = grpc.aio.server(options=options)
    handlers = exchange_handlers(service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(EXCHANGE_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(EXCHANGE_SERVICE, handlers)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # `reflected`: services added to the exchange port later (the citizens'), listed too.
    add_reflection(
        server,
        (
            EXCHANGE_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            *reflected,
        ),
    )
    port = server.add_secure_port(listen, certificates.credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, port, health_servicer


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def add_reflection(server: grpc.aio.Server, services: tuple[str, ...]) -> None:
    """Server reflection as both `grpc.reflection.v1` and `v1alpha`.

    Current grpcurl and buf ask for v1 first. grpcio-reflection ships only v1alpha; v1 is the
    same protocol under a new package name (its messages are field for field the same, so
    the same bytes decode as either), so the one servicer answers both names.
    """
    names = (*services, REFLECTION_V1, reflection.SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (REFLECTION_V1, reflection.SERVICE_NAME):
        handlers = {"ServerReflectionInfo": handler}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def exchange_handlers(service: ExchangeService) -> dict[str, grpc.RpcMethodHandler]:
    """The exchange API's methods, as the generated `add_ExchangeServiceServicer_to_server`
    registers them, except that StreamRecords may yield batches already in wire form
    (`gateway.wire.EncodedResponse`): a relayed batch is sent as the providing node signed
    it, never parsed and serialised again. A test checks these are the API's methods."""
    return {
        # No request deserializer: the edge decodes, so that an undecodable body is answered
        # and audited by us (gateway/api/edge.py).
        "GetRecord": grpc.unary_unary_rpc_method_handler(
            service.GetRecord,
            response_serializer=exchange_pb2.GetRecordResponse.SerializeToString,
        ),
        "StreamRecords": grpc.unary_stream_rpc_method_handler(
            service.StreamRecords,
            response_serializer=serialize_response,
        ),
    }


def federation_handlers(service: FederationService) -> dict[str, grpc.RpcMethodHandler]:
    """The federation API's methods, registered like the exchange API's: raw request bytes."""
    return {
        "Relay": grpc.unary_unary_rpc_method_handler(
            service.Relay,
            response_serializer=federation_pb2.RelayResponse.SerializeToString,
        ),
        "RelayStream": grpc.unary_stream_rpc_method_handler(
            service.RelayStream,
            response_serializer=federation_pb2.RelayStreamResponse.SerializeToString,
        ),
    }


def add_federation_service(
    server: grpc.aio.Server,
    service: FederationService,
    *,
    listen: str,
    certificates: ServerCertificates,
) -> int:
    """Adds the federation service on its own port, which demands a client certificate.

    `certificates` carries every member's CA as client roots. The exchange API's port stays
    without client certificates; the federation service checks the peer identity itself, so a
    call reaching it on the wrong port is refused there.
    """
    handlers = federation_handlers(service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(FEDERATION_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(FEDERATION_SERVICE, handlers)
    if not certificates.requires_client_certificates:
        raise ValueError("the federation port needs client roots: it admits only peers")
    port = server.add_secure_port(listen, certificates.credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return port


EVIDENCE_SERVICE = evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"].full_name


def evidence_handlers(service: EvidenceService) -> dict[str, grpc.RpcMethodHandler]:
    """The evidence API's methods (reconciliation, witnessing), registered the same way."""
    return {
        "ListExchangeHashes": grpc.unary_unary_rpc_method_handler(
            service.ListExchangeHashes,
            response_serializer=evidence_pb2.ListExchangeHashesResponse.SerializeToString,
        ),
        "GetWitnessedHead": grpc.unary_unary_rpc_method_handler(
            service.GetWitnessedHead,
            response_serializer=evidence_pb2.GetWitnessedHeadResponse.SerializeToString,
        ),
        "WitnessHead": grpc.unary_unary_rpc_method_handler(
            service.WitnessHead,
            response_serializer=evidence_pb2.WitnessHeadResponse.SerializeToString,
        ),
    }


def add_evidence_service(server: grpc.aio.Server, service: EvidenceService) -> None:
    """Adds the evidence service beside the federation service: it answers peers only, by the
    client certificate the federation port demands (the exchange port has none to show)."""
    handlers = evidence_handlers(service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(EVIDENCE_SERVICE, handlers),)
    )
    server.add_registered_method_handlers(EVIDENCE_SERVICE, handlers)
