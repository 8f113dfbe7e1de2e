"""The PostgreSQL audit log: one hash chain that every replica of a node appends to.

Each replica runs the same group-committing writer as the SQLite log, on a connection of its
own. A batch takes the chain head row `FOR UPDATE`, so replicas append one batch at a time in
one chain: the entries are numbered, linked and sealed after the lock is held, and the
entries, the seal, the meter and the new head commit in one transaction. `audit verify` thus
checks the replicas' entries exactly as it checks one process's. A replica killed mid-batch
leaves no trace of it (the transaction never committed) and no caller of that batch was
answered. A failed write fails its batch only: the next batch reconnects, so the log recovers
by itself when the database returns (the SQLite log instead closes until reopened).

A batch costs two round trips to the database: the transaction's start and the head's lock
go in one, and the entries, seal, meter, head and commit in the other (psycopg's pipeline
mode). The batch's operational log lines are written once its callers have been answered.
While enough other exchanges are still on their way to the log, a batch waits a few
milliseconds for their entries (gateway/audit/grouping.py), as the SQLite log does.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit import meter
from gateway.audit.chain import (
    GENESIS_HASH,
    AuditPosition,
    ChainHead,
    ExchangeHash,
    WitnessSignature,
    entry_hash,
    seal_message,
    timestamp,
)
from gateway.audit.grouping import AppendsDue, GroupCommit
from gateway.audit.reader import RecordedEvent
from gateway.audit.sqlite_log import _SCHEMA as SQLITE_SCHEMA
from gateway.audit.sqlite_log import WriterCounts, _log_fields, _Pending
from gateway.errors import InternalError
from gateway.keys import SigningKeys
from gateway.state.postgres import PostgresState, unreachable

# Created with the state schema by PostgresState.open: the chain head the replicas lock, then
# the SQLite log's own tables and meter, with 64-bit integers, so the two stores cannot drift.
SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '%GENESIS%') ON CONFLICT DO NOTHING;
""".replace("%GENESIS%", GENESIS_HASH)
    + SQLITE_SCHEMA.replace("INTEGER", "BIGINT")
    + meter.SCHEMA.replace("INTEGER", "BIGINT")
)
# The head, and the key the last seal was made with, read under the head's lock: another
# replica may have moved both since this one last wrote.
_LOCK_HEAD = (
    "SELECT h.seq, h.hash,"
    " (SELECT public_key FROM seal_keys ORDER BY first_seal DESC LIMIT 1),"
    " (SELECT value FROM meta WHERE key = 'public_key')"
    " FROM chain_head h WHERE h.id = 1 FOR UPDATE OF h"
)
_FIRST_KEY = "INSERT INTO meta (key, value) VALUES ('public_key', %s) ON CONFLICT DO NOTHING"
_INSERT_SEAL_KEY = "INSERT INTO seal_keys (first_seal, public_key) VALUES (%s, %s)"
_MOVE_HEAD = "UPDATE chain_head SET seq = %s, hash = %s WHERE id = 1"
_INSERT_ENTRY = (
    "INSERT INTO entries (seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_SEAL = "INSERT INTO seals (upto_seq, hash, sealed_at, signature) VALUES (%s, %s, %s, %s)"
# The meter's own statement: its columns change with gateway/audit/meter.py, not here.
# PostgreSQL wants the stored row's columns named by table where SQLite does not.
_ADD_METER = re.sub(r"= (\w+) \+ excluded", r"= meter.\1 + excluded", meter.ADD).replace("?", "%s")
# Copied by `export_to_sqlite`, in this order, column for column.
_EXPORTED = {
    "entries": "seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash",
    "seals": "upto_seq, hash, sealed_at, signature",
    "seal_keys": "first_seal, public_key",
    "witness_signatures": "witness, kid, seq, hash, commitment, at, signed_at, signature",
    "witnessed_heads": "node, seq, hash, commitment, at, signed_at, kid, signature",
}

_logger = structlog.get_logger("concordat.audit")


class PostgresAuditLog:
    """An `AuditLog` in PostgreSQL; one per replica, all appending to the node's one chain."""

    def __init__(
        self,
        *,
        url: str,
        node: str,
        signing_key: SigningKeys,
        max_batch: int,
        reads: PostgresState,
        grouping: GroupCommit | None = None,
        appends_due: AppendsDue | None = None,
    ) -> None:
        self._url = url
        # Whether, and how long, a batch waits for the entries of exchanges still under way.
        self._grouping = grouping or GroupCommit()
        self._appends_due = appends_due
        # The pool shared with the replay guards: reads never wait for a batch's transaction.
        self._reads = reads
        self._node = node
        self._signing_keys = signing_key
        self._max_batch = max_batch
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._last_write_failed = False
        self._batches = 0
        self._entries = 0
        self._commit_seconds = 0.0
        self._write_failures = 0
        self._log_line_failures = 0
        self._loop = asyncio.get_running_loop()
        self._writer = self._loop.create_task(self._run_writer(), name="concordat-audit-writer")

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def failing(self) -> bool:
        """True while the last write failed (the next batch tries again)."""
        return self._last_write_failed

    @property
    def commits(self) -> WriterCounts:
        return WriterCounts(
            self._batches, self._entries, self._commit_seconds, self._write_failures
        )

    async def append(self, event: Mapping[str, Any]) -> int:
        """Stores one event and returns its sequence number once the entry is committed."""
        return (await self.append_entry(event)).seq

    async def append_entry(self, event: Mapping[str, Any]) -> AuditPosition:
        """Stores one event; returns its seq, chain hash and time once it is committed."""
        if self._closed:
            raise InternalError("the audit log is closed")
        pending = _Pending(dict(event), self._loop.create_future())
        self._queue.append(pending)
        self._wakeup.set()
        return await pending.future

    async def head(self) -> AuditPosition | None:
        """The last committed entry's position (any replica's); None while the log is empty."""
        rows = await self._select(
            "SELECT e.seq, e.hash, e.recorded_at FROM chain_head h"
            " JOIN entries e ON e.seq = h.seq WHERE h.id = 1",
            (),
        )
        return AuditPosition(int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    async def entry_hashes(self, first_seq: int, last_seq: int) -> list[str]:
        rows = await self._select(
            "SELECT hash FROM entries WHERE seq BETWEEN %s AND %s ORDER BY seq",
            (first_seq, last_seq),
        )
        return [row[0] for row in rows]

    async def exchange_hashes(
        self, counterparty: str, after_exchange_id: str, limit: int
    ) -> list[ExchangeHash]:
        rows = await self._select(
            "SELECT exchange_id, seq, hash FROM entries WHERE exchange_id > %s"
            " AND (event::jsonb ->> 'requesting_node' = %s"
            " OR event::jsonb ->> 'providing_node' = %s)"
            " ORDER BY exchange_id, seq LIMIT %s",
            (after_exchange_id, counterparty, counterparty, limit),
        )
        return [ExchangeHash(row[0], int(row[1]), row[2]) for row in rows]

    async def witnessed_head(self, node: str) -> WitnessSignature | None:
        rows = await self._select(
            "SELECT node, seq, hash, commitment, at, signed_at, kid, signature"
            " FROM witnessed_heads WHERE node = %s ORDER BY seq DESC LIMIT 1",
            (node,),
        )
        if not rows:
            return None
        node, seq, chain_hash, commitment, at, signed_at, kid, signature = rows[0]
        return WitnessSignature(
            witness=self._node,
            kid=kid,
            head=ChainHead(node, int(seq), chain_hash, commitment, at),
            signed_at=signed_at,
            signature=signature,
        )

    async def record_witnessed_head(self, signature: WitnessSignature) -> None:
        head = signature.head
        await self._change(
            "INSERT INTO witnessed_heads"
            " (node, seq, hash, commitment, at, signed_at, kid, signature)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (node, seq) DO UPDATE SET"
            " hash = EXCLUDED.hash, commitment = EXCLUDED.commitment, at = EXCLUDED.at,"
            " signed_at = EXCLUDED.signed_at, kid = EXCLUDED.kid, signature = EXCLUDED.signature",
            (
                head.node,
                head.seq,
                head.hash,
                head.commitment,
                head.at,
                signature.signed_at,
                signature.kid,
                signature.signature,
            ),
        )

    async def add_witness_signature(self, signature: WitnessSignature) -> None:
        head = signature.head
        await self._change(
            "INSERT INTO witness_signatures"
            " (witness, kid, seq, hash, commitment, at, signed_at, signature)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (witness, seq) DO UPDATE SET"
            " kid = EXCLUDED.kid, hash = EXCLUDED.hash, commitment = EXCLUDED.commitment,"
            " at = EXCLUDED.at, signed_at = EXCLUDED.signed_at, signature = EXCLUDED.signature",
            (
                signature.witness,
                signature.kid,
                head.seq,
                head.hash,
                head.commitment,
                head.at,
                signature.signed_at,
                signature.signature,
            ),
        )

    async def witness_signatures(self) -> list[WitnessSignature]:
        rows = await self._select(
            "SELECT witness, kid, seq, hash, commitment, at, signed_at, signature"
            " FROM witness_signatures ORDER BY seq, witness",
            (),
        )
        return [
            WitnessSignature(
                witness=witness,
                kid=kid,
                head=ChainHead(self._node, int(seq), chain_hash, commitment, at),
                signed_at=signed_at,
                signature=signature,
            )
            for witness, kid, seq, chain_hash, commitment, at, signed_at, signature in rows
        ]

    async def exchanges_about(self, subject_hashes: Sequence[str]) -> list[RecordedEvent]:
        """The committed entries about any of these subjects (by keyed hash), newest first."""
        if not subject_hashes:
            return []
        rows = await self._select(
            "SELECT seq, recorded_at, event FROM entries"
            " WHERE subject_hash = ANY(%s) ORDER BY seq DESC",
            (list(subject_hashes),),
        )
        return [RecordedEvent(int(seq), at, json.loads(event)) for seq, at, event in rows]

    async def _select(self, query: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        async with self._reads.connection() as conn:
            cursor = await conn.execute(query, parameters)
            return await cursor.fetchall()

    async def _change(self, statement: str, parameters: tuple[Any, ...]) -> None:
        # Witness records are kept before a signature leaves: they commit on disk.
        async with self._reads.durable() as conn:
            await conn.execute(statement, parameters)

    async def close(self) -> None:
        """Writes what is still queued, then stops the writer and disconnects."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        await self._writer
        if self._connection is not None:
            await self._connection.close()

    async def _run_writer(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                await self._gather()
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))
                ]
                started = time.perf_counter()
                try:
                    positions = await self._write_batch(batch)
                except Exception as exc:  # noqa: BLE001 - the batch fails closed, the log goes on
                    self._write_failed(batch, exc)
                    batch = []
                    continue
                self._last_write_failed = False
                self._commit_seconds += time.perf_counter() - started
                self._batches += 1
                self._entries += len(batch)
                for pending, position in zip(batch, positions, strict=True):
                    if not pending.future.done():
                        pending.future.set_result(position)
                # After the callers resume (scheduled first) and while the next batch's first
                # round trip is out: the log lines are off the commit path.
                self._loop.call_soon(self._log_batch, batch, positions)
                batch = []
        finally:
            # Work is left here only if the writer was cancelled; no append may wait forever.
            for pending in [*batch, *self._queue]:
                if not pending.future.done():
                    pending.future.set_exception(InternalError("the audit log is closed"))
            self._queue.clear()

    async def _gather(self) -> None:
        """Waits a little for the entries of exchanges still under way, when there are enough."""
        due = self._appends_due
        if due is None or not due.worth_waiting(self._grouping):
            return
        # Until the oldest entry has waited the delay, however long it sat behind the last batch.
        deadline = self._queue[0].arrived + self._grouping.delay_seconds
        while len(self._queue) < self._max_batch and due.anyone_coming() and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _log_batch(self, batch: list[_Pending], positions: list[AuditPosition]) -> None:
        """The batch's operational log lines; a sink that fails loses lines, never entries."""
        try:
            logger = _logger.bind()
            for pending, position in zip(batch, positions, strict=True):
                logger.info("audit", **_log_fields(pending.event, position.seq, position.hash))
        except Exception:  # noqa: BLE001 - the entries are committed and their callers answered
            self._log_line_failures += 1

    @property
    def log_line_failures(self) -> int:
        """Batches whose operational log lines the log sink refused (their entries are stored)."""
        return self._log_line_failures

    async def _write_batch(self, batch: list[_Pending]) -> list[AuditPosition]:
        """Appends a batch and its seal to the shared chain in one transaction."""
        conn = self._connection
        if conn is None or conn.closed:
            # The transaction is begun and committed by statement, so that in pipeline mode
            # BEGIN travels with the lock and COMMIT with the writes: two round trips, where
            # psycopg's transaction block syncs after BEGIN, before COMMIT and after it.
            conn = self._connection = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=2
            )
        # A statement that fails aborts the rest, COMMIT included, and raises as the pipeline
        # ends; the writer then drops the connection, and the transaction with it.
        async with conn.pipeline():
            await conn.execute("BEGIN")
            cursor = await conn.execute(_LOCK_HEAD)
            head = await cursor.fetchone()
            assert head is not None  # noqa: S101 - created with the schema, never deleted
            seq, chain_hash = int(head[0]) + 1, str(head[1])
            sealed_with = head[2] or head[3]
            recorded_at = timestamp(time.time())
            rows, positions = [], []
            for pending in batch:
                prev_hash = chain_hash
                chain_hash = entry_hash(prev_hash, seq, recorded_at, pending.event_json)
                rows.append(
                    (
                        seq,
                        pending.exchange_id,
                        pending.subject_hash,
                        recorded_at,
                        pending.event_json,
                        prev_hash,
                        chain_hash,
                    )
                )
                positions.append(AuditPosition(seq, chain_hash, recorded_at))
                seq += 1
            upto_seq = seq - 1
            sealing = self._signing_keys.current()
            signature = sealing.private.sign(
                seal_message(self._node, upto_seq, chain_hash, recorded_at)
            ).hex()
            totals = meter.tally((p.event, recorded_at) for p in batch)
            async with conn.cursor() as writes:
                await writes.executemany(_INSERT_ENTRY, rows)
                await writes.execute(_INSERT_SEAL, (upto_seq, chain_hash, recorded_at, signature))
                await writes.executemany(
                    _ADD_METER, [(*key, *counts) for key, counts in totals.items()]
                )
                await writes.execute(_MOVE_HEAD, (upto_seq, chain_hash))
                if sealed_with is None:
                    await writes.execute(_FIRST_KEY, (sealing.public_hex,))
                elif sealed_with != sealing.public_hex:
                    await writes.execute(_INSERT_SEAL_KEY, (upto_seq, sealing.public_hex))
            await conn.execute("COMMIT")
        return positions

    def _write_failed(self, batch: list[_Pending], exc: Exception) -> None:
        self._write_failures += 1
        self._last_write_failed = True
        _logger.error("audit write failed", error=type(exc).__name__, detail=str(exc)[:200])
        error: Exception = (
            unreachable(exc)
            if isinstance(exc, psycopg.OperationalError)
            else InternalError("the audit log failed to write")
        )
        if self._connection is not None and not self._connection.closed:
            # The transaction rolled back; a connection that failed may be broken, so start over.
            self._loop.create_task(self._connection.close())
        self._connection = None
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)


def export_to_sqlite(url: str, path: Path, *, public_key: Ed25519PublicKey | None = None) -> int:
    """Copies a PostgreSQL log into a new SQLite file, which `audit verify` and `audit meter`
    read as they read an embedded node's log, and an auditor can be handed whole.

    One repeatable-read snapshot, so entries, seals and meter agree. The log's first sealing
    key is copied as recorded; `public_key`, when given, is recorded instead (for a log with
    no entries yet). Returns the number of entries copied.
    """
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    copied = 0
    with psycopg.connect(url, autocommit=False) as source:
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        recorded = dict(source.execute("SELECT key, value FROM meta").fetchall())
        target = sqlite3.connect(path, isolation_level=None)
        try:
            target.executescript(SQLITE_SCHEMA + meter.SCHEMA)
            target.execute("BEGIN")
            if public_key is not None and "public_key" not in recorded:
                recorded["public_key"] = public_key.public_bytes(
                    Encoding.Raw, PublicFormat.Raw
                ).hex()
            meta = [(k, v) for k, v in recorded.items() if k in ("node", "public_key")]
            target.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta)
            for table, columns in {**_EXPORTED, "meter": "*"}.items():
                with source.cursor(name=f"export_{table}") as rows:
                    rows.execute(f"SELECT {columns} FROM {table}")  # noqa: S608 - fixed names
                    chunk = rows.fetchmany(5000)
                    names = ", ".join(column.name for column in rows.description or ())
                    marks = ", ".join("?" for _ in rows.description or ())
                    insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
                    while chunk:
                        target.executemany(insert, chunk)
                        if table == "entries":
                            copied += len(chunk)
                        chunk = rows.fetchmany(5000)
            target.execute("COMMIT")
        finally:
            target.close()
    return copied
