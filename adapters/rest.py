"""Records read from a local REST API: one GET per subject, fields picked out by JSON path.

The subject value always travels as one percent-encoded path segment, so an identifier can
never add a segment, climb out of the path or start a query. Transient failures (connection
refused, timeouts, 502/503/504) are retried a few times with jittered exponential waits;
anything else fails at once. Bulk extract is not offered: REST systems here answer per subject,
and paging through one has no stable contract, so `stream` raises AdapterError.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from adapters.base import AdapterError, Batch, Row, SourceDataInvalid, SourceUnavailable
from adapters.mapping import (
    RECORD_FIELDS,
    Converter,
    RestRecordMapping,
    RestSourceConfig,
    SourceMisconfigured,
    value_converter,
)

# A step into JSON: an object key, a list index, or None for every item of a list.
Step = str | int | None
_FieldPath = tuple[tuple[Step, ...], Converter]
_RETRYABLE_STATUS = frozenset({502, 503, 504})
_RETRY_WAIT_SECONDS = 0.1
_RETRY_WAIT_MAX_SECONDS = 2.0
_MISSING = object()


class _TransientFailure(SourceUnavailable):
    """A failure worth another attempt; once attempts run out it surfaces as SourceUnavailable."""


class RestSource:
    """A RecordSource over one REST API, with its secret read once when opened."""

    def __init__(self, config: RestSourceConfig, client: httpx.AsyncClient) -> None:
        self._records = dict(config.records)
        self._client = client
        self._retries = config.retries
        self._paths = {
            record_type: {
                field: (parse_json_path(path), value_converter(record_type, field))
                for field, path in mapping.fields.items()
            }
            for record_type, mapping in config.records.items()
        }
        self.record_types = frozenset(config.records)

    @classmethod
    def open(cls, config: RestSourceConfig) -> RestSource:
        """Reads the configured secret and prepares the client; refuses if the secret is unset."""
        headers = {"Accept": "application/json"}
        secret = _read_secret(config)
        if secret is not None:
            scheme = config.auth_scheme.strip()
            headers[config.auth_header] = f"{scheme} {secret}" if scheme else secret
        client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=config.timeout_seconds,
            follow_redirects=False,
            # Proxies and .netrc credentials from the environment would change where requests
            # go and what they carry behind the config's back.
            trust_env=False,
        )
        return cls(config, client)

    async def fetch(
        self, record_type: str, subject_kind: str, subject_value: str, fields: Sequence[str]
    ) -> list[Row]:
        mapping = self._records.get(record_type)
        if mapping is None:
            raise AdapterError(f"this source does not serve {record_type}")
        if subject_kind not in mapping.subjects:
            raise AdapterError(f"{record_type} cannot be looked up by {subject_kind} here")
        wanted = self._wanted_paths(record_type, fields)
        path = mapping.path_template.format_map({mapping.placeholder: path_segment(subject_value)})
        response = await self._get(path)
        if response.status_code == 404:
            return []
        if not response.is_success:
            raise SourceUnavailable(f"local REST system answered {response.status_code}")
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise SourceDataInvalid(
                f"local REST system answered {record_type} with malformed JSON"
            ) from exc
        return [_record(item, wanted) for item in _items(record_type, body, mapping)]

    def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        """Always refuses: see the module docstring."""
        raise AdapterError("bulk extract is not supported by the rest adapter")

    async def close(self) -> None:
        await self._client.aclose()

    def _wanted_paths(self, record_type: str, fields: Sequence[str]) -> dict[str, _FieldPath]:
        known = RECORD_FIELDS[record_type]
        for field in fields:
            if field not in known:
                raise AdapterError(f"{record_type} has no field {field!r}")
        paths = self._paths[record_type]
        # A field the local system does not hold is left out of the rows.
        return {field: paths[field] for field in dict.fromkeys(fields) if field in paths}

    async def _get(self, path: str) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_random_exponential(
                multiplier=_RETRY_WAIT_SECONDS, max=_RETRY_WAIT_MAX_SECONDS
            ),
            retry=retry_if_exception_type(_TransientFailure),
            reraise=True,
        )
        return await retrying(self._get_once, path)

    async def _get_once(self, path: str) -> httpx.Response:
        try:
            response = await self._client.get(path)
        except httpx.TimeoutException as exc:
            raise _TransientFailure("local REST system timed out") from exc
        except httpx.ConnectError as exc:
            raise _TransientFailure("local REST system could not be reached") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable("local REST system broke off the exchange") from exc
        if response.status_code in _RETRYABLE_STATUS:
            raise _TransientFailure(f"local REST system answered {response.status_code}")
        return response


def path_segment(value: str) -> str:
    """`value` as exactly one path segment: every reserved character percent-encoded."""
    if not value:
        raise AdapterError("subject value is empty")
    segment = quote(value, safe="")
    # "." and ".." survive quoting but are dot-segments that URL normalisation removes.
    if segment.strip(".") == "":
        segment = segment.replace(".", "%2E")
    return segment


def parse_json_path(path: str) -> tuple[Step, ...]:
    """Steps for a path the mapping already validated, e.g. "items[*].label"."""
    steps: list[Step] = []
    for part in path.split("."):
        name, bracket, index = part.partition("[")
        steps.append(name)
        if bracket:
            index = index.rstrip("]")
            steps.append(None if index == "*" else int(index))
    return tuple(steps)


def _walk(node: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield node
        return
    step, rest = steps[0], steps[1:]
    if step is None:
        if isinstance(node, list):
            for item in node:
                yield from _walk(item, rest)
    elif isinstance(step, int):
        if isinstance(node, list) and step < len(node):
            yield from _walk(node[step], rest)
    elif isinstance(node, dict) and step in node:
        yield from _walk(node[step], rest)


def _extract(node: Any, steps: tuple[Step, ...]) -> Any:
    found = _walk(node, steps)
    if None in steps:
        return list(found)
    return next(found, _MISSING)


def _items(record_type: str, body: Any, mapping: RestRecordMapping) -> list[Mapping[str, Any]]:
    if mapping.list_path is not None:
        body = _extract(body, parse_json_path(mapping.list_path))
        if body is _MISSING:
            raise SourceDataInvalid(f"answer for {record_type} has nothing at its list_path")
        if body is None:
            return []
        if not isinstance(body, list):
            raise SourceDataInvalid(f"answer for {record_type} has no list at its list_path")
    elif isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise SourceDataInvalid(f"answer for {record_type} is not an object or a list of them")
    return body


def _record(item: Mapping[str, Any], wanted: Mapping[str, _FieldPath]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for field, (steps, convert) in wanted.items():
        raw = _extract(item, steps)
        value = convert(None if raw is _MISSING else raw)
        if value is not None:
            record[field] = value
    return record


def _read_secret(config: RestSourceConfig) -> str | None:
    if config.secret_env is not None:
        secret = os.environ.get(config.secret_env, "").strip()
        if not secret:
            raise SourceMisconfigured(
                f"environment variable {config.secret_env} with the REST secret is not set"
            )
    elif config.secret_file is not None:
        try:
            secret = config.secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceMisconfigured(
                f"REST secret file {config.secret_file} cannot be read"
            ) from exc
        if not secret:
            raise SourceMisconfigured(f"REST secret file {config.secret_file} is empty")
    else:
        return None
    if "\r" in secret or "\n" in secret:
        raise SourceMisconfigured("REST secret spans more than one line")
    return secret
