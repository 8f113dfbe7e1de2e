"""A node's metrics as an operator's tools see them.

A real Prometheus (Debian's `prometheus` package, which `scripts/setup_services.sh` installs),
started here on a free loopback port with a config and data directory of its own, scrapes a
running node every second; `promtool` checks the exposition, the deployed scrape config and the
alerting rules, and runs the rules' unit tests. Without the binaries these tests skip, and
under CI=true they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import string
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import pytest

from adapters.memory import MemorySource
from concordat.exchange.v1 import exchange_pb2
from gateway.testing import RunningNode, get_request, running_node
from tests.integration.conftest import BUNDLE
from tests.support.real_opa import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS = Path(os.environ.get("CONCORDAT_PROMETHEUS", "/usr/bin/prometheus"))
PROMTOOL = Path(os.environ.get("CONCORDAT_PROMTOOL", "/usr/bin/promtool"))


def require(tool: Path) -> Path:
    """The binary for a test; without it the test skips, or fails under CI."""
    if tool.is_file() and os.access(tool, os.X_OK):
        return tool
    why = f"{tool} is missing; scripts/setup_services.sh installs Debian's prometheus package"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; CI must run the real Prometheus")
    pytest.skip(why)


@pytest.fixture
async def node(tmp_path: Path, source: MemorySource) -> AsyncIterator[RunningNode]:
    async with running_node(
        tmp_path,
        "whitehall",
        sources={t: source for t in source.record_types},
        policy={"bundle": [str(BUNDLE)]},
        metrics={"listen": "127.0.0.1:0"},
    ) as running:
        yield running


def metrics_address(node: RunningNode) -> str:
    assert node.node.metrics is not None
    return f"127.0.0.1:{node.node.metrics.server.port}"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback http only
        return str(answer.read().decode())


async def exposition(node: RunningNode) -> str:
    """What Prometheus reads from the node, in the text format."""
    return await asyncio.to_thread(_get, f"http://{metrics_address(node)}/metrics")


async def _ask(node: RunningNode, request: exchange_pb2.GetRecordRequest) -> grpc.StatusCode:
    client = node.client(organisation="dwp")
    try:
        await client.get_record(request)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await client.close()
    return grpc.StatusCode.OK


async def allow_deny_refuse(node: RunningNode, nino: str) -> None:
    """An allow, a denial by the ingress rule for a suspended agreement, and a refusal."""
    person = {"nino": nino, "purpose": "FRAUD", "fields": ["nino", "given_name"]}
    assert await _ask(node, get_request("PERSON", agreement_id="TEST-FRAUD-1", **person)) == (
        grpc.StatusCode.OK
    )
    assert await _ask(node, get_request("PERSON", agreement_id="TEST-SUSPENDED", **person)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    refused = get_request("PERSON", agreement_id="TEST-FRAUD-1", **{**person, "nino": "NOT-A-NINO"})
    assert await _ask(node, refused) == grpc.StatusCode.INVALID_ARGUMENT


class Prometheus:
    """`with Prometheus(workdir, targets) as prometheus:` a real server scraping the targets."""

    def __init__(self, workdir: Path, targets: Iterable[str], *, interval: str = "1s") -> None:
        self.port = free_port()
        self._workdir = workdir
        self._config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {
                    "job_name": "concordat",
                    "static_configs": [
                        {"targets": list(targets), "labels": {"administration": "whitehall"}}
                    ],
                }
            ],
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        config = self._workdir / "prometheus.yml"
        # JSON is YAML: the config is written without a YAML library.
        config.write_text(json.dumps(self._config))
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(require(PROMETHEUS)),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self._workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self._process.poll() is None, self.log_path.read_text()
            try:
                _get(f"{self.url}/-/ready")
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise AssertionError(f"Prometheus was not ready in 30 s: {self.log_path.read_text()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now, through Prometheus's HTTP API."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        answer = json.loads(_get(url))
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expr: str) -> float:
        [sample] = self.query(expr)
        return float(sample["value"][1])

    async def wait_for(self, expr: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(await asyncio.to_thread(self.query, expr)) < count:
            assert time.monotonic() < deadline, f"no {count} series for {expr} in {timeout} s"
            await asyncio.sleep(0.2)


async def test_prometheus_scrapes_the_series_of_an_allow_a_denial_naming_its_rule_and_a_refusal(
    tmp_path: Path, node: RunningNode, people: list[dict[str, object]]
) -> None:
    await allow_deny_refuse(node, str(people[0]["nino"]))

    with Prometheus(tmp_path, [metrics_address(node)]) as prometheus:
        await prometheus.wait_for("concordat_exchanges_total", 3)
        value = prometheus.value

        outcomes = {
            (s["metric"]["outcome"], s["metric"]["reason"]): float(s["value"][1])
            for s in prometheus.query('concordat_exchanges_total{rpc="GetRecord",role="local"}')
        }
        assert outcomes == {
            ("released", "ok"): 1,
            ("denied", "policy-denied"): 1,
            ("refused", "invalid-request"): 1,
        }
        [denial] = prometheus.query("concordat_denials_total")
        assert denial["metric"] | {"__name__": ""} == {
            "__name__": "",
            "job": "concordat",
            "instance": metrics_address(node),
            "administration": "whitehall",
            "direction": "ingress",
            "node": "whitehall",
            "rule": "test.ingress.agreement_suspended",
        }
        by_agreement = {
            s["metric"]["agreement"]: s["metric"]["outcome"]
            for s in prometheus.query("concordat_agreement_exchanges_total")
        }
        # The refusal was never validated far enough to name an agreement the node holds.
        assert by_agreement == {
            "TEST-FRAUD-1": "released",
            "TEST-SUSPENDED": "denied",
            "unregistered": "refused",
        }
        assert value('concordat_records_released_total{agreement="TEST-FRAUD-1"}') == 1
        assert value('concordat_bytes_released_total{agreement="TEST-FRAUD-1"}') > 0
        # Both asks that were valid passed the egress decision; only the allow was fetched.
        stages = {
            s["metric"]["stage"]: float(s["value"][1])
            for s in prometheus.query("concordat_stage_duration_seconds_count")
        }
        assert stages["validate_request"] == 3
        assert stages["decide_egress"] == stages["decide_ingress"] == 2
        assert stages["fetch"] == 1
        assert stages["audit"] == 3
        assert value("sum(concordat_exchange_duration_seconds_count)") == 3
        assert value('sum(concordat_exchange_duration_seconds_bucket{le="+Inf"})') == 3
        assert (
            value("concordat_decision_cache_hits_total + concordat_decision_cache_misses_total")
            == 4
        )
        assert value("concordat_audit_batch_entries_sum") == 3
        assert value("concordat_audit_queue_depth") == 0
        assert value("concordat_audit_failing") == 0
        assert value('concordat_policy_reloads_total{outcome="refused"}') == 0
        assert value("concordat_policy_register_agreements") == 3
        assert value("concordat_replay_cache_entries") == 3
        assert (
            value('concordat_tls_certificate_expiry_timestamp_seconds{certificate="node"} - time()')
            > 14 * 86400
        )
        assert value('concordat_node_info{node="whitehall"}') == 1


async def test_promtool_passes_the_exposition(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    await allow_deny_refuse(node, str(people[0]["nino"]))
    text = await exposition(node)

    checked = subprocess.run(
        [str(require(PROMTOOL)), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip() and not checked.stderr.strip()


def test_the_deployed_rules_pass_promtool_and_each_alert_fires_on_its_series() -> None:
    promtool = str(require(PROMTOOL))
    for command in (
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")],
    ):
        ran = subprocess.run(
            [promtool, *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert ran.returncode == 0, (command, ran.stdout + ran.stderr)


# PromQL words that are not metric names.
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's `label_values`) reads."""
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for found in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        function = re.match(r"\s*\(", expr[found.end() :])
        if not function and found.group().lower() not in _KEYWORDS:
            names.add(found.group())
    return names


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition's families can carry, by each family's type."""
    suffixes = {
        "counter": ("",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "untyped": ("",),
    }
    return {
        name + suffix
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
        for suffix in suffixes[kind]
    }


def _dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for panel in dashboard["panels"]:
        queries += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


async def test_every_dashboard_and_alert_query_names_only_metrics_the_node_exports(
    node: RunningNode,
) -> None:
    exported = exported_names(await exposition(node))
    dashboard = json.loads((DEPLOY / "grafana" / "concordat.json").read_text())
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    alert_queries = re.findall(r"expr: >-\n((?:\s{10}.*\n)+)|expr: (.+)", alerts)

    queries = _dashboard_queries(dashboard)
    assert len(queries) > 25 and all(metric_names(q) for q in queries)
    unknown = {q: metric_names(q) - exported for q in queries if metric_names(q) - exported}
    assert not unknown
    flattened = [block or line for block, line in alert_queries]
    assert len(flattened) == 8
    # `up` is Prometheus's own: whether it could scrape the node at all.
    unknown = {q: metric_names(q) - exported - {"up"} for q in flattened}
    assert not {q: names for q, names in unknown.items() if names}


def _junk(rng: random.Random, length: int = 24) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=length))


async def _hostile_round(node: RunningNode, nino: str, rng: random.Random) -> list[str]:
    """Requests whose every free value is random; returns the values sent."""
    sent: list[str] = []
    for _ in range(4):
        agreement, provider, field, reference, key = (_junk(rng) for _ in range(5))
        sent += [agreement, provider, field, reference, key]
        asks = [
            get_request(
                "PERSON", nino=nino, purpose="FRAUD", agreement_id=agreement, fields=["nino"]
            ),
            get_request(
                "PERSON",
                nino=nino,
                purpose="FRAUD",
                agreement_id="TEST-FRAUD-1",
                fields=["nino", field],
                case_reference=reference,
                idempotency_key=key,
            ),
            get_request(
                "PERSON", nino=nino, purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=[field]
            ),
        ]
        with_provider = get_request(
            "PERSON", nino=nino, purpose="FRAUD", agreement_id=agreement, fields=["nino"]
        )
        with_provider.provider_node = provider
        unknown_type = get_request(
            "PERSON", nino=nino, purpose="FRAUD", agreement_id=agreement, fields=["nino"]
        )
        unknown_type.record_type = rng.randrange(1000, 100_000)
        for request in [*asks, with_provider, unknown_type]:
            await _ask(node, request)
    return sent


def _series(text: str) -> list[str]:
    return [line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"]


async def test_hostile_request_values_never_become_labels_and_the_series_count_stays_put(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    nino = str(people[0]["nino"])
    rng = random.Random(17)  # noqa: S311 - hostile test values, not secrets
    await _hostile_round(node, nino, rng)
    before = _series(await exposition(node))

    sent = await _hostile_round(node, nino, rng)
    sent += await _hostile_round(node, nino, rng)
    after = await exposition(node)

    assert sorted(_series(after)) == sorted(before)
    assert not [value for value in sent if value in after]
    assert 'agreement="unregistered"' in after


def test_a_peers_denial_names_only_rules_and_nodes_this_node_knows() -> None:
    from gateway.errors import PolicyDenied
    from gateway.exchange import Exchange
    from gateway.observability.metrics import ExchangeTally, Vocabulary
    from gateway.policy.bundle import load_bundle

    vocabulary = Vocabulary.of(load_bundle([BUNDLE]))
    tally = ExchangeTally(lambda: vocabulary)
    for rule, node in (
        ("test.ingress.agreement_suspended", "holyrood"),
        ("holyrood.made_up_rule", "holyrood"),
        ("x" * 200, "elsewhere"),
    ):
        exchange = Exchange(
            rpc="GetRecord", role="requester", request=None, metadata=(), deadline_seconds=1
        )
        exchange.agreement_id = "TEST-FRAUD-1"
        exchange.error = PolicyDenied("denied", metadata={"peer": node, "rule": rule, "node": node})
        tally.exchange_ended(exchange)

    assert tally.denials == {
        ("ingress", "holyrood", "test.ingress.agreement_suspended"): 1,
        ("ingress", "holyrood", "other"): 1,
        ("ingress", "other", "other"): 1,
    }
    assert tally.by_agreement == {("TEST-FRAUD-1", "requester", "denied"): 3}
