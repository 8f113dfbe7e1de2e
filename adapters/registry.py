"""Opens the record source a node's config describes; the one place that names adapter kinds."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adapters.base import RecordSource
from adapters.mapping import RestSourceConfig, SourceMisconfigured, SqlSourceConfig
from adapters.rest import RestSource
from adapters.sql import SqlSource

KINDS = ("rest", "sql")

_Config = TypeVar("_Config", bound=BaseModel)


async def open_source(config: Mapping[str, Any]) -> RecordSource:
    """Validates `config` for its `kind` and opens that source, ready to serve."""
    kind = config.get("kind")
    if kind == "sql":
        sql = _validated(SqlSourceConfig, config)
        # Opening reflects the live schema, which blocks; keep it off the event loop.
        return await asyncio.to_thread(SqlSource.open, sql)
    if kind == "rest":
        return RestSource.open(_validated(RestSourceConfig, config))
    raise ValueError(f"unknown source kind {kind!r}; known kinds: {', '.join(KINDS)}")


def _validated(model: type[_Config], config: Mapping[str, Any]) -> _Config:
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'source'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        # Pydantic's own message echoes the input, which can hold a database password.
        raise SourceMisconfigured(f"source config is invalid: {problems}") from None
