"""A database of its own for each test, on the suite's PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

SERVER = "postgresql://postgres@127.0.0.1:5432"


def server_connection() -> psycopg.Connection[Any]:
    """The server's maintenance database; skips (fails under CI) when PostgreSQL is down."""
    try:
        return psycopg.connect(SERVER, dbname="postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 must be reachable under CI: {exc}")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable (CI is not 'true')")


@contextmanager
def fresh_database(prefix: str = "concordat_state") -> Iterator[str]:
    """Creates an empty database, yields its URL, drops it (with any sessions still open)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with server_connection() as server:
        server.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        yield f"{SERVER}/{name}"
    finally:
        with server_connection() as server:
            server.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )
