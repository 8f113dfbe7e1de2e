"""The policy author's tools behind `concordat policy`: test, eval, impact and build.

Everything here runs the embedded engine (rego-cpp) in this process, on the same bundle
directories a node loads: `policies/common` plus one jurisdiction's folder.

- `run_tests` compiles a bundle, runs its Rego tests and reports which rule ids no test
  names. rego-cpp has no coverage API, so "covered" is read from the sources: a rule id (the
  string in `failures contains "<id>"` or `withholdings[field] := "<id>"`, or the allow rule
  passed to `decision.make`) counts as covered when some `*_test.rego` file quotes it. That
  says a test names the rule, not that the test passes through it.
- `evaluate` decides one policy input.
- `impact` re-evaluates every policy input a node's audit log recorded against a bundle
  and compares with the decision the node made then.
- `register_problems` asks the bundle's register check what is wrong with its register.
- `build_opa_bundle` writes the bundle as one OPA bundle tarball for an OPA sidecar,
  signed in OPA's bundle signature format when asked (`BundleSigning`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.audit.reader import AuditLogUnreadable, RecordedEvent, read_events
from gateway.domain import Decision, Direction
from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle
from gateway.policy.decision import ENGINE_ERROR_RULE, ENGINE_UNAVAILABLE_RULE
from gateway.policy.embedded import EmbeddedEngine, load_interpreter
from gateway.policy.rego_tests import RegoTestResult, run_rego_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DIRECTIONS: tuple[Direction, ...] = ("egress", "ingress")

_CHECK_ID = re.compile(r'\bfailures\s+contains\s+"([\w.-]+)"')
_ALLOW_ID = re.compile(r'\.make\(\s*"([\w.-]+)"')
# A field withheld from an allowed release, by the rule id it is mapped to.
_WITHHOLDING_ID = re.compile(r'\bwithholdings\[\s*\w+\s*\]\s*:=\s*"([\w.-]+)"')
# Decisions the gateway made because the engine could not answer: they say nothing about
# what the policy decided, so impact does not compare them.
_NOT_POLICY_DECISIONS = frozenset({ENGINE_ERROR_RULE, ENGINE_UNAVAILABLE_RULE})
_EXAMPLES = 3
_REFUSED = "no policy input (refused before any decision)"
_OLD_ENTRY = "decided, but written before audit entries kept policy inputs"


class PolicyToolError(Exception):
    """A tool cannot run as asked: the message says which option or file and why."""


# --- which bundle -------------------------------------------------------------------------


def bundle_directories(
    *,
    config: Path | None = None,
    bundles: Sequence[Path] = (),
    jurisdiction: str | None = None,
    policies: Path = POLICIES,
) -> list[Path]:
    """The bundle's folders, from exactly one of a node config, folders or a jurisdiction."""
    given = [config is not None, bool(bundles), jurisdiction is not None]
    if sum(given) != 1:
        raise PolicyToolError("give exactly one of --config, --bundle (repeatable), --jurisdiction")
    if config is not None:
        from gateway.config import ConfigError, load_config

        try:
            return list(load_config(config).policy.bundle)
        except ConfigError as exc:
            raise PolicyToolError(str(exc)) from exc
    if jurisdiction is not None:
        own = policies / jurisdiction
        if jurisdiction == "common" or not own.is_dir():
            known = sorted(p.name for p in policies.iterdir() if p.is_dir() and p.name != "common")
            raise PolicyToolError(
                f"unknown jurisdiction {jurisdiction!r}; known: {', '.join(known)}"
            )
        return [policies / "common", own]
    return list(bundles)


# --- test ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCoverage:
    """One rule id, the modules that define it and the test files that quote it."""

    rule_id: str
    defined_in: tuple[str, ...]
    named_by: tuple[str, ...]

    @property
    def covered(self) -> bool:
        return bool(self.named_by)


