"""The embedded policy engine: a bundle compiled once by rego-cpp, evaluated in-process.

rego-cpp (through `regopy`) aborts the whole process on some misuse and on some Rego it
cannot handle, so this module keeps its calls narrow: entrypoints are checked in the
sources before they are asked for, outputs are read only as whole JSON documents, and a
newly submitted bundle is compiled and tested in a child process first
(`compile_in_subprocess`), where a crash cannot take the node down.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import regopy
import structlog

from gateway.domain import Decision, Direction
from gateway.policy.bundle import PolicyBundle, PolicyBundleError, packages_of
from gateway.policy.decision import (
    ENGINE_ERROR_RULE,
    ENGINE_UNAVAILABLE_RULE,
    deny,
    parse_decision,
    requested_agreement,
    requested_fields,
)

log = structlog.get_logger("concordat.policy")

ENTRYPOINTS: Mapping[Direction, str] = {
    "egress": "concordat/egress/decision",
    "ingress": "concordat/ingress/decision",
}

# What a failed conversion or evaluation can raise from regopy's ctypes layer.
_ENGINE_FAILURES = (regopy.RegoError, TypeError, ValueError, OverflowError, ctypes.ArgumentError)

_DECISION_HEAD = re.compile(r"^(?:default\s+)?decision\s*(?::=|=|if\b|\{|contains\b)", re.MULTILINE)
# rego-cpp 1.5 kills the process on `with input as ...` once the rule under test depends
# on other rules; policies read the request through a rule that tests replace instead.
_INPUT_REPLACEMENT = re.compile(r"\bwith\s+input\s+as\b")
_REGO_ERROR = re.compile(r"\(error \d+:([^|\s]*)\|(\d+)\|\d+\s*\(errormsg \d+:([^)\n]*)\)")
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CHILD_PROGRAM = """\
import sys
from pathlib import Path
from gateway.policy.bundle import PolicyBundleError
from gateway.policy.rego_tests import check_bundle
try:
    revision = check_bundle([Path(argument) for argument in sys.argv[1:]])
    print()
    print(f"revision={revision}")
except PolicyBundleError as exc:
    sys.stderr.write(str(exc))
    sys.exit(1)
"""


class EmbeddedEngine:
    """Evaluates decisions from a bundle compiled once per revision.

    Not thread-safe: one engine serves the event-loop thread that created it.
    """

    def __init__(self, compiled: regopy.Bundle, revision: str) -> None:
        self._compiled = compiled
        self._revision = revision
        self._runner: regopy.Interpreter | None = regopy.Interpreter()

    @classmethod
    def compile(cls, bundle: PolicyBundle) -> EmbeddedEngine:
        """Compile both entrypoints, refusing a bundle that lacks either or cannot run."""
        check_entrypoints(bundle)
        builder = load_interpreter(bundle)
        try:
            compiled = builder.build(None, list(ENTRYPOINTS.values()))
        except regopy.RegoError as exc:
            raise PolicyBundleError(
                f"bundle does not compile: {describe_rego_error(exc, bundle.modules)}"
            ) from exc
        if not compiled.ok():
            raise PolicyBundleError("bundle does not compile")
        engine = cls(compiled, bundle.revision)
        engine._evaluate_empty_inputs()
        return engine

    @property
    def revision(self) -> str:
        return self._revision

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        """Evaluate synchronously: a warm compiled evaluation is far cheaper than a thread hop."""
        decision_id = uuid.uuid4().hex
        agreement_id = requested_agreement(policy_input)
        if self._runner is None:
            return deny(
                decision_id,
                ENGINE_UNAVAILABLE_RULE,
                "the policy engine is closed",
                agreement_id=agreement_id,
            )
        entrypoint = ENTRYPOINTS.get(direction)
        if entrypoint is None:
            return deny(
                decision_id,
                ENGINE_ERROR_RULE,
                "unknown decision direction",
                agreement_id=agreement_id,
            )
        try:
            self._runner.set_input(policy_input)
            output = self._runner.query_bundle_entrypoint(self._compiled, entrypoint)
            ok = output.ok()
            raw = _only_value(output) if ok else None
        except _ENGINE_FAILURES as exc:
            # The exception text may quote input values, so only its type is logged.
            error = type(exc).__name__
            ok = False
        else:
            error = "evaluation error"
        if not ok:
            log.error(
                "policy.engine_error",
                decision_id=decision_id,
                direction=direction,
                revision=self._revision,
                error=error,
            )
            return deny(
                decision_id,
                ENGINE_ERROR_RULE,
                "the policy engine failed to evaluate",
                agreement_id=agreement_id,
            )
        return parse_decision(
            raw,
            decision_id=decision_id,
            requested_fields=requested_fields(policy_input),
            agreement_id=agreement_id,
        )

    async def close(self) -> None:
        self._runner = None

    def _evaluate_empty_inputs(self) -> None:
        """Prove each compiled plan runs before the engine serves a request."""
        runner = regopy.Interpreter()
        for entrypoint in ENTRYPOINTS.values():
            runner.set_input({})
            if not runner.query_bundle_entrypoint(self._compiled, entrypoint).ok():
                raise PolicyBundleError(f"entrypoint {entrypoint} fails to evaluate")


def check_entrypoints(bundle: PolicyBundle) -> None:
    """Refuse a bundle whose sources do not define both decision documents.

    Read from the sources rather than asked of rego-cpp, which is not always safe to ask
    about a name that does not exist.
    """
    missing = []
    for entrypoint in ENTRYPOINTS.values():
        package = entrypoint.rsplit("/", 1)[0].replace("/", ".")
        if not any(
            package in packages_of(source) and _DECISION_HEAD.search(source)
            for source in bundle.modules.values()
        ):
            missing.append(f"data.{package}.decision")
    if missing:
        raise PolicyBundleError(f"bundle does not define {' or '.join(missing)}")


def load_interpreter(bundle: PolicyBundle, *, with_tests: bool = False) -> regopy.Interpreter:
    """An interpreter holding the bundle's data and modules (and tests, if asked)."""
    sources = {**bundle.modules, **bundle.tests} if with_tests else dict(bundle.modules)
    refuse_rego_cpp_hazards(sources)
    interpreter = regopy.Interpreter()
    try:
        interpreter.add_data(dict(bundle.data))
        for name, source in sorted(sources.items()):
            interpreter.add_module(name, source)
    except regopy.RegoError as exc:
        raise PolicyBundleError(describe_rego_error(exc, sources)) from exc
    return interpreter


