"""The directory as a running node sees it: re-read when its file changes, never unverified.

Operators rotate keys and change endpoints by publishing a new signed directory file; the
node's rotation watcher (gateway/rotation.py) calls `refresh` every second and on SIGHUP, so
a change is picked up with no restart. A file that fails verification is refused and the
node keeps the last good directory, with a log line saying why. Lookups read the directory in
memory and never touch the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.federation.directory import Directory, DirectoryEntry, DirectoryError

log = structlog.get_logger("concordat.directory")

# What tells a replaced file from the one read: a new inode (os.replace), time or size.
FileStamp = tuple[int, int, int]


def file_stamp(path: Path) -> FileStamp:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class LiveDirectory:
    def __init__(self, path: Path, trust_anchors: Mapping[str, Ed25519PublicKey]) -> None:
        self._path = path
        self._anchors = dict(trust_anchors)
        self._current = Directory.load(path, self._anchors)
        self._stamp = file_stamp(path)

    @property
    def current(self) -> Directory:
        """The last directory that verified."""
        return self._current

    def refresh(self, *, force: bool = False) -> bool:
        """Re-reads the file if it changed (or if `force`); True if a new directory verified."""
        try:
            stamp = file_stamp(self._path)
        except OSError as exc:
            log.error("directory_reload_refused", path=str(self._path), error=str(exc))
            return False
        if stamp == self._stamp and not force:
            return False
        # Remember the stamp either way, so a bad file is reported once, not every second.
        self._stamp = stamp
        try:
            loaded = Directory.load(self._path, self._anchors)
        except (OSError, DirectoryError) as exc:
            log.error("directory_reload_refused", path=str(self._path), error=str(exc))
            return False
        self._current = loaded
        log.info("directory_reloaded", nodes=list(loaded.nodes))
        return True

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._current.nodes

    def entry(self, node: str) -> DirectoryEntry:
        return self._current.entry(node)

    def providers(self, record_type: str, subject_kind: str, subject_value: str) -> list[str]:
        return self._current.providers(record_type, subject_kind, subject_value)

    def signing_key(self, node: str, kid: str) -> Ed25519PublicKey:
        return self._current.signing_key(node, kid)

    def ca_bundle_pem(self) -> bytes:
        return self._current.ca_bundle_pem()
