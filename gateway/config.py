"""Node configuration: loaded once from TOML, validated whole, frozen.

Relative paths in a config file are resolved against the file's own folder, so a folder of
configs can be moved or checked out anywhere.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ADMINISTRATIONS = ("whitehall", "holyrood", "stormont", "cardiff")
# Keys for HMAC-SHA-256: fewer random bytes would make the key weaker than the hash it keys.
SECRET_KEY_BYTES = 32


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsConfig(_Frozen):
    ca_cert: Path
    cert: Path
    key: Path


class AuthConfig(_Frozen):
    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256", "PS256")
    leeway_seconds: float = Field(default=30, ge=0, le=300)
    max_token_lifetime_seconds: float = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of auth.jwks_file and auth.jwks_url")
        return self


class CitizensConfig(_Frozen):
    """Citizens asking who used their data (gateway/citizen, docs/citizens.md).

    Without an issuer the node answers other nodes' searches but serves no citizen itself.
    """

    # The citizen identity provider: its issuer, this node's audience, and its public keys.
    issuer: str | None = None
    audience: str | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256", "PS256")
    leeway_seconds: float = Field(default=30, ge=0, le=300)
    max_token_lifetime_seconds: float = Field(default=900, gt=0)
    # Lookups per citizen: a bucket of `lookup_burst` refilled at `lookups_per_hour`.
    lookups_per_hour: float = Field(default=30, gt=0)
    lookup_burst: int = Field(default=5, ge=1)
    # How long each other node may take to search its log for one lookup.
    peer_timeout_seconds: float = Field(default=5.0, gt=0)
    # Live-case holds (`concordat citizen hold`); absent, none can be set.
    holds_file: Path | None = None

    @model_validator(mode="after")
    def _identity_provider_whole(self) -> CitizensConfig:
        if self.issuer is None and self.audience is None:
            if self.jwks_file is not None or self.jwks_url is not None:
                raise ValueError("citizens: keys given without citizens.issuer and audience")
            return self
        if not (self.issuer and self.audience):
            raise ValueError("citizens: set both issuer and audience, or neither")
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of citizens.jwks_file and citizens.jwks_url")
        return self

    @property
    def serves_citizens(self) -> bool:
        return self.issuer is not None


class KeysConfig(_Frozen):
    # Ed25519 private key: audit seals, on-behalf-of assertions, receipts.
    signing_key: Path
    # 32 random bytes: keys the hashes that stand for subject identifiers in the audit log.
    subject_hash_key: Path
    # 32 random bytes: keys research pseudonyms. A key of its own, so that whoever holds the
    # subject hash key to search the audit log cannot re-identify research releases with it.
    pseudonym_key: Path

    @model_validator(mode="after")
    def _separate_hash_keys(self) -> KeysConfig:
        if self.pseudonym_key == self.subject_hash_key:
            raise ValueError("keys.pseudonym_key must be its own file, not keys.subject_hash_key")
        return self


class PolicyConfig(_Frozen):
    engine: Literal["embedded", "opa"] = "embedded"
    bundle: tuple[Path, ...]
    opa_url: str | None = None
    opa_timeout_seconds: float = Field(default=1.0, gt=0)
    # How often a node on OPA asks it whether its bundles are activated (its health follows).
    opa_health_interval_seconds: float = Field(default=1.0, gt=0)
    # How often the bundle directories are checked for changes (0: never, restart to change).
    reload_interval_seconds: float = Field(default=1.0, ge=0)
    # Decisions remembered per revision for identical inputs (embedded engine only; 0: off).
    decision_cache_entries: int = Field(default=10_000, ge=0)

    @model_validator(mode="after")
    def _opa_needs_url(self) -> PolicyConfig:
        if self.engine == "opa" and not self.opa_url:
            raise ValueError("policy.engine = 'opa' needs policy.opa_url")
        return self


class AuditConfig(_Frozen):
    # The embedded SQLite log; unused (and not needed) when [state] names PostgreSQL.
    path: Path | None = None
    max_batch: int = Field(default=1024, ge=1, le=100_000)
    # Group commit (gateway/audit/grouping.py): a batch may wait this long for the entries of
    # exchanges still under way, when at least `group_commit_siblings` are. 0 turns it off.
    group_commit_delay_ms: float = Field(default=4.0, ge=0, le=100)
    group_commit_siblings: int = Field(default=1, ge=1, le=100_000)


class StateConfig(_Frozen):
    """Where a node's shared state lives: its audit log, replay guards and idempotency keys.

    Absent, the node keeps them embedded (SQLite at `[audit] path`, the rest in memory): one
    process. With a PostgreSQL URL, any number of replicas of the node share them.
    """

    url: str | None = None
    # A file holding the URL, so a password can live in a secret rather than the config.
    url_file: Path | None = None
    # Connections per replica for replay guards, idempotency and reads (the audit writer has
    # one of its own).
    pool_size: int = Field(default=4, ge=1, le=64)
    # How often the store is probed while the node runs; health follows the answer.
    probe_interval_seconds: float = Field(default=1.0, gt=0)
    # How long one statement may take before the store counts as unreachable.
    statement_timeout_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _one_url_source(self) -> StateConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url and url_file")
        return self

    def resolved_url(self) -> str:
        """The PostgreSQL URL, read from `url_file` when given there."""
        if self.url is not None:
            url = self.url
        else:
            assert self.url_file is not None  # noqa: S101 - checked by _one_url_source
            try:
                url = self.url_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"state.url_file: {self.url_file} cannot be read ({exc.strerror or exc})"
                ) from exc
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("state: the URL must be a postgresql:// URL")
        return url


class LimitsConfig(_Frozen):
    default_deadline_seconds: float = Field(default=10, gt=0)
    min_deadline_seconds: float = Field(default=0.005, ge=0)
    stream_batch_size: int = Field(default=1000, ge=1, le=50_000)
    max_stream_batch_size: int = Field(default=10_000, ge=1, le=50_000)
    idempotency_entries: int = Field(default=100_000, ge=0)
    idempotency_ttl_seconds: float = Field(default=600, gt=0)


class MetricsConfig(_Frozen):
    # Where Prometheus scrapes this node (plain HTTP, its own port, off the exchange API).
    listen: str

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("metrics.listen must be host:port, e.g. 127.0.0.1:9401")
        return listen


class ServesRule(_Frozen):
    record_type: str
    subject_kinds: tuple[str, ...]
    registration_prefixes: tuple[str, ...] = ()


class FederationConfig(_Frozen):
    # Where peers reach this node's federation service (mutual TLS only).
    listen: str
    # Endpoints published in this node's directory entry (default: the listen addresses).
    advertise_exchange: str | None = None
    advertise_federation: str | None = None
    directory: Path
    # Each administration's directory public key (PEM), pinned: the roots of trust.
    trust_anchors: dict[str, Path]
    # This administration's directory signing key, to sign its own entry (operators only).
    directory_key: Path | None = None
    serves: tuple[ServesRule, ...] = ()
    # Extra public signing keys (PEM) to publish in this node's entry while rotating keys.
    publish_signing_keys: tuple[Path, ...] = ()
    relay_attempts: int = Field(default=3, ge=1, le=10)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_seconds: float = Field(default=2.0, gt=0)
    assertion_ttl_seconds: float = Field(default=30, gt=0, le=300)
    # How often peers are asked to witness this node's chain head (docs/evidence.md); 0: never.
    witness_interval_seconds: float = Field(default=60, ge=0)


class TracingConfig(_Frozen):
    """Where a node sends its traces (OTLP over gRPC) and how many exchanges it traces."""

    # http:// (plain gRPC, a collector on loopback or in the pod) or https:// (TLS).
    otlp_endpoint: str
    # The share of exchanges traced where the caller sent no sampling decision (parent-based:
    # a traced caller's exchanges are traced, an untraced caller's are not).
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    # The CA that signed an https:// collector's certificate (default: the system's roots).
    ca_cert: Path | None = None
    # Default: concordat-<node name>.
    service_name: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,64}$")

    @field_validator("otlp_endpoint")
    @classmethod
    def _collector_url(cls, endpoint: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}/?", endpoint):
            raise ValueError(
                "tracing.otlp_endpoint must be http://host:port or https://host:port "
                "(an OTLP/gRPC collector)"
            )
        return endpoint

    @model_validator(mode="after")
    def _ca_only_for_tls(self) -> TracingConfig:
        if self.ca_cert is not None and not self.otlp_endpoint.startswith("https://"):
            raise ValueError("tracing.ca_cert is only for an https:// otlp_endpoint")
        return self

    def service(self, node: str) -> str:
        """The `service.name` this node's spans carry."""
        return self.service_name or f"concordat-{node}"