def refuse_rego_cpp_hazards(sources: Mapping[str, str]) -> None:
    """Refuse Rego that is valid but known to crash rego-cpp 1.5, naming where it is."""
    for name, source in sorted(sources.items()):
        code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
        match = _INPUT_REPLACEMENT.search(code)
        if match is not None:
            line = code[: match.start()].count("\n") + 1
            raise PolicyBundleError(
                f"{name}:{line}: `with input as` crashes rego-cpp 1.5; replace the rule the "
                "policy reads the request through instead (see policies/common/request.rego)"
            )


def describe_rego_error(exc: regopy.RegoError, sources: Mapping[str, str]) -> str:
    """Turn rego-cpp's error tree into 'file:line: message' parts."""
    found = []
    for name, offset, message in _REGO_ERROR.findall(str(exc)):
        source = sources.get(name)
        line = source[: int(offset)].count("\n") + 1 if source is not None else "?"
        found.append(f"{name}:{line}: {message.strip()}")
    return "; ".join(dict.fromkeys(found)) or str(exc).strip()


def compile_in_subprocess(directories: Sequence[Path], *, timeout_seconds: float = 120.0) -> str:
    """Run `check_bundle` in a child process, so a rego-cpp abort cannot end this one.

    Returns the revision of the bundle the child checked (the files may have changed since
    the caller read them).
    """
    python_path = os.pathsep.join(
        part for part in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if part
    )
    try:
        completed = subprocess.run(  # noqa: S603 - our own interpreter and program, no shell
            [sys.executable, "-c", _CHILD_PROGRAM, *map(str, directories)],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            env={**os.environ, "PYTHONPATH": python_path},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PolicyBundleError(
            f"checking the bundle took longer than {timeout_seconds:g}s"
        ) from exc
    if completed.returncode != 0:
        raise PolicyBundleError(_child_failure(completed))
    last_line = completed.stdout.rstrip().rsplit("\n", 1)[-1]
    if not last_line.startswith("revision="):
        raise PolicyBundleError("checking the bundle did not report what it checked")
    return last_line.removeprefix("revision=")


def _child_failure(completed: subprocess.CompletedProcess[str]) -> str:
    if completed.returncode < 0:
        name = signal.Signals(-completed.returncode).name
        # rego-cpp writes its own diagnostics to stdout before it aborts.
        said = " ".join(completed.stdout.split()[-40:])
        return f"the policy compiler crashed ({name}) checking the bundle: {said}".strip()
    said = completed.stderr.strip()
    if said.startswith("Traceback"):
        # An unexpected exception: its last line names it without the stack.
        said = said.splitlines()[-1]
    return said or f"checking the bundle failed (exit {completed.returncode})"


def _only_value(output: regopy.Output) -> Any:
    """The single value of an entrypoint query, or None when it is undefined."""
    if len(output) != 1:
        raise ValueError("an entrypoint query returned several results")
    expressions = output[0].expressions
    if not expressions:
        return None
    if len(expressions) != 1:
        raise ValueError("an entrypoint query returned several values")
    return expressions[0]
