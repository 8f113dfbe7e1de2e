"""Records read from a SQL database through a declarative mapping, on SQLAlchemy Core.

One code path serves SQLite and PostgreSQL: a synchronous engine whose calls run off the
event loop, so it never blocks on the database: on a small thread pool sized like the
connection pool, except a SQLite source's single-subject reads, which have a thread of their
own (`_ReadingThread` says why). Every statement is built from reflected tables with bound
parameters; subject values and cursors only ever travel as data.

Reads go through the driver's own cursor when SQLAlchemy would do nothing to the values (no
result processor on any column read, no bind processor on any parameter): the statement is
still SQLAlchemy's, compiled once per query shape, but each execution skips its parameter
construction, Result and Row objects. That is about half a microsecond per record of a bulk
extract, and a single-subject read in a third of the time (17 us against 47 us on SQLite).
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    inspect,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import ColumnElement, FromClause

from adapters.base import AdapterError, Batch, Row, SourceUnavailable, SubjectKey
from adapters.mapping import (
    RECORD_FIELDS,
    SHORT_TEXT_CHARS,
    Converter,
    MappingMismatch,
    SourceMisconfigured,
    SqlRecordMapping,
    SqlSourceConfig,
    split_column_ref,
    value_converter,
)

_T = TypeVar("_T")
_CURSOR_KEY = "_cursor_key"
_SUBJECT_KEY = "_pseudonym_subject"
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_INT64 = range(-(2**63), 2**63)
# Rows of a one-to-many join are read for at most this many parents per statement, which
# keeps the IN list far below every driver's bound-parameter limit.
_LINKS_PER_QUERY = 500
# Subject queries kept per source: one per record type, field set and identifier kind asked.
_STATEMENTS_KEPT = 256


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    column: ColumnElement[Any]
    join: str | None
    many: str | None
    convert: Converter
    # A text field, whose short text values need no conversion.
    text: bool


@dataclass(frozen=True, slots=True)
class _JoinPlan:
    table: FromClause
    on: tuple[tuple[Column[Any], Column[Any]], ...]
    many: bool
    order: tuple[Column[Any], ...]


@dataclass(frozen=True, slots=True)
class _RecordPlan:
    record_type: str
    table: Table
    key: Column[Any]
    subjects: Mapping[str, tuple[Column[Any], str | None]]
    fields: Mapping[str, _FieldPlan]
    joins: Mapping[str, _JoinPlan]
    # The subject kind research pseudonyms are keyed on (None: no subject mapped).
    pseudonym_kind: str | None


@dataclass(frozen=True, slots=True)
class _Query:
    """A statement with its columns' positions, and its driver-level form where it has one."""

    statement: Select[Any]
    positions: Mapping[str, int]
    raw: _RawStatement | None


@dataclass(frozen=True, slots=True)
class _PageQuery:
    """One bulk page query, built and compiled once per record type, fields and subject need.

    `raw` is the driver-level form (SQL text, and how its parameters are passed) when the
    driver's values need nothing from SQLAlchemy; None when they do, and SQLAlchemy reads.
    """

    first: Select[Any]
    after: Select[Any]
    positions: Mapping[str, int]
    raw: _RawPage | None


@dataclass(frozen=True, slots=True)
class _RawPage:
    first: _RawStatement
    after: _RawStatement


@dataclass(frozen=True, slots=True)
class _RawStatement:
    sql: str
    # Every parameter the compiled SQL takes, with its default (SQLite's OFFSET 0, say).
    defaults: Mapping[str, Any]
    # Parameter names in order for a positional paramstyle (qmark, numeric, format); None
    # for a named one (pyformat, named), which takes a mapping.
    order: tuple[str, ...] | None

    def parameters(self, given: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **given}
        return values if self.order is None else [values[name] for name in self.order]