class NodeSection(_Frozen):
    name: str
    listen: str = "127.0.0.1:0"
    # On SIGTERM: how long exchanges already running may take to finish before they are cut.
    shutdown_grace_seconds: float = Field(default=10, ge=0, le=600)
    # Replicas on one machine share their listening ports (SO_REUSEPORT); needs [state].
    share_port: bool = False
    # A client's connection is asked to reconnect after this long (0: never). A peer node
    # keeps one connection, which a load balancer (or SO_REUSEPORT) hands to one replica for
    # good; reconnecting now and then spreads the calls over the replicas.
    connection_max_age_seconds: float = Field(default=60, ge=0)
    # The event loop the node runs on: uvloop (libuv) by default, the standard library's for
    # debugging with its tools. uvloop cut the nodes' CPU per exchange by about 4-9% and the
    # c=1 p50 by about 0.3 ms on the cross-node bench (issue 21).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @field_validator("name")
    @classmethod
    def _known_administration(cls, name: str) -> str:
        if name not in ADMINISTRATIONS:
            raise ValueError(f"node.name must be one of {', '.join(ADMINISTRATIONS)}")
        return name


class NodeConfig(_Frozen):
    node: NodeSection
    tls: TlsConfig
    auth: AuthConfig
    keys: KeysConfig
    policy: PolicyConfig
    audit: AuditConfig
    # Shared state for replicas (PostgreSQL); absent, the embedded single-process default.
    state: StateConfig | None = None
    limits: LimitsConfig = LimitsConfig()
    federation: FederationConfig | None = None
    # Prometheus metrics; absent, the node serves none.
    metrics: MetricsConfig | None = None
    # OpenTelemetry traces; absent, the node traces nothing and loads no OpenTelemetry.
    tracing: TracingConfig | None = None
    # Citizens' transparency: the citizen identity provider, rate limit, live-case holds.
    citizens: CitizensConfig | None = None
    # Adapter configurations, by name; each is validated by the adapter registry at start-up.
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sources_present(self) -> NodeConfig:
        if not self.sources:
            raise ValueError("at least one [sources.<name>] adapter is needed")
        return self

    @model_validator(mode="after")
    def _replicas_share_state(self) -> NodeConfig:
        if self.node.share_port and self.state is None:
            raise ValueError(
                "node.share_port runs replicas on one port, which must share a [state] store"
            )
        return self

    @model_validator(mode="after")
    def _audit_stored_somewhere(self) -> NodeConfig:
        if self.state is None and self.audit.path is None:
            raise ValueError("audit.path is needed unless [state] names a PostgreSQL store")
        return self