@dataclass(frozen=True)
class TestReport:
    revision: str
    results: tuple[RegoTestResult, ...]
    coverage: tuple[RuleCoverage, ...]
    compile_seconds: float
    test_seconds: float

    @property
    def failed(self) -> tuple[RegoTestResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def uncovered(self) -> tuple[RuleCoverage, ...]:
        return tuple(c for c in self.coverage if not c.covered)


def run_tests(directories: Sequence[Path]) -> TestReport:
    """Compile the bundle (both decisions), run every Rego test, read rule coverage.

    Raises PolicyBundleError, naming file:line where rego-cpp says, if the bundle does not
    load or compile.
    """
    bundle = load_bundle(directories)
    started = time.perf_counter()
    EmbeddedEngine.compile(bundle)
    compiled = time.perf_counter()
    results = tuple(run_rego_tests(bundle))
    tested = time.perf_counter()
    return TestReport(
        revision=bundle.revision,
        results=results,
        coverage=tuple(rule_coverage(bundle)),
        compile_seconds=compiled - started,
        test_seconds=tested - compiled,
    )


def rule_ids(bundle: PolicyBundle) -> dict[str, list[str]]:
    """Every rule id the bundle's modules can decide with, and the modules defining it."""
    found: dict[str, list[str]] = {}
    for name, source in sorted(bundle.modules.items()):
        code = _without_comments(source)
        ids = [*_CHECK_ID.findall(code), *_WITHHOLDING_ID.findall(code), *_ALLOW_ID.findall(code)]
        for rule_id in ids:
            found.setdefault(rule_id, [])
            if name not in found[rule_id]:
                found[rule_id].append(name)
    return dict(sorted(found.items()))


def rule_coverage(bundle: PolicyBundle) -> list[RuleCoverage]:
    """Which test files quote each rule id (see the module docstring for what this means)."""
    tests = {name: _without_comments(source) for name, source in sorted(bundle.tests.items())}
    return [
        RuleCoverage(
            rule_id=rule_id,
            defined_in=tuple(modules),
            named_by=tuple(name for name, source in tests.items() if f'"{rule_id}"' in source),
        )
        for rule_id, modules in rule_ids(bundle).items()
    ]


def _without_comments(source: str) -> str:
    # Rego comments run from `#` to the end of the line; rule ids never contain `#`.
    return "\n".join(line.split("#", 1)[0] for line in source.splitlines())


# --- register check -----------------------------------------------------------------------

REGISTER_PROBLEMS_QUERY = "data.concordat.common.register_check.problems"


def register_problems(bundle: PolicyBundle) -> tuple[str, ...]:
    """Every problem the bundle's own register check finds in its register, sorted.

    The check is written once, in Rego (`policies/common/register_check_problems_test.rego`,
    loaded with the tests), which every jurisdiction's tests run; publishing the register
    asks the same rules rather than a second copy of them.
    """
    interpreter = load_interpreter(bundle, with_tests=True)
    output = interpreter.query(REGISTER_PROBLEMS_QUERY)
    if not output.ok() or len(output) != 1 or len(output[0].expressions) != 1:
        raise PolicyBundleError(f"{REGISTER_PROBLEMS_QUERY} could not be evaluated: {output}")
    problems = output[0].expressions[0]
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise PolicyBundleError(f"{REGISTER_PROBLEMS_QUERY} is not a set of strings: {problems!r}")
    return tuple(sorted(problems))


# --- eval ---------------------------------------------------------------------------------


def read_json_input(path: Path | str) -> Any:
    """A JSON document from a file, or from standard input when `path` is "-"."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as exc:
        raise PolicyToolError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyToolError(f"{path} is not valid JSON: {exc}") from exc


def select_policy_input(
    document: Any, direction: Direction | None = None
) -> tuple[Direction, dict[str, Any]]:
    """The direction and policy input to decide from a JSON document.

    The document is a policy input; or, as an audit entry keeps them, an object of policy
    inputs by direction ({"egress": {...}, "ingress": {...}}); or a whole audit event whose
    `policy_inputs` holds that object. Without `direction`, a policy input's own
    `direction` decides, and an object of one direction's input uses that one.
    """
    if isinstance(document, Mapping) and isinstance(document.get("policy_inputs"), Mapping):
        document = document["policy_inputs"]
    if not isinstance(document, Mapping):
        raise PolicyToolError("the input must be a JSON object (a policy input)")
    by_direction = {d: document[d] for d in DIRECTIONS if isinstance(document.get(d), Mapping)}
    if "direction" not in document and by_direction:
        if direction is None:
            if len(by_direction) > 1:
                raise PolicyToolError(
                    "the input holds both an egress and an ingress policy input: "
                    "choose one with --direction"
                )
            direction = next(iter(by_direction))
        if direction not in by_direction:
            raise PolicyToolError(f"the input holds no {direction} policy input")
        return direction, dict(by_direction[direction])
    if direction is None:
        direction = document.get("direction")
        if direction not in DIRECTIONS:
            raise PolicyToolError(
                "the policy input has no direction of egress or ingress: give --direction"
            )
    return direction, dict(document)


def evaluate(
    directories: Sequence[Path], direction: Direction, policy_input: Mapping[str, Any]
) -> Decision:
    """Compile the bundle and decide one policy input with it."""
    engine = EmbeddedEngine.compile(load_bundle(directories))
    return asyncio.run(_decide_once(engine, direction, policy_input))


async def _decide_once(
    engine: EmbeddedEngine, direction: Direction, policy_input: Mapping[str, Any]
) -> Decision:
    try:
        return await engine.decide(direction, policy_input)
    finally:
        await engine.close()


def decision_document(decision: Decision) -> dict[str, Any]:
    """A decision as plain JSON, in the shape of the policy's decision document."""
    return {
        "allow": decision.allow,
        "rule": decision.rule,
        "agreement_id": decision.agreement_id,
        "fields": list(decision.released_fields),
        "withheld": dict(decision.withheld),
        "obligations": [
            {"code": o.code, "description": o.description, "parameters": dict(o.parameters)}
            for o in decision.obligations
        ],
        "reasons": list(decision.reasons),
        "pseudonymise": decision.pseudonymise,
        "decision_id": decision.decision_id,
    }


# --- impact -------------------------------------------------------------------------------

ALLOWED_TO_DENIED = "allowed → denied"
DENIED_TO_ALLOWED = "denied → allowed"
RULE_CHANGED = "rule changed"
CHANGE_KINDS = (ALLOWED_TO_DENIED, DENIED_TO_ALLOWED, RULE_CHANGED)


@dataclass
class ChangeGroup:
    """Recorded decisions that the bundle would decide differently, alike in every key."""

    kind: str
    direction: str
    agreement_id: str
    recorded_rule: str
    rule: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "direction": self.direction,
            "agreement_id": self.agreement_id,
            "recorded_rule": self.recorded_rule,
            "rule": self.rule,
            "count": self.count,
            "examples": list(self.examples),
        }


