"""Every command README.md shows runs as written, against `concordat up` started as it says.

The commands are read from README's ```sh blocks (a command goes on while a line ends in `\\`
or a quote is still open), so README and this test cannot drift apart: a command with no
expectation here fails the test, an expectation no command matches fails it too, and each
command left out is skipped with its reason.

`concordat up` runs in a copy of the working tree with the checkout's `.venv` and `.tools`
linked in, so it makes its own `.state/` and never touches a developer's keys, demo data or
audit logs. It listens on the fixed ports of `deploy/local/*.toml`, as README's commands
expect, so these tests skip while a port is taken (a developer's own `make up`), and fail
under CI=true. The commands run with `sh -c` in the copy, with `.venv/bin` first on PATH (as
with the virtualenv activated: README's operator sections call the installed `concordat`), in
an 80-column terminal. The nodes decide by the real clock; the demo agreements they use run to
2029-03-31.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import ADMINISTRATIONS, load_config
from gateway.dev.state import REPO_ROOT
from gateway.testing import read_audit

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
READY = r"^Ctrl-C stops every node\.$"
FIRST_CALL_SUBJECT = "SC-B-1931-000037"


# --- README's commands ------------------------------------------------------------------------


def readme_commands(markdown: str) -> list[str]:
    """The shell commands of the ```sh blocks, each as one string to hand to `sh -c`."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            if line.endswith("\\") or not _quotes_closed(pending):
                continue
            commands.append(pending.rstrip("\n"))
            pending = ""
        assert not pending, f"a README command never ends: {pending!r}"
    return commands


def _quotes_closed(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def words(command: str) -> list[str]:
    """The words the shell makes of `command`, its line continuations and comments left out."""
    return shlex.split(command.replace("\\\n", " "), comments=True)


def _flat(text: str) -> str:
    """`text` with every run of whitespace made one space: rich wraps lines at 80 columns."""
    return " ".join(text.split())


COMMANDS = readme_commands(README.read_text())


# --- A checkout to run them in ----------------------------------------------------------------


def copy_checkout(into: Path) -> Path:
    """The working tree as it stands, without git, state or caches; .venv and .tools linked."""
    root = into / "checkout"
    shutil.copytree(
        REPO_ROOT,
        root,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".tools", ".state", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    for linked in (".venv", ".tools"):
        if (REPO_ROOT / linked).exists():
            (root / linked).symlink_to(REPO_ROOT / linked)
    return root


def checkout_env(root: Path) -> dict[str, str]:
    """The environment commands run in: the copy's code (and so its .state) on an 80-column tty."""
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "PATH": f"{root / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "80",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run(root: Path, command: str, timeout: float = 120) -> Ran:
    """Runs one README command as written, with `sh -c` in the checkout."""
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=root,
        env=checkout_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def start_in_background(root: Path, command: str, log: Path) -> subprocess.Popen[bytes]:
    """Starts a long-running README command (`exec`, so SIGINT reaches it, not `sh`)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["sh", "-c", f"exec {command}"],
            cwd=root,
            env=checkout_env(root),
            stdout=out,
            stderr=out,
        )


def serving(root: Path, node: str, *, config: Path | None = None) -> bool:
    """One health check of `node`, at the address its config in the checkout gives."""
    loaded = load_config(config or root / "deploy" / "local" / f"{node}.toml")
    credentials = grpc.ssl_channel_credentials(root_certificates=loaded.tls.ca_cert.read_bytes())
    with grpc.secure_channel(loaded.node.listen, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(root: Path, node: str, *, config: Path | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not serving(root, node, config=config):
        assert time.monotonic() < deadline, f"{node} did not answer SERVING in {timeout} s"
        time.sleep(0.2)


def local_ports(root: Path) -> list[str]:
    """Every address deploy/local/*.toml of the checkout listens on."""
    addresses = []
    for config in sorted((root / "deploy" / "local").glob("*.toml")):
        parsed = tomllib.loads(config.read_text())
        addresses += [parsed["node"]["listen"], parsed["federation"]["listen"]]
    return addresses


def require_free_ports(root: Path) -> None:
    for address in local_ports(root):
        host, _, port = address.rpartition(":")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, int(port)))
            except OSError:
                why = f"{address} of deploy/local is taken (a `make up` of your own?)"
                if os.environ.get("CI") == "true":
                    pytest.fail(f"{why}; under CI the local federation's ports must be free")
                pytest.skip(f"{why} (CI is not 'true')")


class Up:
    """`concordat up` running in a checkout, its stdout and stderr collected as they come."""

    def __init__(self, root: Path, argv: list[str]) -> None:
        self.root = root
        self.process = subprocess.Popen(
            argv,
            cwd=root,
            env=checkout_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for name, lines in self._lines.items():
            stream = getattr(self.process, name)
            threading.Thread(target=lines.extend, args=(stream,), daemon=True).start()

    @property
    def stdout(self) -> str:
        return "".join(self._lines["stdout"])

    @property
    def stderr(self) -> str:
        return "".join(self._lines["stderr"])

    def wait_for(
        self, pattern: str, *, stream: str = "stdout", timeout: float = 120
    ) -> re.Match[str]:
        """The first match of `pattern` (a line, multiline) in one of the streams, once printed."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, "".join(self._lines[stream]), re.M)
            if found:
                return found
            exited = self.process.poll()
            if exited is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # what was printed last
                pytest.fail(
                    f"`concordat up` {'exited ' + str(exited) if exited is not None else 'ran'} "
                    f"without printing {pattern!r} on {stream}\n--- stdout\n{self.stdout}\n"
                    f"--- stderr\n{self.stderr}"
                )
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        """Each node's pid, from the pid files `up` writes."""
        return {
            path.stem: int(path.read_text())
            for path in (self.root / ".state" / "run").glob("*.pid")
        }

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, and `up`'s exit code once it has stopped every node."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        pids = self.pids()
        try:
            self.interrupt()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # Only if `up` failed to stop them: they run in sessions of their own.
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- What each command must do ------------------------------------------------------------------


def _released_first_call(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    out = _flat(ran.stdout)
    assert re.search(r"^exchange [0-9a-f]{32} from holyrood$", ran.stdout, re.M), ran.output
    assert FIRST_CALL_SUBJECT in out
    assert "released fields: registration_id, given_name, family_name, date_of_birth" in out
    assert "obligation: no-onward-disclosure agreement_id=cr-dwp-nrs-births-2026" in out
    assert "obligation: retain-max-days days=90" in out
    assert re.search(r"decisions: egress [0-9a-f]{32}, ingress [0-9a-f]{32}", out), ran.output


def _denied_by_holyrood_naming_its_rule(ran: Ran) -> None:
    assert ran.code == 1, ran.output
    err = _flat(ran.stderr)
    assert (
        "PERMISSION_DENIED: ingress policy of holyrood denied the request: "
        "common.agreement_unknown" in err
    ), ran.output
    for line in ("reason: policy-denied", "rule: common.agreement_unknown", "node: holyrood"):
        assert line in err, ran.output
    assert "agreement_id: cr-dwp-nrs-marriages-2026" in err


def _a_token_for_dwp_at_whitehall(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    _header, payload, signature = ran.stdout.strip().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["organisation"], claims["system"]) == ("dwp", "my-system")
    assert claims["aud"] == "concordat:whitehall"
    assert claims["iss"] == "https://id.whitehall.concordat.test"
    assert claims["jti"] and claims["exp"] > claims["iat"]
    assert signature


def _serving_health(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    assert json.loads(ran.stdout) == {"status": "SERVING"}


def _services_listed(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    assert set(ran.stdout.split()) >= {
        "concordat.exchange.v1.ExchangeService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def _record_released_to_grpcurl(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    reply = json.loads(ran.stdout)
    [record] = reply["records"]
    assert record["birth_registration"]["registration_id"] == FIRST_CALL_SUBJECT
    assert set(record["birth_registration"]) == {"registration_id", "given_name", "date_of_birth"}
    assert reply["released_fields"] == ["registration_id", "given_name", "date_of_birth"]
    assert reply["provider_node"] == "holyrood"
    assert reply["egress_decision_id"] and reply["ingress_decision_id"]


def _meter_read(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    assert "agreement" in ran.stdout and not ran.stderr


def _meter_lines_for_the_agreement(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    rows = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    # The first call, made before this command, is on holyrood's meter as its provider.
    assert rows, ran.output
    assert all(row["agreement_id"] == "cr-dwp-nrs-births-2026" for row in rows), rows


def _egress_allowed(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    assert "egress: ALLOW" in ran.stdout
    assert "rule:         whitehall.egress.allow_under_agreement" in ran.stdout
    assert "agreement:    cr-dwp-nrs-births-2026" in ran.stdout


def _no_recorded_decision_flips(ran: Ran) -> None:
    assert ran.code == 0, ran.output
    out = _flat(ran.stdout)
    assert re.search(r"re-evaluated [1-9]\d* decisions", out), ran.output
    assert "no decision would change" in out


def _first_call_in_the_audit(root: Path) -> dict[str, object]:
    """Whitehall's audit entry of README's first call, making the call if it has none yet."""
    audit = root / ".state" / "whitehall" / "audit.db"
    for attempt in range(2):
        entries = [
            e
            for e in read_audit(audit)
            if e["agreement_id"] == "cr-dwp-nrs-births-2026" and e["outcome"] == "released"
        ]
        if entries:
            return entries[-1]
        if attempt == 0:
            _released_first_call(run(root, first_call()))
    pytest.fail("README's first call left no released entry in whitehall's audit log")


def _write_ask_json(root: Path) -> None:
    # README's step 4 evaluates an input the author wrote; here, the egress input whitehall
    # decided README's first call on, as its audit entry keeps it (`policy eval` reads those).
    (root / "ask.json").write_text(json.dumps(_first_call_in_the_audit(root)))


@dataclass(frozen=True)
class Expect:
    """What a README command must do, or why this test does not run it."""

    name: str
    matches: str  # a regular expression found in the command
    check: Callable[[Ran], None] | None = None
    skip: str = ""
    prepare: Callable[[Path], object] | None = None


EXPECTATIONS = [
    Expect(
        "make-up",
        r"^make up\b",
        skip="after setting up it runs `.venv/bin/concordat up`, which this test runs (make "
        "would first reinstall into the shared .venv whenever pyproject.toml is newer)",
    ),
    Expect("make-test", r"^make test\b", skip="the suite this test is part of"),
    Expect(
        "first-call-releases-the-birth",
        r"concordat call .*--agreement cr-dwp-nrs-births-2026",
        _released_first_call,
    ),
    Expect(
        "denial-names-its-rule-and-node",
        r"concordat call .*--agreement cr-dwp-nrs-marriages-2026",
        _denied_by_holyrood_naming_its_rule,
    ),
    Expect("token-is-minted", r"^\S*concordat token ", _a_token_for_dwp_at_whitehall),
    Expect("buf-curl-health", r"buf curl .*grpc\.health\.v1\.Health/Check", _serving_health),
    Expect("grpcurl-list", r"grpcurl .* list$", _services_listed),
    Expect("grpcurl-health", r"grpcurl .* grpc\.health\.v1\.Health/Check$", _serving_health),
    Expect(
        "grpcurl-get-record", r"grpcurl .*ExchangeService/GetRecord", _record_released_to_grpcurl
    ),
    Expect("audit-meter", r"audit meter --config deploy/local/holyrood\.toml --since", _meter_read),
    Expect(
        "audit-meter-json",
        r"audit meter --config deploy/local/holyrood\.toml --agreement .* --json$",
        _meter_lines_for_the_agreement,
    ),
    Expect(
        "postgres-seed",
        r"python -m gateway\.dev\.demo .*--create-database",
        skip="run by test_the_postgres_demo_answers_the_first_call_as_readme_shows",
    ),
    Expect(
        "postgres-node",
        r"concordat node --config deploy/postgres/holyrood\.toml",
        skip="run by test_the_postgres_demo_answers_the_first_call_as_readme_shows",
    ),
    Expect("edit-register", r"^\$EDITOR ", skip="opens the author's editor"),
    Expect(
        "policy-test",
        r"concordat policy test --jurisdiction whitehall$",
        skip="the same command, on the same bundle, is tests/unit/test_policy_cli.py::"
        "test_policy_test_passes_on_a_real_bundle_with_every_rule_named (its Rego tests take "
        "a minute on a busy 2-core host; nothing in it needs a running federation)",
    ),
    Expect(
        "policy-eval",
        r"concordat policy eval --jurisdiction whitehall --input ask\.json",
        _egress_allowed,
        prepare=_write_ask_json,
    ),
    Expect(
        "policy-impact",
        r"concordat policy impact --jurisdiction whitehall --audit \.state/whitehall/audit\.db",
        _no_recorded_decision_flips,
        prepare=_first_call_in_the_audit,
    ),
    Expect(
        "roll-out",
        r"^cp -r policies/whitehall /srv/",
        skip="copies into a node host's own policy folder (/srv/concordat): another machine",
    ),
]


def expectation(command: str) -> Expect | None:
    """The one expectation whose pattern the command's words (comments left out) match."""
    spoken = " ".join(words(command))
    found = [e for e in EXPECTATIONS if re.search(e.matches, spoken, re.S)]
    return found[0] if len(found) == 1 else None


def command_for(name: str) -> str:
    [command] = [c for c in COMMANDS if (e := expectation(c)) is not None and e.name == name]
    return command


def first_call() -> str:
    return command_for("first-call-releases-the-birth")


# --- The tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_checkout(tmp_path_factory.mktemp("readme"))


@pytest.fixture(scope="module")
def local_up(checkout: Path) -> Iterator[Up]:
    """`concordat up` as `make up` runs it, in the checkout."""
    require_free_ports(checkout)
    up = Up(checkout, [".venv/bin/concordat", "up"])
    try:
        up.wait_for(READY)
        yield up
    finally:
        up.close()


def test_every_readme_command_has_an_expectation_or_a_reason_to_skip_it() -> None:
    assert len(COMMANDS) >= 10, COMMANDS
    unknown = [c for c in COMMANDS if expectation(c) is None]
    assert not unknown, f"README commands with no (or several) expectations here: {unknown}"
    unused = [e.name for e in EXPECTATIONS if not any(expectation(c) is e for c in COMMANDS)]
    assert not unused, f"expectations no README command matches any more: {unused}"


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, id=getattr(expectation(c), "name", f"unknown-{i}"))
        for i, c in enumerate(COMMANDS)
    ],
)
def test_readme_command_runs_as_written(checkout: Path, local_up: Up, command: str) -> None:
    expected = expectation(command)
    assert expected is not None, f"no expectation for README command {command!r}"
    if expected.skip:
        pytest.skip(expected.skip)
    assert expected.check is not None
    if expected.prepare is not None:
        expected.prepare(checkout)
    expected.check(run(checkout, command))


def test_the_call_concordat_up_prints_is_readme_s_first_call_and_runs_as_pasted(
    checkout: Path, local_up: Up
) -> None:
    lines = local_up.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Try a call")) + 1
    printed = []
    for line in lines[start:]:
        printed.append(line)
        if not line.endswith("\\"):
            break
    assert len(printed) > 1
    assert all(len(line) < 80 for line in printed), printed
    assert all(line.endswith(" \\") for line in printed[:-1]), printed
    assert words("\n".join(printed)) == words(first_call())

    _released_first_call(run(checkout, "\n".join(printed)))


def test_ctrl_c_stops_every_node_and_removes_their_pid_files(checkout: Path, local_up: Up) -> None:
    pids = local_up.pids()
    assert set(pids) == set(ADMINISTRATIONS)

    assert local_up.interrupt() == 0, local_up.stderr
    assert "stopping ..." in local_up.stdout
    assert not [node for node, pid in pids.items() if alive(pid)]
    assert not list((checkout / ".state" / "run").glob("*.pid"))


def _require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
        ).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 must be reachable under CI: {exc}")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable (CI is not 'true')")


@pytest.mark.postgres
def test_the_postgres_demo_answers_the_first_call_as_readme_shows(
    checkout: Path, local_up: Up
) -> None:
    _require_postgres()
    local_up.interrupt()  # holyrood's ports go to the node README starts from PostgreSQL
    [three] = re.findall(r"`(\.venv/bin/concordat up --nodes [a-z,]+)`", README.read_text())
    others = Up(checkout, shlex.split(three))
    try:
        others.wait_for(READY)
        seeded = run(checkout, command_for("postgres-seed"), timeout=300)
        assert seeded.code == 0, seeded.output
        config = checkout / "deploy" / "postgres" / "holyrood.toml"
        holyrood = start_in_background(
            checkout, command_for("postgres-node"), checkout / "postgres-holyrood.log"
        )
        try:
            wait_serving(checkout, "holyrood", config=config)
            _released_first_call(run(checkout, first_call()))
            assert holyrood.poll() is None
        finally:
            holyrood.send_signal(signal.SIGINT)
            assert holyrood.wait(timeout=30) == 0
    finally:
        others.close()