_PATH_KEYS = {
    "tls": ("ca_cert", "cert", "key"),
    "auth": ("jwks_file",),
    "keys": ("signing_key", "subject_hash_key", "pseudonym_key"),
    "audit": ("path",),
    "tracing": ("ca_cert",),
    "citizens": ("jwks_file", "holds_file"),
    "state": ("url_file",),
}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    for section, keys in _PATH_KEYS.items():
        for key in keys:
            value = raw.get(section, {}).get(key)
            if isinstance(value, str):
                raw[section][key] = str((base / value).resolve())
    federation = raw.get("federation")
    if isinstance(federation, dict):
        for key in ("directory", "directory_key"):
            if isinstance(federation.get(key), str):
                federation[key] = str((base / federation[key]).resolve())
        extra = federation.get("publish_signing_keys")
        if isinstance(extra, list):
            federation["publish_signing_keys"] = [
                str((base / p).resolve()) if isinstance(p, str) else p for p in extra
            ]
        anchors = federation.get("trust_anchors")
        if isinstance(anchors, dict):
            federation["trust_anchors"] = {
                name: str((base / path).resolve()) if isinstance(path, str) else path
                for name, path in anchors.items()
            }
    bundle = raw.get("policy", {}).get("bundle")
    if isinstance(bundle, list):
        raw["policy"]["bundle"] = [str((base / p).resolve()) for p in bundle]
    for source in raw.get("sources", {}).values():
        url = source.get("url") if isinstance(source, dict) else None
        if (
            isinstance(url, str)
            and url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
        ):
            source["url"] = "sqlite:///" + str((base / url.removeprefix("sqlite:///")).resolve())
    return raw


def parse_config(raw: dict[str, Any], *, base: Path) -> NodeConfig:
    """Validates a config mapping; raises ConfigError with every problem, one per line."""
    try:
        return NodeConfig.model_validate(_resolve_paths(raw, base))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from exc


def load_config(path: Path) -> NodeConfig:
    """Loads a TOML config file (or JSON, when the name ends in .json)."""
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be parsed: {exc}") from exc
    return parse_config(raw, base=path.resolve().parent)


def read_secret_key(path: Path, setting: str) -> bytes:
    """The bytes of a secret key file; ConfigError if it is unreadable or shorter than 32 bytes."""
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: {path} cannot be read ({exc.strerror or exc})") from exc
    if len(key) < SECRET_KEY_BYTES:
        raise ConfigError(
            f"{setting}: {path} holds {len(key)} bytes; it needs at least {SECRET_KEY_BYTES} "
            "random bytes"
        )
    return key
