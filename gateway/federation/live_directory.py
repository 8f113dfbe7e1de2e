"""The directory as a running node sees it: re-read when its file changes, never unverified.

Operators rotate keys and change endpoints by publishing a new signed directory file; nodes
pick it up within a second, with no restart. A file that fails verification is refused and
the node keeps the last good directory, with a log line saying why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.federation.directory import Directory, DirectoryEntry, DirectoryError

log = structlog.get_logger("concordat.directory")


class LiveDirectory:
    def __init__(
        self,
        path: Path,
        trust_anchors: Mapping[str, Ed25519PublicKey],
        *,
        check_every_seconds: float = 1.0,
    ) -> None:
        self._path = path
        self._anchors = dict(trust_anchors)
        self._check_every = check_every_seconds
        self._current = Directory.load(path, self._anchors)
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()

    def _file_stamp(self) -> tuple[int, int]:
        stat = self._path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _fresh(self) -> Directory:
        now = time.monotonic()
        if now - self._checked < self._check_every:
            return self._current
        self._checked = now
        try:
            stamp = self._file_stamp()
        except OSError as exc:
            log.error("directory_reload_refused", error=str(exc))
            return self._current
        if stamp == self._stamp:
            return self._current
        # Remember the stamp either way, so a bad file is reported once, not every second.
        self._stamp = stamp
        try:
            self._current = Directory.load(self._path, self._anchors)
        except (OSError, DirectoryError) as exc:
            log.error("directory_reload_refused", error=str(exc))
            return self._current
        log.info("directory_reloaded", nodes=list(self._current.nodes))
        return self._current

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._fresh().nodes

    def entry(self, node: str) -> DirectoryEntry:
        return self._fresh().entry(node)

    def providers(self, record_type: str, subject_kind: str, subject_value: str) -> list[str]:
        return self._fresh().providers(record_type, subject_kind, subject_value)

    def signing_key(self, node: str, kid: str) -> Ed25519PublicKey:
        return self._fresh().signing_key(node, kid)

    def ca_bundle_pem(self) -> bytes:
        return self._fresh().ca_bundle_pem()