@dataclass
class ImpactReport:
    """What a bundle would change in the decisions an audit log recorded."""

    revision: str
    administration: str = ""
    entries: int = 0
    before_since: int = 0
    decisions: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    nodes: Counter[str] = field(default_factory=Counter)
    recorded_revisions: Counter[str] = field(default_factory=Counter)
    changes: list[ChangeGroup] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(group.count for group in self.changes)

    def count(self, kind: str) -> int:
        return sum(group.count for group in self.changes if group.kind == kind)

    def as_json(self) -> dict[str, Any]:
        return {
            "bundle_revision": self.revision,
            "bundle_administration": self.administration,
            "entries": self.entries,
            "entries_before_since": self.before_since,
            "decisions_evaluated": self.decisions,
            "unchanged": self.unchanged,
            "changed": {kind: self.count(kind) for kind in CHANGE_KINDS},
            "skipped": dict(sorted(self.skipped.items())),
            "nodes": dict(sorted(self.nodes.items())),
            "recorded_revisions": dict(sorted(self.recorded_revisions.items())),
            "changes": [group.as_json() for group in self.changes],
        }


def parse_since(value: str) -> str:
    """An ISO date or date-time to compare audit timestamps with; refuses anything else."""
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).isoformat()
        return dt.datetime.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise PolicyToolError(f"--since must be an ISO date (YYYY-MM-DD), not {value!r}") from exc


def read_audit_events(path: Path) -> Iterator[RecordedEvent]:
    """Every entry of an audit log in sequence order, read-only (a running node may write)."""
    try:
        yield from read_events(path)
    except AuditLogUnreadable as exc:
        raise PolicyToolError(str(exc)) from exc


def impact(
    directories: Sequence[Path],
    events: Iterable[RecordedEvent],
    *,
    since: str | None = None,
    as_of: str | None = None,
) -> ImpactReport:
    """Re-decide each recorded policy input with the bundle and compare (allow, rule).

    `since` leaves out entries recorded before it; `as_of` decides as if on that day
    instead of the day each input records.
    """
    bundle = load_bundle(directories)
    engine = EmbeddedEngine.compile(bundle)
    report = asyncio.run(_impact(engine, events, since=since, as_of=as_of))
    register = bundle.data.get("register")
    if isinstance(register, Mapping) and isinstance(register.get("administration"), str):
        report.administration = register["administration"]
    return report


