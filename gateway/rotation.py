"""Rotation without a restart: a running node takes up new keys, certificates and directory.

What is watched, and what a change does (docs/operations.md says it for operators):

    [tls] key, cert, ca_cert   both ports serve the new certificate from the next handshake;
                               peer channels present it from each peer's next call
    [federation] directory     verified, then: the federation port's client roots become its
                               CA bundle, a peer whose endpoint or CA changed gets a new
                               channel (calls on the old one finish), new signing keys of
                               peers are accepted
    [keys] signing_key         once this node's own directory entry publishes its key id,
                               assertions, receipts and audit seals are signed with it

Triggers: every ROTATION_POLL_SECONDS the watcher compares each file's stamp (inode, mtime,
size) with the last it read, so files are read only when they change; SIGHUP re-reads them
all at once. Nothing here runs per call: signers read the key holder, handshakes ask the port's
certificates, lookups read the directory in memory.

Fail closed: material that does not check out (a certificate that is not its key's, names
another node, is not issued by the node's CA, or has expired; a directory that does not
verify; a key that is not Ed25519) is refused with one log line (`*_refused`) and the node
keeps serving with what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog
from cryptography import x509

from gateway.api.server import ServerCertificates
from gateway.config import TlsConfig
from gateway.errors import PeerRejected
from gateway.federation.directory import public_key_kid
from gateway.federation.live_directory import FileStamp, LiveDirectory, file_stamp
from gateway.federation.peers import PeerClients
from gateway.keys import SigningKey, SigningKeys, TlsMaterial, load_signing_key, load_tls_material

log = structlog.get_logger("concordat.rotation")

# As often as the directory and the policy bundle are checked by default.
ROTATION_POLL_SECONDS = 1.0


class Rotation:
    """Watches a node's TLS files, signing key and directory, and swaps in what changed."""

    def __init__(
        self,
        *,
        node: str,
        tls: TlsConfig,
        tls_material: TlsMaterial,
        signing_key_path: Path,
        signing_keys: SigningKeys,
        exchange_port: ServerCertificates,
        federation_port: ServerCertificates | None = None,
        directory: LiveDirectory | None = None,
        peers: PeerClients | None = None,
        interval_seconds: float = ROTATION_POLL_SECONDS,
    ) -> None:
        self._node = node
        self._tls = tls
        self._tls_material = tls_material
        self._signing_key_path = signing_key_path
        self._signing_keys = signing_keys
        self._exchange_port = exchange_port
        self._federation_port = federation_port
        self._directory = directory
        self._peers = peers
        self._interval = interval_seconds
        self._tls_stamp = self._stamps(self._tls_paths())
        self._signing_stamp = self._stamps((signing_key_path,))
        # A new signing key read from the file, waiting for this node's entry to publish it.
        self._staged: SigningKey | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._forced = False
        self._task: asyncio.Task[None] | None = None
        self._sighup: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Starts polling the files."""
        self._task = asyncio.get_running_loop().create_task(
            self._watch(), name="concordat-rotation"
        )

    def reload_on_sighup(self) -> None:
        """Makes SIGHUP re-read every watched file at once (the process's node only)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_now)
        self._sighup = loop

    def reload_now(self) -> None:
        """Asks the watcher to re-read every file now, changed or not."""
        self._forced = True
        self._wake.set()

    async def close(self) -> None:
        if self._sighup is not None:
            self._sighup.remove_signal_handler(signal.SIGHUP)
            self._sighup = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self, *, force: bool = False) -> None:
        """One pass over the watched files; `force` re-reads them even if their stamps agree."""
        async with self._lock:
            self._check_tls(force=force)
            if self._directory is not None and self._directory.refresh(force=force):
                self._offer_federation_roots()
            self._check_signing_key(force=force)

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            forced, self._forced = self._forced, False
            # The watcher must outlive any one bad pass; the next file change gets its own.
            try:
                await self.check(force=forced)
            except Exception:
                log.exception("rotation_check_failed")
            if forced:
                log.info("rotation_reloaded", trigger="sighup")

    def _tls_paths(self) -> tuple[Path, ...]:
        return (self._tls.key, self._tls.cert, self._tls.ca_cert)

    def _stamps(self, paths: tuple[Path, ...]) -> tuple[FileStamp, ...] | None:
        try:
            return tuple(file_stamp(path) for path in paths)
        except OSError:
            # Missing for now (mid-replacement): the next pass reads it when it is back.
            return None

    def _check_tls(self, *, force: bool) -> None:
        stamp = self._stamps(self._tls_paths())
        if stamp is None or (stamp == self._tls_stamp and not force):
            return
        self._tls_stamp = stamp
        try:
            material = load_tls_material(
                key=self._tls.key, cert=self._tls.cert, ca_cert=self._tls.ca_cert, node=self._node
            )
        except (OSError, ValueError) as exc:
            log.error("tls_rotation_refused", error=str(exc))
            return
        if material == self._tls_material:
            return
        self._exchange_port.offer(key_pem=material.key_pem, cert_pem=material.cert_pem)
        if self._federation_port is not None:
            self._federation_port.offer(key_pem=material.key_pem, cert_pem=material.cert_pem)
        if self._peers is not None:
            self._peers.use_client_identity(key_pem=material.key_pem, cert_pem=material.cert_pem)
        self._tls_material = material
        leaf = x509.load_pem_x509_certificate(material.cert_pem)
        log.info(
            "tls_rotated",
            serial=f"{leaf.serial_number:x}",
            not_after=leaf.not_valid_after_utc.isoformat(),
        )

    def _offer_federation_roots(self) -> None:
        if self._federation_port is None or self._directory is None:
            return
        if self._federation_port.offer(client_roots=self._directory.ca_bundle_pem()):
            log.info("federation_roots_rotated", nodes=list(self._directory.nodes))

    def _check_signing_key(self, *, force: bool) -> None:
        stamp = self._stamps((self._signing_key_path,))
        if stamp is not None and (stamp != self._signing_stamp or force):
            self._signing_stamp = stamp
            self._stage_signing_key()
        if self._staged is not None and self._published(self._staged):
            previous = self._signing_keys.current()
            self._signing_keys.replace(self._staged)
            log.info("signing_key_rotated", kid=self._staged.kid, previous_kid=previous.kid)
            self._staged = None

    def _stage_signing_key(self) -> None:
        try:
            private = load_signing_key(self._signing_key_path)
        except (OSError, ValueError) as exc:
            log.error("signing_key_rotation_refused", error=str(exc))
            return
        key = SigningKey.of(private, public_key_kid(self._node, private.public_key()))
        if key.kid == self._signing_keys.current().kid:
            self._staged = None
            return
        newly_staged = self._staged is None or self._staged.kid != key.kid
        if newly_staged and not self._published(key):
            # Peers would refuse what it signs until they can look its id up.
            log.warning(
                "signing_key_rotation_waiting",
                kid=key.kid,
                reason="this node's directory entry does not publish the key yet",
            )
        self._staged = key

    def _published(self, key: SigningKey) -> bool:
        if self._directory is None:
            return True
        try:
            return key.kid in self._directory.entry(self._node).signing_keys
        except PeerRejected:
            return False
