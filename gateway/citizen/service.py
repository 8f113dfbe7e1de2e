"""The servicers: TransparencyService for citizens, SubjectSearchService for member nodes.

Thin, like the exchange API's: each method runs inside the edge wrapper (gateway/api/edge.py),
which maps errors to statuses in the one table, and hands the call to lookup.py.
"""

from __future__ import annotations

import grpc

from concordat.transparency.v1 import subject_search_pb2, transparency_pb2
from gateway.api.edge import Call, unary
from gateway.citizen.lookup import CitizenLookup, PeerSearchAnswer

TRANSPARENCY_SERVICE = transparency_pb2.DESCRIPTOR.services_by_name["TransparencyService"].full_name
SUBJECT_SEARCH_SERVICE = subject_search_pb2.DESCRIPTOR.services_by_name[
    "SubjectSearchService"
].full_name


class TransparencyService:
    def __init__(self, lookup: CitizenLookup) -> None:
        self._lookup = lookup

    @unary
    async def ListMyExchanges(self, call: Call) -> transparency_pb2.ListMyExchangesResponse:
        return await self._lookup.answer(call)


class SubjectSearchService:
    def __init__(self, answer: PeerSearchAnswer) -> None:
        self._answer = answer

    @unary
    async def SubjectSearch(self, call: Call) -> subject_search_pb2.SubjectSearchResponse:
        return await self._answer.answer(call)


def transparency_handlers(service: TransparencyService) -> dict[str, grpc.RpcMethodHandler]:
    # No request deserializer: the edge decodes, so an undecodable body is answered and audited.
    return {
        "ListMyExchanges": grpc.unary_unary_rpc_method_handler(
            service.ListMyExchanges,
            response_serializer=transparency_pb2.ListMyExchangesResponse.SerializeToString,
        )
    }


def subject_search_handlers(service: SubjectSearchService) -> dict[str, grpc.RpcMethodHandler]:
    return {
        "SubjectSearch": grpc.unary_unary_rpc_method_handler(
            service.SubjectSearch,
            response_serializer=subject_search_pb2.SubjectSearchResponse.SerializeToString,
        )
    }


def add_service(
    server: grpc.aio.Server, name: str, handlers: dict[str, grpc.RpcMethodHandler]
) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
