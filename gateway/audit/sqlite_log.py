"""The SQLite audit log: entries hash-chained, group-committed and sealed once per batch.

Appends queue up while the single writer thread is busy; the writer then stores everything
queued (up to `max_batch`) with one Ed25519 seal in one fsynced transaction, so concurrency
makes batches and a lone append commits at once. While enough other exchanges are still on
their way to the log, a batch may wait a few milliseconds for their entries
(gateway/audit/grouping.py), so the batches actually group under load. A write failure
fails every pending append and closes the log to appends until it is reopened.

An entry crosses threads twice, and each crossing is shared by its whole batch: the caller
puts it in the writer thread's inbox (no event-loop task in between), and the writer answers
the batch's callers with one call into the event loop once the batch is on disk. The writer
takes its next batch after that commit, so what arrived during the fsync goes out together.
The operational log lines of a batch are written after its callers are answered, off the
commit path; a log sink that fails loses lines, never a committed entry.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import meter
from gateway.audit.chain import (
    GENESIS_HASH,
    AuditPosition,
    ChainHead,
    ExchangeHash,
    WitnessSignature,
    entry_hash,
    event_json,
    index_columns,
    seal_message,
    timestamp,
)
from gateway.audit.grouping import AppendsDue, GroupCommit
from gateway.audit.reader import RecordedEvent
from gateway.errors import InternalError
from gateway.keys import SigningKeys

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    exchange_id TEXT,
    subject_hash TEXT,
    recorded_at TEXT NOT NULL,
    event TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_exchange ON entries (exchange_id);
CREATE INDEX IF NOT EXISTS entries_by_subject ON entries (subject_hash)
    WHERE subject_hash IS NOT NULL;
CREATE TABLE IF NOT EXISTS seals (
    upto_seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    sealed_at TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_signatures (
    witness TEXT NOT NULL,
    kid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    commitment TEXT NOT NULL,
    at TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (witness, seq)
);
CREATE TABLE IF NOT EXISTS witnessed_heads (
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    commitment TEXT NOT NULL,
    at TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    kid TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (node, seq)
);
-- A rotated signing key: the seals from `first_seal` on (up to the next row) are made with
-- it. Seals before the first row are made with meta's public_key, the key the log began with.
CREATE TABLE IF NOT EXISTS seal_keys (
    first_seal INTEGER PRIMARY KEY,
    public_key TEXT NOT NULL
);
"""
_INSERT_ENTRY = (
    "INSERT INTO entries (seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A batch's entries go in as few statements as its size in powers of two (at most 64 rows,
# 448 parameters, a statement): each statement is one step of SQLite's, and each step hands
# the GIL to the event loop and waits to take it back, which under load costs more than the
# insert. Few distinct texts, so SQLite's statement cache keeps them all prepared.
_ROWS_PER_INSERT = (64, 32, 16, 8, 4, 2, 1)
_INSERT_ENTRIES = {
    rows: _INSERT_ENTRY + ", (?, ?, ?, ?, ?, ?, ?)" * (rows - 1) for rows in _ROWS_PER_INSERT
}
_INSERT_SEAL = "INSERT INTO seals (upto_seq, hash, sealed_at, signature) VALUES (?, ?, ?, ?)"
_INSERT_SEAL_KEY = "INSERT INTO seal_keys (first_seal, public_key) VALUES (?, ?)"
_SEALING_KEY = (
    "SELECT public_key FROM seal_keys ORDER BY first_seal DESC LIMIT 1",
    "SELECT value FROM meta WHERE key = 'public_key'",
)
# A relayed exchange's entry names both nodes, so a peer is shown the entries of its own
# exchanges with this node and no other's.
_EXCHANGE_HASHES = (
    "SELECT exchange_id, seq, hash FROM entries WHERE exchange_id > ?"
    " AND (json_extract(event, '$.requesting_node') = ?"
    " OR json_extract(event, '$.providing_node') = ?)"
    " ORDER BY exchange_id, seq LIMIT ?"
)
_WITNESSED_HEAD = (
    "SELECT node, seq, hash, commitment, at, signed_at, kid, signature FROM witnessed_heads"
    " WHERE node = ? ORDER BY seq DESC LIMIT 1"
)
WITNESS_SIGNATURES = (
    "SELECT witness, kid, seq, hash, commitment, at, signed_at, signature"
    " FROM witness_signatures ORDER BY seq, witness"
)
_SELECT_ENTRIES = (
    "SELECT seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash FROM entries"
)
# What the operational log line of an entry carries: enough to find the entry and follow an
# exchange across nodes. The entry itself (inputs, decisions, fields) stays in the audit log;
# writing the whole event to the log as well doubled the writer's cost for no new fact.
_LOGGED_FIELDS = (
    "exchange_id",
    "role",
    "rpc",
    "outcome",
    "record_type",
    "purpose",
    "agreement_id",
    "error_code",
    "records",
    "duration_ms",
)

_logger = structlog.get_logger("concordat.audit")
_T = TypeVar("_T")


def witness_signature_of(node: str, row: tuple[Any, ...]) -> WitnessSignature:
    """A row of `WITNESS_SIGNATURES` as a value: a witness's signature over `node`'s head."""
    witness, kid, seq, chain_hash, commitment, at, signed_at, signature = row
    return WitnessSignature(
        witness=witness,
        kid=kid,
        head=ChainHead(node, seq, chain_hash, commitment, at),
        signed_at=signed_at,
        signature=signature,
    )


class WriterCounts(NamedTuple):
    batches: int
    entries: int
    commit_seconds: float
    failures: int


class AuditLogRefused(Exception):
    """The file cannot serve as this node's log: another node's, or no WAL support."""


class _Pending:
    """One event waiting for the writer, with the future its caller awaits."""

    __slots__ = ("arrived", "event", "event_json", "exchange_id", "future", "subject_hash")

    def __init__(self, event: dict[str, Any], future: asyncio.Future[AuditPosition]) -> None:
        # When it was handed in: a batch waits for company only until its oldest entry has
        # waited the group commit delay, however long it sat queued behind the last commit.
        self.arrived = time.monotonic()
        self.event = event
        # Encoded once, by the caller, so an event that is not JSON fails its own append only.
        self.event_json = event_json(event)
        self.exchange_id, self.subject_hash = index_columns(event)
        self.future = future


class _Call:
    """Work for the writer thread between batches (a read, a witness record, opening, closing)."""

    __slots__ = ("arguments", "future", "work")

    def __init__(
        self, work: Callable[..., Any], arguments: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> None:
        self.work = work
        self.arguments = arguments
        self.future = future


class _Stop:
    """The last item of the writer's inbox: the writer closes the file and ends."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future


class SqliteAuditLog:
    """An `AuditLog` in one SQLite file, written by one thread with its own connection."""

    def __init__(
        self,
        *,
        path: Path,
        node: str,
        signing_key: SigningKeys,
        max_batch: int,
        grouping: GroupCommit,
        appends_due: AppendsDue | None,
    ) -> None:
        """Starts the writer thread; `open` then opens the file on it."""
        self._path = path
        self._node = node
        # Read once per batch: a rotated key seals the next batch (gateway/rotation.py).
        self._signing_keys = signing_key
        # The public key of the last seal written, hex; read from the file by the first batch.
        self._sealed_with: str | None = None
        # (first seal, kid) of a key that began sealing in the last batch, for its log line.
        self._key_change: tuple[int, str] | None = None
        self._max_batch = max_batch
        # Whether, and how long, a batch waits for the entries of exchanges still under way.
        self._grouping = grouping
        self._appends_due = appends_due
        # Set by the writer while it waits for company; the event loop wakes it when no more
        # entries are due (a stale read costs one wait of at most the delay, never an entry).
        self._gathering = False
        self._company_arrived = threading.Event()
        # Created on the writer thread by `_open_store` and only ever used there.
        self._connection: sqlite3.Connection | None = None
        self._next_seq = 1
        self._last_hash = GENESIS_HASH
        self._last_recorded_at = ""
        self._loop = asyncio.get_running_loop()
        # Appends and calls, in order; only the writer thread takes from it.
        self._inbox: queue.SimpleQueue[_Pending | _Call | _Stop] = queue.SimpleQueue()
        # Set by the writer thread when a write fails, read by callers on the event loop.
        self._refusal: str | None = None
        self._closed = False
        # What the writer has done, for the node's metrics: batches committed, the entries in
        # them, the seconds their writes took, and batches whose write failed.
        self._batches = 0
        self._entries = 0
        self._commit_seconds = 0.0
        self._write_failures = 0
        self._log_line_failures = 0
        # A daemon: a loop torn down without `close` must not keep the process alive.
        self._writer = threading.Thread(
            target=self._run_writer, name="concordat-audit-writer", daemon=True
        )
        self._writer.start()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        node: str,
        signing_key: Ed25519PrivateKey | SigningKeys,
        max_batch: int = 1024,
        grouping: GroupCommit | None = None,
        appends_due: AppendsDue | None = None,
    ) -> SqliteAuditLog:
        """Opens or creates the log at `path` and resumes its chain from the last entry.

        `signing_key` is the node's rotating SigningKeys, or one key that never changes.
        With `appends_due` (counted by the node's pipelines), a batch may wait as `grouping`
        says for the entries of exchanges still under way (gateway/audit/grouping.py).
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not isinstance(signing_key, SigningKeys):
            signing_key = SigningKeys.fixed(signing_key)
        log = cls(
            path=path,
            node=node,
            signing_key=signing_key,
            max_batch=max_batch,
            grouping=grouping or GroupCommit(),
            appends_due=appends_due,
        )
        try:
            await log._on_writer(log._open_store, signing_key.current().public_hex)
        except BaseException:
            await log._stop()
            raise
        return log

    def _open_store(self, public_key: str) -> None:
        connection, next_seq, last_hash, last_recorded_at = _open_store(
            self._path, self._node, public_key
        )
        self._connection = connection
        self._next_seq = next_seq
        self._last_hash = last_hash
        self._last_recorded_at = last_recorded_at

    @property
    def queue_depth(self) -> int:
        """Appends waiting for the writer (the batch being written is not counted)."""
        return self._inbox.qsize()

    @property
    def failing(self) -> bool:
        """True once a write failed: the log refuses appends until the node reopens it."""
        return self._write_failures > 0

    @property
    def commits(self) -> WriterCounts:
        """What the writer has committed since the log was opened, and how often it failed."""
        return WriterCounts(
            self._batches, self._entries, self._commit_seconds, self._write_failures
        )

    @property
    def log_line_failures(self) -> int:
        """Batches whose operational log lines the log sink refused (their entries are stored)."""
        return self._log_line_failures

    async def append(self, event: Mapping[str, Any]) -> int:
        """Stores one event and returns its sequence number once the entry is committed to disk."""
        return (await self.append_entry(event)).seq

    async def append_entry(self, event: Mapping[str, Any]) -> AuditPosition:
        """Stores one event; returns its seq, chain hash and time once it is committed to disk."""
        if self._refusal is not None:
            raise InternalError(self._refusal)
        pending = _Pending(dict(event), self._loop.create_future())
        self._inbox.put(pending)
        due = self._appends_due
        if self._gathering and due is not None and not due.anyone_coming():
            self._company_arrived.set()  # the writer's batch is complete: no need to wait on
        return await pending.future

    async def head(self) -> AuditPosition | None:
        """The last committed entry's position; None while the log is empty."""
        return await self._on_writer(self._head_now)

    def _head_now(self) -> AuditPosition | None:
        if self._next_seq == 1:
            return None
        return AuditPosition(self._next_seq - 1, self._last_hash, self._last_recorded_at)

    async def entry_hashes(self, first_seq: int, last_seq: int) -> list[str]:
        """The chain hashes of entries first_seq..last_seq, in order."""
        rows = await self._on_writer(
            self._query,
            "SELECT hash FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first_seq, last_seq),
        )
        return [row[0] for row in rows]

    async def exchange_hashes(
        self, counterparty: str, after_exchange_id: str, limit: int
    ) -> list[ExchangeHash]:
        """Entries of exchanges with `counterparty`, by exchange id then seq, after the given id."""
        rows = await self._on_writer(
            self._query, _EXCHANGE_HASHES, (after_exchange_id, counterparty, counterparty, limit)
        )
        return [ExchangeHash(*row) for row in rows]

    async def witnessed_head(self, node: str) -> WitnessSignature | None:
        """The last head of `node` this node signed as witness."""
        rows = await self._on_writer(self._query, _WITNESSED_HEAD, (node,))
        if not rows:
            return None
        node, seq, chain_hash, commitment, at, signed_at, kid, signature = rows[0]
        return WitnessSignature(
            witness=self._node,
            kid=kid,
            head=ChainHead(node, seq, chain_hash, commitment, at),
            signed_at=signed_at,
            signature=signature,
        )

    async def record_witnessed_head(self, signature: WitnessSignature) -> None:
        """Keeps a head this node signed as witness, durably."""
        head = signature.head
        await self._on_writer(
            self._store,
            "INSERT OR REPLACE INTO witnessed_heads"
            " (node, seq, hash, commitment, at, signed_at, kid, signature)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        """Keeps a peer's signature over one of this node's heads, durably."""
        head = signature.head
        await self._on_writer(
            self._store,
            "INSERT OR REPLACE INTO witness_signatures"
            " (witness, kid, seq, hash, commitment, at, signed_at, signature)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        """Every witness signature held over this node's heads, oldest first."""
        rows = await self._on_writer(self._query, WITNESS_SIGNATURES, ())
        return [witness_signature_of(self._node, row) for row in rows]

    async def _on_writer(self, work: Callable[..., _T], *arguments: Any) -> _T:
        # The writer's thread and connection: reads see every committed batch, and writes
        # never interleave with a batch's transaction.
        if self._closed:
            raise InternalError("the audit log is closed")
        future: asyncio.Future[_T] = self._loop.create_future()
        self._inbox.put(_Call(work, arguments, future))
        return await future

    def _query(self, query: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._writing().execute(query, parameters).fetchall()

    def _store(self, statement: str, parameters: tuple[Any, ...]) -> None:
        connection = self._writing()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(statement, parameters)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _writing(self) -> sqlite3.Connection:
        if self._connection is None:
            raise InternalError("the audit log is not open")
        return self._connection

    async def close(self) -> None:
        """Writes what is still queued, then stops the writer and closes the file."""
        if self._closed:
            return
        self._closed = True
        if self._refusal is None:
            self._refusal = "the audit log is closed"
        await self._stop()

    async def _stop(self) -> None:
        # After everything already in the inbox: appends queued before `close` are written.
        stopped: asyncio.Future[None] = self._loop.create_future()
        self._inbox.put(_Stop(stopped))
        self._company_arrived.set()  # a writer waiting for company stops waiting for it
        await stopped
        await asyncio.to_thread(self._writer.join)

    def entries_for_exchange(self, exchange_id: str) -> list[dict[str, Any]]:
        """Returns the committed entries of one exchange, oldest first."""
        return self._read(f"{_SELECT_ENTRIES} WHERE exchange_id = ? ORDER BY seq", exchange_id)

    def entries_for_subject(self, subject_hash: str) -> list[dict[str, Any]]:
        """Returns the committed entries about one subject (by keyed hash), newest first."""
        return self._read(
            f"{_SELECT_ENTRIES} WHERE subject_hash = ? ORDER BY seq DESC", subject_hash
        )

    async def exchanges_about(self, subject_hashes: Sequence[str]) -> list[RecordedEvent]:
        """The committed entries about any of these subjects (by keyed hash), newest first."""
        if not subject_hashes:
            return []
        return await asyncio.to_thread(_about, self._path, tuple(subject_hashes))

    def _read(self, query: str, parameter: str) -> list[dict[str, Any]]:
        # A connection of its own per call: the writer's connection never leaves its thread.
        with closing(_connect_read_only(self._path)) as connection:
            return [_entry_dict(row) for row in connection.execute(query, (parameter,))]

    def _run_writer(self) -> None:
        """The writer thread: batches of appends, and calls between them, in inbox order."""
        inbox = self._inbox
        held: _Call | _Stop | None = None
        while True:
            item = held if held is not None else inbox.get()
            held = None
            if isinstance(item, _Stop):
                self._close_connection()
                self._answer(_settle, [(item.future, None, None)])
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            # Everything queued now, up to max_batch: it arrived while the last batch was
            # being committed, so it shares this batch's seal and fsync.
            batch = [item]
            held = self._take_queued(batch)
            if held is None:
                held = self._gather(batch)
            self._commit_batch(batch)

    def _take_queued(self, batch: list[_Pending]) -> _Call | _Stop | None:
        """Adds what is queued now to `batch`, up to max_batch; returns a call or stop found
        on the way, which runs after this batch, in the order it was asked."""
        while len(batch) < self._max_batch:
            try:
                following = self._inbox.get_nowait()
            except queue.Empty:
                return None
            if not isinstance(following, _Pending):
                return following
            batch.append(following)
        return None

    def _gather(self, batch: list[_Pending]) -> _Call | _Stop | None:
        """Waits a little for the entries of exchanges still under way, when there are enough.

        The writer sleeps once per batch rather than waking for each arrival: a thread woken
        per entry would take the GIL from the event loop each time. The loop wakes it early
        when the last exchange it was waiting for has handed in its entry (`append_entry`).
        Returns a call or stop that arrived meanwhile, to run after this batch.
        """
        due = self._appends_due
        if due is None or not due.worth_waiting(self._grouping):
            return None
        waited = time.monotonic() - batch[0].arrived
        if waited >= self._grouping.delay_seconds:
            return None  # queued behind the last commit for as long as a wait would have been
        self._gathering = True
        self._company_arrived.clear()
        if due.anyone_coming():
            self._company_arrived.wait(self._grouping.delay_seconds - waited)
        self._gathering = False
        return self._take_queued(batch)

    def _run_call(self, call: _Call) -> None:
        try:
            result = call.work(*call.arguments)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller on the event loop
            self._answer(_settle, [(call.future, None, exc)])
        else:
            self._answer(_settle, [(call.future, result, None)])

    def _commit_batch(self, batch: list[_Pending]) -> None:
        if self._refusal is not None and self._write_failures:
            # Queued before the caller could see that the log had failed: refused the same way.
            self._fail(batch, None)
            return
        started = time.perf_counter()
        try:
            positions = self._write_batch(batch)
        except Exception as exc:  # noqa: BLE001 - any writer fault must fail closed
            self._write_failures += 1
            self._fail(batch, exc)
            return
        # Counted before the callers hear: a caller that reads `commits` sees its own batch.
        self._commit_seconds += time.perf_counter() - started
        self._batches += 1
        self._entries += len(batch)
        self._answer(
            _settle,
            [
                (pending.future, position, None)
                for pending, position in zip(batch, positions, strict=True)
            ],
        )
        self._log_batch(batch, positions)

    def _log_batch(self, batch: list[_Pending], positions: list[AuditPosition]) -> None:
        """The batch's operational log lines, once its callers are answered."""
        try:
            if self._key_change is not None:
                first_seal, kid = self._key_change
                self._key_change = None
                _logger.info("audit_sealing_key_changed", first_seal=first_seal, kid=kid)
            # Bound once per batch: structlog then skips its per-call configuration lookup.
            logger = _logger.bind()
            for pending, position in zip(batch, positions, strict=True):
                logger.info("audit", **_log_fields(pending.event, position.seq, position.hash))
        except Exception:  # noqa: BLE001 - the entries are committed and their callers answered
            self._log_line_failures += 1

    def _answer(self, settle: Callable[..., None], *arguments: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(settle, *arguments)
        except RuntimeError:
            pass  # the event loop is closed: nobody is left waiting for the answer

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write_batch(self, batch: list[_Pending]) -> list[AuditPosition]:
        """Stores a batch and its seal in one durable transaction; runs on the writer thread."""
        seq = self._next_seq
        chain_hash = self._last_hash
        # One time for the whole batch: its entries are recorded, and sealed, together.
        recorded_at = timestamp(time.time())
        rows = []
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
            seq += 1
        upto_seq = seq - 1
        sealing = self._signing_keys.current()
        signature = sealing.private.sign(
            seal_message(self._node, upto_seq, chain_hash, recorded_at)
        ).hex()
        connection = self._writing()
        if self._sealed_with is None:
            self._sealed_with = _sealing_key(connection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            _insert_entries(connection, rows)
            connection.execute(_INSERT_SEAL, (upto_seq, chain_hash, recorded_at, signature))
            if sealing.public_hex != self._sealed_with:
                connection.execute(_INSERT_SEAL_KEY, (upto_seq, sealing.public_hex))
            meter.add_rows(connection, meter.tally((p.event, recorded_at) for p in batch))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._next_seq = seq
        self._last_hash = chain_hash
        self._last_recorded_at = recorded_at
        if sealing.public_hex != self._sealed_with:
            self._sealed_with = sealing.public_hex
            self._key_change = (upto_seq, sealing.kid)
        return [AuditPosition(row[0], row[6], recorded_at) for row in rows]

    def _fail(self, batch: list[_Pending], cause: BaseException | None) -> None:
        # Set before any caller hears, so an append made after the answer is refused at once.
        self._refusal = refusal = (
            "the audit log failed to write and refuses appends until it is reopened"
        )
        failures = []
        for pending in batch:
            error = InternalError(refusal)
            error.__cause__ = cause
            failures.append((pending.future, None, error))
        self._answer(_settle, failures)
        if cause is not None:
            try:
                _logger.error("audit write failed", exc_info=cause)
            except Exception:  # noqa: BLE001 - the writer goes on refusing what is queued
                self._log_line_failures += 1


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Answers waiting callers, on the event loop; a caller that gave up is skipped."""
    for future, result, error in answers:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _open_store(path: Path, node: str, public_key: str) -> tuple[sqlite3.Connection, int, str, str]:
    """Opens the file for writing, claims it for this node and finds where the chain ends."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise AuditLogRefused(f"{path}: cannot use write-ahead logging (got {mode!r})")
        # FULL makes every commit fsync the WAL, so a committed entry survives power loss.
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        meter.ensure_schema(connection)
        _claim(connection, path, node, public_key)
        _backfill_meter(connection)
        last = connection.execute(
            "SELECT seq, hash, recorded_at FROM entries ORDER BY seq DESC LIMIT 1"
        )
        row = last.fetchone()
    except BaseException:
        connection.close()
        raise
    if row is None:
        return connection, 1, GENESIS_HASH, ""
    return connection, row[0] + 1, row[1], row[2]


def _backfill_meter(connection: sqlite3.Connection) -> None:
    """A log written before the meter existed gets its meter rebuilt from its entries."""
    if connection.execute("SELECT 1 FROM meter LIMIT 1").fetchone() is not None:
        return
    rows = connection.execute("SELECT event, recorded_at FROM entries").fetchall()
    if not rows:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        meter.add_rows(connection, meter.tally((json.loads(e), at) for e, at in rows))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _claim(connection: sqlite3.Connection, path: Path, node: str, public_key: str) -> None:
    """Records node and public key in a new log; refuses a log recorded for others."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        stored = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if "node" in stored and stored["node"] != node:
            raise AuditLogRefused(
                f"{path} is the audit log of node {stored['node']!r}, not {node!r}"
            )
        # A key other than the one the log began with is a rotated key: the seals it makes
        # are recorded against it (seal_keys), and `audit verify` checks each seal with its key.
        connection.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            [("node", node), ("public_key", public_key)],
        )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _about(path: Path, subject_hashes: tuple[str, ...]) -> list[RecordedEvent]:
    marks = ", ".join("?" for _ in subject_hashes)
    # Only placeholders are formatted in; the subject_hash index answers the IN list.
    query = (
        "SELECT seq, recorded_at, event FROM entries"  # noqa: S608 - placeholders only
        f" WHERE subject_hash IN ({marks}) ORDER BY seq DESC"
    )
    with closing(_connect_read_only(path)) as connection:
        return [
            RecordedEvent(seq=seq, recorded_at=at, event=json.loads(event))
            for seq, at, event in connection.execute(query, subject_hashes)
        ]


def _sealing_key(connection: sqlite3.Connection) -> str | None:
    """The public key (hex) the log's latest seal was made with."""
    for query in _SEALING_KEY:
        row = connection.execute(query).fetchone()
        if row is not None:
            return str(row[0])
    return None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _entry_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, exchange_id, subject, recorded_at, event_json, prev_hash, chain_hash = row
    return {
        "seq": seq,
        "exchange_id": exchange_id,
        "subject_hash": subject,
        "recorded_at": recorded_at,
        "event": json.loads(event_json),
        "prev_hash": prev_hash,
        "hash": chain_hash,
    }


def _insert_entries(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Inserts the rows in order, several to a statement (see `_INSERT_ENTRIES`)."""
    start = 0
    for size in _ROWS_PER_INSERT:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            connection.execute(_INSERT_ENTRIES[size], [value for row in chunk for value in row])
            start += size


def _log_fields(event: dict[str, Any], seq: int, chain_hash: str) -> dict[str, Any]:
    fields = {key: event[key] for key in _LOGGED_FIELDS if key in event}
    requester = event.get("requester")
    if isinstance(requester, dict):
        fields["requester"] = f"{requester.get('organisation')}@{requester.get('administration')}"
    fields["seq"] = seq
    fields["hash"] = chain_hash
    return fields
