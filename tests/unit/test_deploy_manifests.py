"""The deployment artefacts of deploy/: every Kubernetes overlay rendered by the real kustomize
(`scripts/setup_services.sh tools` builds the pinned one into .tools/bin) and validated,
strictly, against the schemas of one pinned Kubernetes release (`kubernetes-validate`), then
held to the properties a production node depends on; the compose federation checked by
`docker compose config` where docker compose exists and by its structure everywhere; the
node configs of both kept in step with the loopback federation's; the image definition
checked against the ports and paths the configs use.

The node configs are parsed with tomllib and, once gateway/config.py knows the `[state]`
section they use, validated through `parse_config` as well.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import ADMINISTRATIONS, NodeConfig, parse_config
from gateway.federation.directory import Directory
from gateway.keys import load_public_key

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
# The releases the manifests are held to: the oldest (native sidecars, PDB
# unhealthyPodEvictionPolicy and the restricted Pod Security Standard are all GA there) and
# the newest whose schemas kubernetes-validate ships, for anything removed since.
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")
KUBERNETES_VERSION = KUBERNETES_VERSIONS[0]
# [node] shutdown_grace_seconds when a config leaves it out (gateway/config.py).
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10
OPA_IMAGE = "openpolicyagent/opa:"


def kustomize_binary() -> Path:
    """The pinned kustomize; without it the test skips, or fails under CI."""
    for candidate in (os.environ.get("CONCORDAT_KUSTOMIZE"), ROOT / ".tools" / "bin" / "kustomize"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("kustomize")
    if found:
        return Path(found)
    message = "kustomize not found: run scripts/setup_services.sh tools"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must render the real manifests")
    pytest.skip(message)


def kustomize_build(folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [str(kustomize_binary()), "build", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="module", params=ADMINISTRATIONS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    node: str = request.param
    return node, kustomize_build(KUBERNETES / "overlays" / node)


def one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def node_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "node")


def container_port(container: dict[str, Any], name: str) -> int:
    port: int = next(p["containerPort"] for p in container["ports"] if p["name"] == name)
    return port


def rendered_node_config(resources: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = one([r for r in resources if r["kind"] == "ConfigMap"], "ConfigMap")
    return tomllib.loads(config_map["data"]["node.toml"])


def listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def every_container(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def validate_through_the_node_schema(raw: dict[str, Any]) -> None:
    """parse_config on the file as written, once the config schema has a [state] section."""
    if "state" not in NodeConfig.model_fields:
        return
    config = parse_config(raw, base=Path("/"))
    assert config.state is not None
    assert config.state.url_file is not None


# Kubernetes


def test_every_overlay_renders_and_passes_the_pinned_kubernetes_schemas_strictly(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    node, resources = overlay
    for version in KUBERNETES_VERSIONS:
        for resource in resources:
            kubernetes_validate.validate(resource, version, strict=True)
    kinds = sorted(r["kind"] for r in resources)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]
    namespace = f"concordat-{node}"
    assert one(resources, "Namespace")["metadata"]["name"] == namespace
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        namespace
    }


def test_the_base_alone_passes_the_schemas_strictly() -> None:
    for resource in kustomize_build(KUBERNETES / "base"):
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_deployment_with_a_field_kubernetes_does_not_have() -> None:
    deployment = one(kustomize_build(KUBERNETES / "base"), "Deployment")
    node_container(deployment)["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_opa_component_adds_a_sidecar_to_any_overlay(tmp_path: Path) -> None:
    # kustomize takes other kustomizations by relative path only.
    cardiff = os.path.relpath(KUBERNETES / "overlays" / "cardiff", tmp_path)
    sidecar = os.path.relpath(KUBERNETES / "components" / "opa-sidecar", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources:\n  - {cardiff}\n"
        f"components:\n  - {sidecar}\n"
    )
    resources = kustomize_build(tmp_path)
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    sidecars = one(resources, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert [(c["name"], c["restartPolicy"]) for c in sidecars] == [("opa", "Always")]
    assert "--addr=127.0.0.1:8181" in sidecars[0]["args"]


def test_a_node_runs_as_two_or_more_replicas_that_roll_without_losing_capacity(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    spec = one(resources, "Deployment")["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_disruption_budget_keeps_one_of_the_deployments_pods(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    deployment, budget = one(resources, "Deployment"), one(resources, "PodDisruptionBudget")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_service_sends_exchange_and_federation_traffic_to_the_deployments_pods(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    deployment, service = one(resources, "Deployment"), one(resources, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"exchange", "federation"}


def test_probes_ask_grpc_health_over_tls_on_the_exchange_port(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    container = node_container(one(resources, "Deployment"))
    exchange = container_port(container, "exchange")
    assert listen_port(rendered_node_config(resources)["node"]["listen"]) == exchange
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "grpc_health_probe" in command, probe
        assert f"-addr=127.0.0.1:{exchange}" in command, probe
        # The exchange port speaks TLS only, and the overall health is service "".
        assert " -tls " in f" {command} ", probe
        assert "-service" not in command, probe
    # Readiness follows SERVING; liveness accepts NOT_SERVING (grpc_health_probe's exit 4).
    assert container["readinessProbe"]["exec"]["command"][0] == "grpc_health_probe"
    assert '[ "$code" -eq 4 ]' in container["livenessProbe"]["exec"]["command"][-1]


def test_the_federation_port_is_open_to_the_peers_only(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    node, resources = overlay
    policy = one(resources, "NetworkPolicy")
    pod_labels = one(resources, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    peer_namespaces = {f"concordat-{n}" for n in ADMINISTRATIONS if n != node}
    federation_rules = []
    for rule in policy["spec"]["ingress"]:
        # A rule without ports opens every port, and one without `from` admits everyone.
        assert rule.get("ports"), rule
        assert rule.get("from"), rule
        if any(p["port"] in ("federation", 7500) for p in rule["ports"]):
            federation_rules.append(rule)
    assert len(federation_rules) == 1
    rule = federation_rules[0]
    assert [p["port"] for p in rule["ports"]] == ["federation"]
    namespaces: set[str] = set()
    for peer in rule["from"]:
        assert "podSelector" not in peer, peer
        if "ipBlock" in peer:
            block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            assert block.prefixlen >= 24, f"{block} is wider than one peer's egress range"
            continue
        (expression,) = peer["namespaceSelector"]["matchExpressions"]
        assert expression["key"] == "kubernetes.io/metadata.name"
        assert expression["operator"] == "In"
        namespaces |= set(expression["values"])
    assert namespaces == peer_namespaces


def test_no_rendered_resource_carries_key_material(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    assert [r for r in resources if r["kind"] == "Secret"] == []
    text = yaml.safe_dump_all(resources)
    assert "PRIVATE KEY" not in text
    assert not re.search(r"postgres(?:ql)?://[^@\s]*:[^@\s]*@", text), "a password in a URL"
    volumes = one(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]
    secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert secrets == {
        "concordat-tls",
        "concordat-signing-key",
        "concordat-hash-keys",
        "concordat-state-url",
    }


def test_every_container_has_resource_requests_and_limits(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    for container in every_container(one(resources, "Deployment")):
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, container["name"]


def test_the_pod_outlasts_the_nodes_shutdown_grace(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    pod = one(resources, "Deployment")["spec"]["template"]["spec"]
    grace = rendered_node_config(resources)["node"].get(
        "shutdown_grace_seconds", DEFAULT_SHUTDOWN_GRACE_SECONDS
    )
    pre_stop = node_container(one(resources, "Deployment"))["lifecycle"]["preStop"]
    pause = int(pre_stop["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + grace


def test_the_node_config_reads_its_files_from_what_the_pod_mounts(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    node, resources = overlay
    raw = rendered_node_config(resources)
    container = node_container(one(resources, "Deployment"))
    assert raw["node"]["name"] == node
    assert listen_port(raw["federation"]["listen"]) == container_port(container, "federation")
    assert listen_port(raw["metrics"]["listen"]) == container_port(container, "metrics")
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    files = [
        raw["tls"]["ca_cert"],
        raw["tls"]["cert"],
        raw["tls"]["key"],
        *raw["keys"].values(),
        raw["state"]["url_file"],
        raw["federation"]["directory"],
        *raw["federation"]["trust_anchors"].values(),
    ]
    for path in files:
        assert any(Path(path).parent == Path(mount) for mount in mounts), path
    validate_through_the_node_schema(raw)


def test_a_node_decides_through_opa_exactly_when_its_pod_has_the_sidecar(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = overlay
    policy = rendered_node_config(resources)["policy"]
    images = [c["image"] for c in every_container(one(resources, "Deployment"))]
    has_sidecar = any(image.startswith(OPA_IMAGE) for image in images)
    assert (policy.get("engine", "embedded") == "opa") == has_sidecar
    if has_sidecar:
        assert policy["opa_url"] == "http://127.0.0.1:8181"


# Node configs of compose and Kubernetes against the loopback federation's


@pytest.mark.parametrize("node", ADMINISTRATIONS)
def test_deployed_configs_serve_the_records_the_local_federation_serves(node: str) -> None:
    local = tomllib.loads((DEPLOY / "local" / f"{node}.toml").read_text())
    compose = tomllib.loads((COMPOSE / f"{node}.toml").read_text())
    kubernetes = tomllib.loads((KUBERNETES / "overlays" / node / "node.toml").read_text())
    for deployed in (compose, kubernetes):
        assert deployed["node"]["name"] == node
        assert deployed["federation"]["serves"] == local["federation"]["serves"]
        assert set(deployed["federation"]["trust_anchors"]) == set(ADMINISTRATIONS)
        assert deployed["auth"]["issuer"] == local["auth"]["issuer"]
        assert deployed["auth"]["audience"] == local["auth"]["audience"]
    assert compose["sources"]["demo"]["records"] == local["sources"]["demo"]["records"]
    assert kubernetes["sources"]["registers"]["records"] == local["sources"]["demo"]["records"]


# Compose


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return loaded


def test_compose_file_passes_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed; the compose file is checked by its structure")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        pytest.skip(
            "docker compose is not available here ("
            + (version.stderr or version.stdout).strip()
            + "); the compose file is checked by its structure"
        )
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_gives_each_node_its_own_postgresql_and_starts_it_only_once_healthy() -> None:
    compose = compose_file()
    services = compose["services"]
    volumes = set()
    for node in ADMINISTRATIONS:
        database, service = services[f"{node}-db"], services[node]
        assert database["image"].startswith("postgres:") or "POSTGRES" in database["image"]
        assert "pg_isready" in " ".join(database["healthcheck"]["test"])
        (volume,) = database["volumes"]
        volumes.add(volume.split(":")[0])
        assert service["depends_on"] == {f"{node}-db": {"condition": "service_healthy"}}
        assert "grpc_health_probe" in service["healthcheck"]["test"]
        # Every secret and config the node mounts is its own administration's or public.
        for secret in service["secrets"]:
            assert secret["source"].startswith(f"{node}-"), secret
        assert f"./{node}.toml:/etc/concordat/node.toml:ro" in service["volumes"]
    assert len(volumes) == len(ADMINISTRATIONS)
    # Nothing the federation mounts is defined without a file behind it.
    for section in ("secrets", "configs"):
        used = {
            item["source"] for service in services.values() for item in service.get(section, [])
        }
        assert used == set(compose[section])
        assert all(entry["file"].startswith("../../.state/") for entry in compose[section].values())


@pytest.mark.parametrize("node", ADMINISTRATIONS)
def test_compose_mounts_every_file_its_node_config_names(node: str) -> None:
    service = compose_file()["services"][node]
    raw = tomllib.loads((COMPOSE / f"{node}.toml").read_text())
    mounted = {f"/run/secrets/{secret['target']}" for secret in service["secrets"]}
    mounted |= {config["target"] for config in service["configs"]}
    mounted |= {volume.split(":")[1] for volume in service["volumes"]}
    files = [
        raw["tls"]["ca_cert"],
        raw["tls"]["cert"],
        raw["tls"]["key"],
        raw["auth"]["jwks_file"],
        *raw["keys"].values(),
        raw["state"]["url_file"],
        raw["federation"]["directory"],
        *raw["federation"]["trust_anchors"].values(),
        raw["sources"]["demo"]["url"].removeprefix("sqlite:///"),
    ]
    assert set(files) <= mounted
    assert raw["state"]["url_file"] == "/run/secrets/state-url"
    grace = raw["node"].get("shutdown_grace_seconds", DEFAULT_SHUTDOWN_GRACE_SECONDS)
    assert int(service["stop_grace_period"].removesuffix("s")) > grace
    ports = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
    assert ports == {listen_port(raw["node"]["listen"]), listen_port(raw["metrics"]["listen"])}
    validate_through_the_node_schema(raw)


def load_prepare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_prepare", COMPOSE / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_material_has_a_verified_directory_naming_the_compose_services(
    tmp_path: Path,
) -> None:
    prepare = load_prepare()
    directory_file = prepare.prepare(tmp_path)
    anchors = {
        node: load_public_key(tmp_path / node / "directory_public.pem") for node in ADMINISTRATIONS
    }
    directory = Directory.load(directory_file, anchors)
    services = compose_file()["services"]
    for node in ADMINISTRATIONS:
        raw = tomllib.loads((COMPOSE / f"{node}.toml").read_text())
        entry = directory.entry(node)
        assert entry.federation_endpoint == f"{node}:{listen_port(raw['federation']['listen'])}"
        assert entry.exchange_endpoint == f"{node}:{listen_port(raw['node']['listen'])}"
        environment = services[f"{node}-db"]["environment"]
        url = (tmp_path / "compose" / f"{node}-state-url").read_text().strip()
        password = (tmp_path / "compose" / f"{node}-db-password").read_text().strip()
        assert url == (
            f"postgresql://{environment['POSTGRES_USER']}:{password}@{node}-db:5432/"
            f"{environment['POSTGRES_DB']}"
        )
    # A second run keeps the passwords the databases were initialised with.
    before = (tmp_path / "compose" / "holyrood-db-password").read_text()
    prepare.prepare(tmp_path)
    assert (tmp_path / "compose" / "holyrood-db-password").read_text() == before


# The image


def containerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "image" / "Containerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in logical.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_the_node_unprivileged_on_the_ports_the_configs_use() -> None:
    instructions = containerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    values = {op: value for op, value in final_stage}
    assert values["ENTRYPOINT"] == '["concordat", "node", "--config", "/etc/concordat/node.toml"]'
    user = values["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    exposed = {int(port) for port in values["EXPOSE"].split()}
    for node in ADMINISTRATIONS:
        for config in (COMPOSE / f"{node}.toml", KUBERNETES / "overlays" / node / "node.toml"):
            raw = tomllib.loads(config.read_text())
            listens = (raw["node"]["listen"], raw["federation"]["listen"], raw["metrics"]["listen"])
            assert {listen_port(address) for address in listens} == exposed
            for folder in raw["policy"]["bundle"]:
                assert folder.startswith("/opt/concordat/policies/")
                assert (ROOT / "policies" / Path(folder).name).is_dir()
    assert "-addr=127.0.0.1:7400" in values["HEALTHCHECK"]


def test_the_image_copies_only_what_the_build_context_lets_in() -> None:
    copied = [
        source
        for op, value in containerfile_instructions()
        if op == "COPY" and not value.startswith("--from")
        for source in value.split()[:-1]
    ]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for source in copied:
        assert source in allowed, source
        assert (ROOT / source).exists(), source
    assert "*" in ignore
