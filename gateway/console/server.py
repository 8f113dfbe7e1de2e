"""The console's web server: aiohttp on the operator's machine, reading the nodes per request."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from aiohttp import web

from concordat.transparency.v1 import transparency_pb2, transparency_pb2_grpc
from gateway.api.client import secure_channel
from gateway.console.pages import citizen_page, console_page
from gateway.console.readings import NodeTarget, read_directory, read_nodes, read_registers

# A citizen's token is a few kilobytes at most; nothing else is posted.
_MAX_FORM_BYTES = 64 * 1024
_LOOKUP_TIMEOUT_SECONDS = 15.0


class Console:
    """The pages, over the nodes named by the configurations it was given."""

    def __init__(self, targets: Sequence[NodeTarget]) -> None:
        self._targets = {target.name: target for target in targets}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_FORM_BYTES)
        app.add_routes(
            [
                web.get("/", self.federation),
                web.get("/citizen", self.citizen_form),
                web.post("/citizen", self.citizen_lookup),
            ]
        )
        return app

    async def federation(self, request: web.Request) -> web.Response:
        targets = list(self._targets.values())
        readings = await read_nodes(targets)
        directory, directory_problem = read_directory(targets)
        registers, register_problems = read_registers(targets)
        return _html(
            console_page(readings, directory, directory_problem, registers, register_problems)
        )

    async def citizen_form(self, request: web.Request) -> web.Response:
        return _html(citizen_page(self._citizen_nodes()))

    async def citizen_lookup(self, request: web.Request) -> web.Response:
        form = await request.post()
        node, token = str(form.get("node", "")), str(form.get("token", "")).strip()
        nodes = self._citizen_nodes()
        if node not in nodes or not token:
            return _html(citizen_page(nodes, error="Choose your administration and paste a token."))
        target = self._targets[node]
        try:
            async with secure_channel(target.exchange_address, target.ca_cert) as channel:
                answer: transparency_pb2.ListMyExchangesResponse = await (
                    transparency_pb2_grpc.TransparencyServiceStub(channel).ListMyExchanges(
                        transparency_pb2.ListMyExchangesRequest(),
                        metadata=(("authorization", f"Bearer {token}"),),
                        timeout=_LOOKUP_TIMEOUT_SECONDS,
                    )
                )
        except grpc.aio.AioRpcError as exc:
            # The node's own words: its statuses never carry anything internal.
            error = f"{exc.code().name}: {exc.details() or ''}"
            return _html(citizen_page(nodes, chosen=node, error=error))
        return _html(citizen_page(nodes, chosen=node, answer=answer))

    def _citizen_nodes(self) -> list[str]:
        return [name for name, target in self._targets.items() if target.serves_citizens]


def _html(text: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        # No page of the console may be framed, and none loads anything from elsewhere.
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
            "Cache-Control": "no-store",
        },
    )
