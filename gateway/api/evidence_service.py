"""The evidence API's servicer, on the federation port: peers reconcile with this node and ask
it to witness their chain heads. Thin: the peer is who its certificate says
(gateway/federation/peers.py), the checks live in gateway/evidence/witness.py, and nothing
it answers carries an entry's contents.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from concordat.evidence.v1 import evidence_pb2
from gateway.api.edge import Call, decode, unary
from gateway.audit import AuditLog, ChainHead
from gateway.errors import InvalidRequest
from gateway.evidence.witness import Witness
from gateway.federation.directory import DirectoryLookup
from gateway.federation.peers import peer_identity

M = TypeVar("M", bound=Message)
DEFAULT_PAGE = 5_000
MAX_PAGE = 20_000


class EvidenceService:
    def __init__(self, *, audit: AuditLog, directory: DirectoryLookup, witness: Witness) -> None:
        self._audit = audit
        self._directory = directory
        self._witness = witness

    def _peer(self, call: Call) -> str:
        certificate = next(iter(call.context.auth_context().get("x509_pem_cert", ())), None)
        return peer_identity(certificate, self._directory)

    @unary
    async def ListExchangeHashes(self, call: Call) -> evidence_pb2.ListExchangeHashesResponse:
        peer = self._peer(call)
        request = _decoded(evidence_pb2.ListExchangeHashesRequest, call)
        page = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        # The head first: every entry listed is then at or before it, or newer than it.
        head = await self._audit.head()
        entries = await self._audit.exchange_hashes(peer, request.after_exchange_id, page + 1)
        more = len(entries) > page
        entries = entries[:page]
        # A page never splits one exchange's entries: the last exchange is left for the next.
        if more and entries:
            cut = entries[-1].exchange_id
            kept = [entry for entry in entries if entry.exchange_id != cut]
            entries = kept or entries
        response = evidence_pb2.ListExchangeHashesResponse(
            entries=[
                evidence_pb2.ExchangeEntry(
                    exchange_id=entry.exchange_id, seq=entry.seq, entry_hash=entry.hash
                )
                for entry in entries
            ],
            next_after_exchange_id=entries[-1].exchange_id if more and entries else "",
        )
        if head is not None:
            response.head.CopyFrom(
                evidence_pb2.ChainHead(
                    seq=head.seq, entry_hash=head.hash, recorded_at=head.recorded_at
                )
            )
        return response

    @unary
    async def GetWitnessedHead(self, call: Call) -> evidence_pb2.GetWitnessedHeadResponse:
        peer = self._peer(call)
        _decoded(evidence_pb2.GetWitnessedHeadRequest, call)
        head = await self._witness.last_signed(peer)
        response = evidence_pb2.GetWitnessedHeadResponse()
        if head is not None:
            response.head.CopyFrom(_head_message(head))
        return response

    @unary
    async def WitnessHead(self, call: Call) -> evidence_pb2.WitnessHeadResponse:
        peer = self._peer(call)
        request = _decoded(evidence_pb2.WitnessHeadRequest, call)
        head = request.head
        signed = await self._witness.witness(
            ChainHead(
                node=peer,
                seq=head.seq,
                hash=head.entry_hash,
                commitment=head.commitment,
                at=head.recorded_at,
            ),
            request.since_seq,
            request.entry_hashes,
        )
        return evidence_pb2.WitnessHeadResponse(
            witness=signed.witness,
            kid=signed.kid,
            signed_at=signed.signed_at,
            signature=signed.signature,
        )


def _decoded(message_type: type[M], call: Call) -> M:
    request = decode(message_type, call.request)
    if request is None:
        raise InvalidRequest(f"the request body is not a valid {message_type.__name__}")
    return request


def _head_message(head: ChainHead) -> evidence_pb2.ChainHead:
    return evidence_pb2.ChainHead(
        seq=head.seq, entry_hash=head.hash, commitment=head.commitment, recorded_at=head.at
    )