class SqlSource:
    """A RecordSource over one SQL database, checked against its live schema when opened."""

    def __init__(self, engine: Engine, plans: Mapping[str, _RecordPlan], *, workers: int) -> None:
        self._engine = engine
        self._plans = dict(plans)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sql-source")
        self._subject_reads: _SubjectReads = (
            _ReadingThread("sql-source-subjects")
            if engine.dialect.name == "sqlite"
            else _PooledReads(self._executor)
        )
        self._subject_queries: dict[tuple[str, tuple[str, ...], str], _Query] = {}
        self._page_queries: dict[tuple[str, tuple[str, ...], bool], _PageQuery] = {}
        # Written from the reading threads: each get and set is atomic, and two threads that
        # build the same query at once build equal ones.
        self._child_queries: dict[tuple[str, str, tuple[str, ...], int], _Query] = {}
        self.record_types = frozenset(self._plans)

    @property
    def engine(self) -> Engine:
        return self._engine

    @classmethod
    def open(cls, config: SqlSourceConfig) -> SqlSource:
        """Connects, reflects every mapped table and refuses a mapping the schema lacks.

        Blocks on the database: call it from a thread when an event loop is running.
        """
        engine = _create_engine(config)
        try:
            with _database_errors("could not be reached to read its schema"):
                with engine.connect() as connection:
                    plans = _reflect_plans(connection, config.records)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, plans, workers=config.pool_size + config.max_overflow)

    async def fetch(
        self, record_type: str, subject_kind: str, subject_value: str, fields: Sequence[str]
    ) -> list[Row]:
        plan = self._plan(record_type)
        wanted = _wanted_fields(plan, fields)
        if subject_kind not in plan.subjects:
            raise AdapterError(f"{record_type} cannot be looked up by {subject_kind} here")
        column, _ = plan.subjects[subject_kind]
        value = _as_column_value(column, subject_value)
        if value is None:
            return []
        query = self._subject_query(plan, wanted, subject_kind)
        return await self._run(self._read_subject, plan, wanted, query, value)

    async def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        plan = self._plan(record_type)
        wanted = _wanted_fields(plan, fields)
        if batch_size < 1:
            raise AdapterError("batch_size must be at least 1")
        if with_subjects and plan.pseudonym_kind is None:
            raise AdapterError(f"{record_type} maps no subject to key pseudonyms on")
        position = None if after is None else _as_column_value(plan.key, after)
        if after is not None and position is None:
            raise AdapterError(f"cursor for {record_type} was not issued by this source")
        # One batch is read ahead while the caller handles the last, so the database's work
        # overlaps the node's; at most two batches are held at once, however long the extract.
        loop = asyncio.get_running_loop()
        query = self._page_query(plan, wanted, with_subjects=with_subjects)
        read = partial(
            self._read_batch,
            plan,
            wanted,
            query,
            batch_size=batch_size,
            with_subjects=with_subjects,
        )
        ahead: asyncio.Future[tuple[list[Row], list[SubjectKey | None], Any]] | None = (
            loop.run_in_executor(self._executor, read, position)
        )
        try:
            while ahead is not None:
                rows, subjects, last_key = await ahead
                full = len(rows) == batch_size
                ahead = loop.run_in_executor(self._executor, read, last_key) if full else None
                if rows:
                    yield Batch(rows=rows, cursor=str(last_key), subjects=subjects)
        finally:
            if ahead is not None:
                ahead.cancel()

    async def close(self) -> None:
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        self._subject_reads.stop()
        self._executor.shutdown(wait=True)
        self._engine.dispose()

    def _plan(self, record_type: str) -> _RecordPlan:
        plan = self._plans.get(record_type)
        if plan is None:
            raise AdapterError(f"this source does not serve {record_type}")
        return plan

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await self._subject_reads.run(function, *args)

    def _subject_query(
        self, plan: _RecordPlan, wanted: Mapping[str, _FieldPlan], subject_kind: str
    ) -> _Query:
        """The query for one subject's records, built and compiled once per record type,
        fields and kind."""
        key = (plan.record_type, tuple(wanted), subject_kind)
        query = self._subject_queries.get(key)
        if query is None:
            column, join = plan.subjects[subject_kind]
            statement = (
                _select_fields(plan, wanted, extra_joins={join} - {None})
                .where(column == bindparam("subject_value", type_=column.type))
                .order_by(plan.key)
            )
            query = _query(self._engine, statement, binds=(column,))
            if len(self._subject_queries) >= _STATEMENTS_KEPT:
                self._subject_queries.clear()
            self._subject_queries[key] = query
        return query

    def _read_subject(
        self,
        plan: _RecordPlan,
        wanted: Mapping[str, _FieldPlan],
        query: _Query,
        value: Any,
    ) -> list[Row]:
        params = {"subject_value": value}
        rows: Sequence[Sequence[Any]]
        with _database_errors("could not be read"), self._engine.connect() as connection:
            if query.raw is not None:
                rows = _read_raw(connection, query.raw, params)
            else:
                rows = connection.execute(query.statement, params).all()
            many = self._read_many(connection, plan, wanted, rows, query.positions)
        return _records(wanted, rows, query.positions, many)

    def _read_many(
        self,
        connection: Connection,
        plan: _RecordPlan,
        wanted: Mapping[str, _FieldPlan],
        rows: Sequence[Sequence[Any]],
        positions: Mapping[str, int],
    ) -> dict[str, dict[Any, dict[str, list[Any]]]]:
        """Values of one-to-many fields per join, per parent link value, in child key order."""
        found: dict[str, dict[Any, dict[str, list[Any]]]] = {}
        for name in dict.fromkeys(f.many for f in wanted.values() if f.many is not None):
            here = tuple(field for field, f in wanted.items() if f.many == name)
            link_at = positions[_link_label(name)]
            links = (row[link_at] for row in rows)
            parents = list(dict.fromkeys(link for link in links if link is not None))
            grouped: dict[Any, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
            for start in range(0, len(parents), _LINKS_PER_QUERY):
                chunk = parents[start : start + _LINKS_PER_QUERY]
                query = self._child_query(plan, name, here, len(chunk))
                params = {_link_parameter(index): link for index, link in enumerate(chunk)}
                children: Sequence[Sequence[Any]]
                if query.raw is not None:
                    children = _read_raw(connection, query.raw, params)
                else:
                    children = connection.execute(query.statement, params).all()
                # Each child row is its parent's link value, then the fields in `here` order.
                for child in children:
                    values = grouped[child[0]]
                    for at, field in enumerate(here, start=1):
                        values[field].append(child[at])
            found[name] = grouped
        return found

    def _child_query(
        self, plan: _RecordPlan, name: str, here: tuple[str, ...], count: int
    ) -> _Query:
        """The query for the children of `count` parents through join `name`, made once.

        One parameter per parent, rather than one expanding list, so the statement compiles
        to the same SQL every time it is used for that many parents.
        """
        key = (plan.record_type, name, here, count)
        query = self._child_queries.get(key)
        if query is None:
            join = plan.joins[name]
            child_link = join.on[0][1]
            statement = (
                select(
                    child_link.label("_link"),
                    *(plan.fields[field].column.label(field) for field in here),
                )
                .where(
                    child_link.in_(
                        [
                            bindparam(_link_parameter(index), type_=child_link.type)
                            for index in range(count)
                        ]
                    )
                )
                .order_by(child_link, *join.order)
            )
            query = _query(self._engine, statement, binds=(child_link,))
            if len(self._child_queries) >= _STATEMENTS_KEPT:
                self._child_queries.clear()
            self._child_queries[key] = query
        return query

    def _page_query(
        self, plan: _RecordPlan, wanted: Mapping[str, _FieldPlan], *, with_subjects: bool
    ) -> _PageQuery:
        key = (plan.record_type, tuple(wanted), with_subjects)
        query = self._page_queries.get(key)
        if query is None:
            query = _build_page_query(self._engine, plan, wanted, with_subjects=with_subjects)
            if len(self._page_queries) >= _STATEMENTS_KEPT:
                self._page_queries.clear()
            self._page_queries[key] = query
        return query

    def _read_batch(
        self,
        plan: _RecordPlan,
        wanted: Mapping[str, _FieldPlan],
        query: _PageQuery,
        after: Any,
        *,
        batch_size: int,
        with_subjects: bool,
    ) -> tuple[list[Row], list[SubjectKey | None], Any]:
        params = {"page_size": batch_size, "after": after}
        positions = query.positions
        rows: Sequence[Sequence[Any]]
        with _database_errors("could not be read"), self._engine.connect() as connection:
            if query.raw is not None:
                raw = query.raw.first if after is None else query.raw.after
                rows = _read_raw(connection, raw, params)
            elif after is None:
                rows = connection.execute(query.first, {"page_size": batch_size}).all()
            else:
                rows = connection.execute(query.after, params).all()
            many = self._read_many(connection, plan, wanted, rows, positions)
        last_key = rows[-1][positions[_CURSOR_KEY]] if rows else after
        subjects: list[SubjectKey | None] = []
        if with_subjects and plan.pseudonym_kind is not None:
            kind, at = plan.pseudonym_kind, positions[_SUBJECT_KEY]
            subjects = [None if row[at] is None else (kind, str(row[at])) for row in rows]
        return _records(wanted, rows, positions, many), subjects, last_key


class _SubjectReads(Protocol):
    """Where a source's single-subject reads run, off the event loop."""

    def run(self, function: Callable[..., _T], *args: Any) -> Awaitable[_T]: ...

    def stop(self) -> None:
        """Waits for the reads under way; blocks, so call it from a thread."""
        ...


class _PooledReads:
    """Reads on the source's pool: a server database answers many at once, each a round trip
    away."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def run(self, function: Callable[..., _T], *args: Any) -> Awaitable[_T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, partial(function, *args))

    def stop(self) -> None:
        """Nothing of its own: the source shuts its pool down."""


class _ReadingThread:
    """A SQLite source's single-subject reads, one after another on one thread of its own.

    An indexed SQLite read takes about 17 us; handing it to the pool and back cost another
    35-70 us of CPU (c=32 and c=1), against about 15 us through one thread fed by a queue.
    Reading on the event loop instead saved a further 0.08 ms of the providing node's CPU per
    cross-node exchange at c=32, but a read can wait (on a writer's lock for up to the busy
    timeout unless the file is in WAL mode, on a page not yet cached, on a scan if the lookup
    column has no index) and every exchange on the node would wait with it. Bulk pages stay
    on the pool: a page takes about a millisecond, which reads queued here would wait behind.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Held while a read is queued and while the thread is told to stop, so no read is
        # queued behind the stop, where nothing would ever answer it.
        self._queueing = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, function: Callable[..., _T], *args: Any) -> Awaitable[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._queueing:
            if self._stopped:
                # As a shut-down pool refuses new work.
                raise RuntimeError("the source is closed")
            self._jobs.put(_Job(loop, future, partial(function, *args)))
        return future

    def stop(self) -> None:
        with self._queueing:
            self._stopped = True
            self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.future.cancelled():
                continue
            try:
                result = job.read()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.settle(_fail, exc)
            else:
                job.settle(_succeed, result)


@dataclass(frozen=True, slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    read: Callable[[], Any]

    def settle(self, how: Callable[[asyncio.Future[Any], Any], None], outcome: Any) -> None:
        # A loop that has closed refuses the call: nobody is waiting for this read any more.
        with suppress(RuntimeError):
            self.loop.call_soon_threadsafe(how, self.future, outcome)


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


def _build_page_query(
    engine: Engine, plan: _RecordPlan, wanted: Mapping[str, _FieldPlan], *, with_subjects: bool
) -> _PageQuery:
    """The page query of a bulk extract: from the start, or after a key, `page_size` rows."""
    subject = plan.subjects[plan.pseudonym_kind] if with_subjects and plan.pseudonym_kind else None
    first = (
        _select_fields(
            plan,
            wanted,
            extra_joins=set() if subject is None else {subject[1]} - {None},
            key=True,
            subject=None if subject is None else subject[0],
        )
        .order_by(plan.key)
        .limit(bindparam("page_size", type_=Integer()))
    )
    after = first.where(plan.key > bindparam("after", type_=plan.key.type))
    positions = {column.name: index for index, column in enumerate(first.selected_columns)}
    return _PageQuery(first, after, positions, _raw_page(engine, first, after, plan.key))


def _raw_page(
    engine: Engine, first: Select[Any], after: Select[Any], key: Column[Any]
) -> _RawPage | None:
    """The driver-level form of a page query, or None if SQLAlchemy must handle its values."""
    raw_first = _raw_statement(engine, first, binds=())
    raw_after = _raw_statement(engine, after, binds=(key,))
    if raw_first is None or raw_after is None:
        return None
    return _RawPage(raw_first, raw_after)


def _query(engine: Engine, statement: Select[Any], *, binds: Sequence[Column[Any]]) -> _Query:
    positions = {column.name: index for index, column in enumerate(statement.selected_columns)}
    return _Query(statement, positions, _raw_statement(engine, statement, binds=binds))


def _raw_statement(
    engine: Engine, statement: Select[Any], *, binds: Sequence[Column[Any]]
) -> _RawStatement | None:
    """The driver-level form of `statement`, whose parameters take values of the `binds`
    columns' types, or None if SQLAlchemy must handle its values."""
    dialect = engine.dialect
    for column in binds:
        if column.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None
    for selected in statement.selected_columns:
        if selected.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return None
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        # Parameters rendered into the SQL at execution: only SQLAlchemy knows how.
        return None
    # Ours (the parameters without a value of their own) are given at each read; these Nones
    # only stand in for them here.
    ours = {name: None for name, bind in compiled.binds.items() if bind.required}
    return _RawStatement(
        sql=str(compiled),
        defaults=compiled.construct_params(ours),
        order=tuple(compiled.positiontup or ()) if dialect.positional else None,
    )


def _read_raw(
    connection: Connection, statement: _RawStatement, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """One statement through the driver's own cursor, on the connection SQLAlchemy checked
    out."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    cursor = driver.cursor()  # type: ignore[union-attr]  # open, so never None
    parameters = statement.parameters(params)
    # Whoever watches the engine's statements (a tracer, a test) sees these reads too.
    for listener in connection.dispatch.before_cursor_execute:
        listener(connection, cursor, statement.sql, parameters, None, False)
    try:
        cursor.execute(statement.sql, parameters)
        return list(cursor.fetchall())
    except dialect.loaded_dbapi.Error as exc:
        # Translated as SQLAlchemy translates its own calls' errors, so `_database_errors`
        # maps both alike; a lost server connection is dropped from the pool, as it would be.
        lost = dialect.is_disconnect(exc, driver, cursor)
        if lost:
            connection.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            statement.sql,
            None,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc
    finally:
        cursor.close()


def _create_engine(config: SqlSourceConfig) -> Engine:
    try:
        url = make_url(config.url)
    except sa_exc.ArgumentError:
        # SQLAlchemy's message quotes the whole URL, password included: keep it out.
        raise SourceMisconfigured("database url is not a SQLAlchemy URL") from None
    backend = url.get_backend_name()
    database = url.database or ""
    if backend == "sqlite" and database not in ("", ":memory:"):
        # SQLite would quietly create an empty file in its place; nothing is there to read.
        if not database.startswith("file:") and not Path(database).is_file():
            raise SourceUnavailable("local database file does not exist")
    timeout_seconds = config.statement_timeout_ms / 1000
    # A server connection can go stale between calls, so it is tested before each use; a
    # SQLite file has no connection to lose, and the test cost a fifth of a local read.
    options: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "postgresql":
        # The adapter only ever reads, so its sessions refuse writes as a second line.
        options["connect_args"] = {
            "connect_timeout": config.connect_timeout_seconds,
            "options": (
                f"-c statement_timeout={config.statement_timeout_ms} "
                "-c default_transaction_read_only=on"
            ),
        }
    elif backend == "sqlite":
        options["connect_args"] = {"timeout": timeout_seconds}
    # An in-memory SQLite database lives in one connection, which takes no pool sizes.
    if not (backend == "sqlite" and database in ("", ":memory:")):
        options.update(
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_timeout=timeout_seconds,
        )
    try:
        return create_engine(url, **options)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise SourceMisconfigured(f"database url names no usable driver ({backend})") from exc


@contextmanager
def _database_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
    ) as exc:
        raise SourceUnavailable(f"local database {doing}: unavailable or timed out") from exc
    except sa_exc.DBAPIError as exc:
        raise AdapterError(
            f"local database {doing}: it refused the query ({type(exc.orig).__name__})"
        ) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise AdapterError(f"local database {doing}: {type(exc).__name__}") from exc


class _Schema:
    """The live tables a mapping refers to, each reflected once."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name
        self._inspector = inspect(connection)
        self._names = set(self._inspector.get_table_names())
        self._views = set(self._inspector.get_view_names())
        self._metadata = MetaData()
        self._tables: dict[str, Table] = {}

    def table(self, name: str, record_type: str, use: str) -> Table:
        if name not in self._names | self._views:
            raise MappingMismatch(
                f"{record_type} {use} uses table {name!r}, which the local database lacks"
            )
        if name not in self._tables:
            self._tables[name] = Table(name, self._metadata, autoload_with=self._connection)
        return self._tables[name]

    def is_key(self, table: str, column: Column[Any]) -> bool:
        """Whether `column` alone identifies a row: the primary key, or unique and NOT NULL."""
        if table in self._views:
            # A view has no constraints to inspect; its key is the operator's promise.
            return True
        if self._inspector.get_pk_constraint(table)["constrained_columns"] == [column.name]:
            return True
        alone = [column.name]
        unique = any(
            u["column_names"] == alone for u in self._inspector.get_unique_constraints(table)
        ) or any(
            i["unique"] and i["column_names"] == alone for i in self._inspector.get_indexes(table)
        )
        return unique and not column.nullable


def _column(table: FromClause, table_name: str, column: str, record_type: str, use: str) -> Any:
    found = table.c.get(column)
    if found is None:
        raise MappingMismatch(
            f"{record_type} {use} maps to column {column!r} of table {table_name!r}, "
            "which has no such column"
        )
    return found


def _reflect_plans(
    connection: Connection, records: Mapping[str, SqlRecordMapping]
) -> dict[str, _RecordPlan]:
    schema = _Schema(connection)
    return {rt: _reflect_plan(schema, rt, mapping) for rt, mapping in records.items()}


def _reflect_plan(schema: _Schema, record_type: str, mapping: SqlRecordMapping) -> _RecordPlan:
    main = schema.table(mapping.table, record_type, "main table")
    key = _column(main, mapping.table, mapping.key, record_type, "key")
    _require_lookup_type(key, mapping.table, record_type, "key")
    if not schema.is_key(mapping.table, key):
        raise MappingMismatch(
            f"{record_type} key column {mapping.key!r} of table {mapping.table!r} is neither "
            "its primary key nor unique and NOT NULL; paging needs a unique key"
        )
    joins: dict[str, _JoinPlan] = {}
    tables: dict[str | None, tuple[FromClause, str]] = {None: (main, mapping.table)}
    for join in mapping.joins:
        use = f"join {join.name!r}"
        reflected = schema.table(join.table, record_type, use)
        aliased = reflected.alias(join.name)
        on = tuple(
            (
                _column(main, mapping.table, local, record_type, use),
                _column(aliased, join.table, foreign, record_type, use),
            )
            for local, foreign in join.on.items()
        )
        order = tuple(aliased.c[column.name] for column in reflected.primary_key.columns)
        joins[join.name] = _JoinPlan(table=aliased, on=on, many=join.many, order=order)
        tables[join.name] = (aliased, join.table)

    def resolve(ref: str, use: str) -> tuple[Column[Any], str | None]:
        prefix, column = split_column_ref(ref)
        table, table_name = tables[prefix]
        return _column(table, table_name, column, record_type, use), prefix

    subjects: dict[str, tuple[Column[Any], str | None]] = {
        kind: resolve(ref, f"subject {kind!r}") for kind, ref in mapping.subjects.items()
    }
    for kind, (column, prefix) in subjects.items():
        _require_lookup_type(column, tables[prefix][1], record_type, f"subject {kind!r}")
    fields: dict[str, _FieldPlan] = {}
    for field, source in mapping.fields.items():
        column, prefix = resolve(source.column, f"field {field!r}")
        many = prefix is not None and joins[prefix].many
        text = RECORD_FIELDS[record_type][field] == "string"
        fields[field] = _FieldPlan(
            column=_as_stored_text(column) if text and _is_sqlite_date(schema, column) else column,
            join=None if many else prefix,
            many=prefix if many else None,
            convert=value_converter(record_type, field, list_separator=source.list_separator),
            text=text,
        )
    return _RecordPlan(record_type, main, key, subjects, fields, joins, mapping.pseudonym_kind)


def _is_sqlite_date(schema: _Schema, column: Column[Any]) -> bool:
    return schema.dialect == "sqlite" and isinstance(column.type, Date)


def _as_stored_text(column: Column[Any]) -> ColumnElement[Any]:
    """A SQLite DATE column read as the ISO 8601 text SQLite stores, for a text field.

    SQLite has no date type: SQLAlchemy would parse the stored text into a date, and the
    record field would format it back into the same text. Reading it as text skips both,
    which was a fifth of a bulk extract's reading time for a record with two dates.
    """
    return type_coerce(column, String())


def _wanted_fields(plan: _RecordPlan, fields: Sequence[str]) -> dict[str, _FieldPlan]:
    known = RECORD_FIELDS[plan.record_type]
    for field in fields:
        if field not in known:
            raise AdapterError(f"{plan.record_type} has no field {field!r}")
    # A field the local system does not hold is left out of the rows, as a NULL would be.
    return {field: plan.fields[field] for field in dict.fromkeys(fields) if field in plan.fields}


def _link_label(join: str) -> str:
    return f"_link_{join}"


def _link_parameter(index: int) -> str:
    return f"link_{index}"


def _select_fields(
    plan: _RecordPlan,
    wanted: Mapping[str, _FieldPlan],
    *,
    extra_joins: set[str | None],
    key: bool = False,
    subject: Column[Any] | None = None,
) -> Select[Any]:
    columns: list[Any] = [plan.key.label(_CURSOR_KEY)] if key else []
    if subject is not None:
        # Read to key pseudonyms on, never released: `_records` builds rows from `wanted` only.
        columns.append(subject.label(_SUBJECT_KEY))
    columns += [f.column.label(name) for name, f in wanted.items() if f.many is None]
    many = dict.fromkeys(f.many for f in wanted.values() if f.many is not None)
    columns += [plan.joins[name].on[0][0].label(_link_label(name)) for name in many]
    if not columns:
        # Nothing requested is held here; match rows without reading any column.
        columns = [literal_column("1").label("_match")]
    needed = {f.join for f in wanted.values()} | extra_joins
    source: FromClause = plan.table
    for name, join in plan.joins.items():
        if name in needed and not join.many:
            source = source.outerjoin(join.table, and_(*(a == b for a, b in join.on)))
    return select(*columns).select_from(source)


def _records(
    wanted: Mapping[str, _FieldPlan],
    rows: Sequence[Sequence[Any]],
    positions: Mapping[str, int],
    many: Mapping[str, Mapping[Any, Mapping[str, list[Any]]]],
) -> list[Row]:
    """Each row as a record: its wanted fields converted, NULLs left out.

    Bulk extracts pass every value through here, so the loop is kept plain: fields read from
    the row by position, one-to-many fields by their parent's link value.
    """
    texts = [
        (field, positions[field], f.convert)
        for field, f in wanted.items()
        if f.many is None and f.text
    ]
    others = [
        (field, positions[field], f.convert)
        for field, f in wanted.items()
        if f.many is None and not f.text
    ]
    children = [
        (field, positions[_link_label(f.many)], many[f.many], f.convert)
        for field, f in wanted.items()
        if f.many is not None
    ]
    records: list[Row] = []
    for row in rows:
        record: dict[str, Any] = {}
        for field, position, convert in texts:
            value = row[position]
            # Short text is already its record value, and by far the commonest value.
            if type(value) is str and len(value) <= SHORT_TEXT_CHARS:
                record[field] = value
            elif value is not None and (value := convert(value)) is not None:
                record[field] = value
        for field, position, convert in others:
            value = convert(row[position])
            if value is not None:
                record[field] = value
        for field, link, found, convert in children:
            value = convert(found.get(row[link], {}).get(field))
            if value is not None:
                record[field] = value
        records.append(record)
    return records


def _require_lookup_type(column: Column[Any], table_name: str, record_type: str, use: str) -> None:
    """Keys and subjects are compared with values given as text: integers, text or UUIDs."""
    if _lookup_type(column) is None:
        raise MappingMismatch(
            f"{record_type} {use} maps to column {column.name!r} of table {table_name!r}, "
            f"whose type {column.type} holds no identifiers (integers, text or UUIDs)"
        )


def _lookup_type(column: Column[Any]) -> type | None:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        # A type SQLAlchemy does not know (a domain, citext): compared as text.
        return str
    for kind in (bool, int, str, uuid.UUID):
        if issubclass(python_type, kind):
            return None if kind is bool else kind
    return None


def _as_column_value(column: Column[Any], value: str) -> Any:
    """`value` as the column's Python type, or None when it cannot equal any stored value."""
    kind = _lookup_type(column)
    if kind is int:
        if not _INTEGER.fullmatch(value) or int(value) not in _INT64:
            return None
        return int(value)
    if kind is uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return value
