"""`concordat console`: the operator console, a web page over the nodes' public surfaces."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import console as out
from gateway.cli.common import fail
from gateway.config import ConfigError, load_config


def console(
    config: Annotated[
        list[Path],
        typer.Option(
            "--config", "-c", help="A node's configuration; repeat it for each node to show."
        ),
    ],
    listen: Annotated[
        str, typer.Option(help="Where the console serves its pages (host:port).")
    ] = "127.0.0.1:8400",
) -> None:
    """Serve the operator console: health, directory, bundle revisions, traffic, denials,
    the meter, breakers and registers of the nodes given, and the citizen's view."""
    from aiohttp import web

    from gateway.console.readings import NodeTarget
    from gateway.console.server import Console

    try:
        targets = [NodeTarget.of(load_config(path)) for path in config]
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise fail("--listen must be host:port, e.g. 127.0.0.1:8400")

    async def serve() -> None:
        runner = web.AppRunner(Console(targets).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, int(port))
        await site.start()
        out.print(f"console: http://{listen}/ (Ctrl-C stops it)", highlight=False)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