async def _impact(
    engine: EmbeddedEngine, events: Iterable[RecordedEvent], *, since: str | None, as_of: str | None
) -> ImpactReport:
    report = ImpactReport(revision=engine.revision)
    groups: dict[tuple[str, str, str, str, str], ChangeGroup] = {}
    try:
        for item in events:
            event = item.event
            if since is not None and str(event.get("at") or item.recorded_at) < since:
                report.before_since += 1
                continue
            report.entries += 1
            report.nodes[str(event.get("node", ""))] += 1
            report.recorded_revisions[str(event.get("policy_revision", ""))] += 1
            inputs = event.get("policy_inputs")
            if not isinstance(inputs, Mapping) or not inputs:
                decided = any(isinstance(event.get(d), Mapping) for d in DIRECTIONS)
                report.skipped[_OLD_ENTRY if decided else _REFUSED] += 1
                continue
            for direction in DIRECTIONS:
                policy_input = inputs.get(direction)
                if not isinstance(policy_input, Mapping):
                    continue
                recorded = event.get(direction)
                if not isinstance(recorded, Mapping) or not isinstance(recorded.get("allow"), bool):
                    report.skipped["policy input without a recorded decision"] += 1
                    continue
                if recorded.get("rule") in _NOT_POLICY_DECISIONS:
                    report.skipped["recorded decision was an engine failure, not the policy's"] += 1
                    continue
                if as_of is not None:
                    policy_input = {**policy_input, "today": as_of}
                decision = await engine.decide(direction, policy_input)
                report.decisions += 1
                kind = _change(recorded, decision)
                if kind is None:
                    report.unchanged += 1
                    continue
                agreement = str(policy_input.get("agreement_id") or recorded.get("agreement_id"))
                key = (kind, direction, agreement, str(recorded.get("rule")), decision.rule)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = ChangeGroup(*key)
                group.count += 1
                if len(group.examples) < _EXAMPLES:
                    group.examples.append(str(event.get("exchange_id", f"seq {item.seq}")))
    finally:
        await engine.close()
    order = {kind: index for index, kind in enumerate(CHANGE_KINDS)}
    report.changes = sorted(
        groups.values(),
        key=lambda g: (order[g.kind], -g.count, g.direction, g.agreement_id, g.rule),
    )
    return report


def _change(recorded: Mapping[str, Any], decision: Decision) -> str | None:
    if recorded["allow"] and not decision.allow:
        return ALLOWED_TO_DENIED
    if not recorded["allow"] and decision.allow:
        return DENIED_TO_ALLOWED
    if recorded.get("rule") != decision.rule:
        return RULE_CHANGED
    return None


# --- build --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    revision: str
    roots: tuple[str, ...]
    files: tuple[str, ...]


def opa_manifest(bundle: PolicyBundle, directories: Sequence[Path]) -> dict[str, Any]:
    """The merged `.manifest`: the union of the folders' roots and the bundle's revision.

    The revision is the one a node records as `policy_revision` for these folders, so an
    OPA decision log and a node's audit log name the same bundle alike.
    """
    manifest: dict[str, Any] = {"revision": bundle.revision}
    if bundle.roots:
        manifest["roots"] = sorted(bundle.roots)
    manifest["rego_version"] = 1
    manifest["metadata"] = {
        "built_by": "concordat policy build",
        "directories": [directory.name for directory in directories],
    }
    return manifest


