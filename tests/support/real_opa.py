"""The real OPA, as an operator runs it: `opa run --server` on loopback serving a bundle.

The binary is the pinned release that `scripts/setup_services.sh` builds into `.tools/bin`
(or `$CONCORDAT_OPA`). `OpaServer` starts it on a free port and waits until OPA reports its
bundles activated (`GET /health?bundles`), so the first decision is never refused for want of
a loaded bundle.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.loopback import LoopbackHttpServer

REPO = Path(__file__).resolve().parents[2]
PINNED_VERSION = "1.22.4"


class OpaBinaryMissing(RuntimeError):
    """The pinned OPA is not built; `scripts/setup_services.sh tools` builds it."""


def opa_binary() -> Path:
    """The OPA binary the suite and the bench use."""
    configured = os.environ.get("CONCORDAT_OPA")
    candidate = Path(configured) if configured else REPO / ".tools" / "bin" / "opa"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("opa")
    if found and not configured:
        return Path(found)
    raise OpaBinaryMissing(
        f"no OPA binary at {candidate}; run scripts/setup_services.sh tools (it builds "
        f"OPA {PINNED_VERSION} with go install)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_opa(
    *arguments: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one OPA command (`opa test ...`) and return what it printed, without raising."""
    return subprocess.run(
        [str(opa_binary()), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


class OpaServer:
    """`with OpaServer([bundle]) as opa:` serves the bundle(s) at `opa.url` until exit.

    `bundles` are paths given to `--bundle` (a tarball from `concordat policy build` or a
    folder). `config` is written as OPA's config file (decision logs, masking, keys...);
    `arguments` are extra command-line flags (`--verification-key`, ...). The server's
    own output goes to `log_path` (a temporary file beside the first bundle by default).
    With `wait_for_bundles=False` it counts as started once it answers, bundles activated
    or not (an OPA whose bundle service has nothing to give yet).
    """

    def __init__(
        self,
        bundles: Sequence[Path],
        *,
        config: dict[str, Any] | None = None,
        arguments: Sequence[str] = (),
        workdir: Path | None = None,
        ready_timeout: float = 60.0,
        wait_for_bundles: bool = True,
    ) -> None:
        self.bundles = [Path(b) for b in bundles]
        self.port = free_port()
        self._config = config
        self._arguments = list(arguments)
        self._workdir = workdir or self.bundles[0].parent
        self._ready_timeout = ready_timeout
        self._wait_for_bundles = wait_for_bundles
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = self._workdir / f"opa-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The running server's process id (for its memory and CPU in /proc)."""
        if self._process is None:
            raise RuntimeError("OPA is not running")
        return self._process.pid

    def __enter__(self) -> OpaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = [
            str(opa_binary()),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
            "--skip-version-check",
        ]
        if self._config is not None:
            config_path = self._workdir / f"opa-{self.port}.json"
            config_path.write_text(json.dumps(self._config))
            argv += ["--config-file", str(config_path)]
        argv += self._arguments
        for bundle in self.bundles:
            argv += ["--bundle", str(bundle)]
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"OPA exited with {self._process.returncode}: {self.output()}")
            if self.health(bundles=self._wait_for_bundles) == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"OPA was not ready in {self._ready_timeout} s: {self.output()}")

    def health(self, *, bundles: bool = False) -> int | None:
        """The HTTP status of OPA's health check (None when it does not answer)."""
        query = "?bundles" if bundles else ""
        try:
            with urllib.request.urlopen(f"{self.url}/health{query}", timeout=2) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def output(self) -> str:
        """What OPA has printed so far (its JSON log lines, decision logs when on console)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class BundleService(LoopbackHttpServer):
    """`with BundleService(folder) as service:` an OPA bundle service on loopback.

    It serves the files in `folder` at `service.url` (`GET /<name>`), and 404 for a file
    not there yet, as a bundle server that has nothing to give; `publish` puts one there.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(functools.partial(_QuietFiles, directory=str(folder)))

    def publish(self, path: Path, name: str) -> None:
        shutil.copy(path, self.folder / name)

    def __enter__(self) -> BundleService:
        self.folder.mkdir(parents=True, exist_ok=True)
        super().__enter__()
        return self


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


def require_opa() -> Path:
    """The OPA binary for a test; without it the test skips, or fails under CI."""
    import pytest

    try:
        return opa_binary()
    except OpaBinaryMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc}; CI must run the real OPA")
        pytest.skip(str(exc))
