"""Writes deploy/local/<node>.toml, the four development nodes' configuration.

The files are ordinary operator-edited configuration; this script only made the first
version (and can remake it) from the demo database mappings in gateway/dev/demo.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import ADMINISTRATIONS
from gateway.dev.demo import demo_source_config

ROOT = Path(__file__).resolve().parent.parent
EXCHANGE_PORTS = {"whitehall": 7401, "holyrood": 7402, "stormont": 7403, "cardiff": 7404}
FEDERATION_PORTS = {"whitehall": 7501, "holyrood": 7502, "stormont": 7503, "cardiff": 7504}
# Where deploy/prometheus/prometheus.yml scrapes each node's metrics.
METRICS_PORTS = {"whitehall": 9401, "holyrood": 9402, "stormont": 9403, "cardiff": 9404}
REGISTRATION_PREFIX = {"whitehall": "EW-", "holyrood": "SC-", "stormont": "NI-"}
REGISTRATIONS = ("BIRTH_REGISTRATION", "DEATH_REGISTRATION", "MARRIAGE_REGISTRATION")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _table(lines: list[str], name: str, body: dict[str, Any]) -> None:
    scalars = {
        k: v
        for k, v in body.items()
        if not isinstance(v, dict) or not v or not all(isinstance(x, dict) for x in v.values())
    }
    tables = {k: v for k, v in body.items() if k not in scalars}
    lines.append(f"[{name}]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    lines.append("")
    for key, sub in tables.items():
        _table(lines, f"{name}.{_key(key)}", sub)


def serves_rules(node: str, source: dict[str, Any]) -> list[dict[str, Any]]:
    rules = []
    for record_type, mapping in source["records"].items():
        kinds = sorted(mapping["subjects"])
        if record_type in REGISTRATIONS:
            rules.append(
                {
                    "record_type": record_type,
                    "subject_kinds": ["registration_id"],
                    "registration_prefixes": [REGISTRATION_PREFIX[node]],
                }
            )
            kinds = [k for k in kinds if k != "registration_id"]
        if kinds:
            rules.append({"record_type": record_type, "subject_kinds": kinds})
    return rules


def config_text(node: str) -> str:
    state = "../../.state"
    source = demo_source_config(f"sqlite:///{state}/{node}/demo.db", node)
    lines = [
        f"# {node}: development node of the local federation (`concordat up`).",
        f"# Paths are relative to this file; keys and databases live in {state}/ (git-ignored),",
        "# made on first run. See README, 'Operating a node'.",
        "",
    ]
    _table(lines, "node", {"name": node, "listen": f"127.0.0.1:{EXCHANGE_PORTS[node]}"})
    _table(
        lines,
        "tls",
        {
            "ca_cert": f"{state}/{node}/ca.pem",
            "cert": f"{state}/{node}/tls.pem",
            "key": f"{state}/{node}/tls_key.pem",
        },
    )
    _table(
        lines,
        "auth",
        {
            "issuer": f"https://id.{node}.concordat.test",
            "audience": f"concordat:{node}",
            "jwks_file": f"{state}/{node}/issuer/jwks.json",
        },
    )
    _table(
        lines,
        "keys",
        {
            "signing_key": f"{state}/{node}/signing_key.pem",
            "subject_hash_key": f"{state}/{node}/subject_hash.key",
            "pseudonym_key": f"{state}/{node}/pseudonym.key",
        },
    )
    _table(
        lines,
        "policy",
        {"engine": "embedded", "bundle": ["../../policies/common", f"../../policies/{node}"]},
    )
    _table(lines, "audit", {"path": f"{state}/{node}/audit.db"})
    _table(lines, "metrics", {"listen": f"127.0.0.1:{METRICS_PORTS[node]}"})
    _table(
        lines,
        "federation",
        {
            "listen": f"127.0.0.1:{FEDERATION_PORTS[node]}",
            "directory": f"{state}/directory.json",
            "directory_key": f"{state}/{node}/directory_key.pem",
        },
    )
    _table(
        lines,
        "federation.trust_anchors",
        {n: f"{state}/{n}/directory_public.pem" for n in ADMINISTRATIONS},
    )
    for rule in serves_rules(node, source):
        lines.append("[[federation.serves]]")
        lines.extend(f"{k} = {_value(v)}" for k, v in rule.items())
        lines.append("")
    records = source.pop("records")
    _table(lines, "sources.demo", source)
    for record_type, mapping in records.items():
        joins = mapping.pop("joins", [])
        _table(lines, f"sources.demo.records.{record_type}", mapping)
        for join in joins:
            lines.append(f"[[sources.demo.records.{record_type}.joins]]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in join.items())
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    out = ROOT / "deploy" / "local"
    out.mkdir(parents=True, exist_ok=True)
    for node in ADMINISTRATIONS:
        (out / f"{node}.toml").write_text(config_text(node))


if __name__ == "__main__":
    main()