def build_opa_bundle(
    directories: Sequence[Path],
    out: Path,
    *,
    include_tests: bool = False,
    signing: BundleSigning | None = None,
) -> BuiltBundle:
    """Write the bundle as an OPA bundle tarball (`opa run --server --bundle OUT`).

    Inside: `/.manifest`, one `/data.json` holding the merged data document (each folder's
    data.json already sits at its path in it) and the modules under their folder's name
    (`common/request.rego`, ...), and with `signing` a `/.signatures.json` that OPA verifies
    (`--verification-key`). The bundle must compile first. The tarball is the same bytes for
    the same files (and, signed, the same key: EdDSA and RSA signatures are deterministic).
    """
    bundle = load_bundle(directories)
    EmbeddedEngine.compile(bundle)
    files: dict[str, bytes] = {
        ".manifest": _json_bytes(opa_manifest(bundle, directories)),
        "data.json": _json_bytes(dict(bundle.data)),
    }
    sources = {**bundle.modules, **(bundle.tests if include_tests else {})}
    for name, source in sorted(sources.items()):
        files[name] = source.encode("utf-8")
    if signing is not None:
        files[".signatures.json"] = signing.signatures(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_tarball(files))
    return BuiltBundle(path=out, revision=bundle.revision, roots=bundle.roots, files=tuple(files))


# What each kind of key signs with, and the algorithms it may be asked for instead; OPA
# verifies all of these (`opa run --verification-key PEM --signing-alg ALG`).
_ALGORITHMS_BY_KEY: dict[type, tuple[str, ...]] = {
    ed25519.Ed25519PrivateKey: ("EdDSA",),
    rsa.RSAPrivateKey: ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
}
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class BundleSigning:
    """How `build_opa_bundle` signs: OPA's bundle signature format, made here.

    `.signatures.json` holds one JWT whose claims list every file with the SHA-256 of its
    content, as OPA computes it to verify: a JSON file (data.json, .manifest) is hashed as
    its parsed value re-encoded compactly with sorted keys (Go's encoding of strings, HTML
    characters unescaped), any other file as its bytes.
    """

    key: Any
    algorithm: str
    key_id: str = "default"

    @classmethod
    def from_pem(
        cls, path: Path, *, algorithm: str | None = None, key_id: str = "default"
    ) -> BundleSigning:
        """Read a PEM private key (Ed25519, ECDSA P-256/384/521 or RSA), checking `algorithm`."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise PolicyToolError(
                f"{path}: not an unencrypted PEM private key ({type(exc).__name__})"
            ) from exc
        allowed = _algorithms_for(key)
        if not allowed:
            raise PolicyToolError(
                f"{path}: OPA verifies Ed25519, ECDSA (P-256, P-384, P-521) and RSA keys, "
                f"not {type(key).__name__}"
            )
        chosen = algorithm or allowed[0]
        if chosen not in allowed:
            raise PolicyToolError(
                f"--signing-alg {chosen} does not suit the key in {path}; use {', '.join(allowed)}"
            )
        return cls(key=key, algorithm=chosen, key_id=key_id)

    def signatures(self, files: Mapping[str, bytes]) -> bytes:
        """The `.signatures.json` for these files (paths without a leading slash)."""
        claims = {
            "files": [
                {"name": name, "hash": _opa_file_hash(name, content), "algorithm": "SHA-256"}
                for name, content in files.items()
            ],
            "keyid": self.key_id,
        }
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.key_id})
        return _json_bytes({"signatures": [token]})


def _algorithms_for(key: Any) -> tuple[str, ...]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        named = _EC_ALGORITHMS.get(key.curve.name)
        return (named,) if named else ()
    for kind, algorithms in _ALGORITHMS_BY_KEY.items():
        if isinstance(key, kind):
            return algorithms
    return ()


def _opa_file_hash(name: str, content: bytes) -> str:
    if name.endswith(".json") or name.rsplit("/", 1)[-1] == ".manifest":
        content = _opa_canonical_json(json.loads(content)).encode("utf-8")
    return hashlib.sha256(content).hexdigest()


def _opa_canonical_json(value: Any) -> str:
    """The JSON OPA hashes for a value: compact, keys sorted, strings as Go encodes them.

    Numbers keep the text they were written with (OPA reads them as json.Number), which is
    what `json.dumps` writes for the value read back here.
    """
    if isinstance(value, dict):
        items = (f"{_go_string(k)}:{_opa_canonical_json(value[k])}" for k in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_opa_canonical_json(item) for item in value) + "]"
    if isinstance(value, str):
        return _go_string(value)
    return json.dumps(value)


def _go_string(text: str) -> str:
    # Go's encoder and Python's agree on every escape but these two line separators.
    encoded = json.dumps(text, ensure_ascii=False)
    return encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _tarball(files: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"/{name}")
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as archive:
        archive.write(raw.getvalue())
    return compressed.getvalue()
