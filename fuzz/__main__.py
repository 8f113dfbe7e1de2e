"""python -m fuzz: run one target under atheris, run them all in turn, or replay inputs.

    python -m fuzz list                          the targets and what each drives
    python -m fuzz <target> [--runs N] [--keep-going] [libFuzzer flags | input files]
    python -m fuzz all [--runs N] [--keep-going]  each target in turn, N executions each
    python -m fuzz replay <target> [files]       without atheris; no files: the corpus
    python -m fuzz seeds                         rewrite fuzz/corpus/*/seed-*

A run reads fuzz/corpus/<target>/ and keeps what it learns in .state/fuzz/<target>/corpus/;
a crash is written to .state/fuzz/<target>/artifacts/. Nothing here imports the gateway
before atheris is set to instrument it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from fuzz import DICTIONARIES as DICTIONARY_FOR

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state" / "fuzz"
SEEDS = ROOT / "fuzz" / "corpus"
DICTIONARIES = ROOT / "fuzz" / "dictionaries"
# Instrumented for coverage: our code and the token library whose parsing we rely on.
INSTRUMENTED = ["gateway", "adapters", "jwt"]
# libFuzzer's progress lines worth showing while `all` runs (the full output goes to a log).
# libFuzzer's last line of statistics.
_STATS = re.compile(
    r"#\d+\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+ (?:lim: \d+ )?exec/s: (\d+)"
)
_PROGRESS = re.compile(r"pulse|DONE|Done \d+ runs|== |known finding|ERROR|Traceback|crash-")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("command", help="a target, all, list, replay or seeds")
    parser.add_argument("--runs", type=int, default=0, help="executions per target (0: forever)")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="record each distinct failure under artifacts/ and carry on instead of stopping",
    )
    parser.add_argument(
        "--work", type=Path, default=STATE, help="where runs keep corpora and crashes"
    )
    options, rest = parser.parse_known_args(argv)
    if options.command == "list":
        return _list()
    if options.command == "seeds":
        return _seeds()
    if options.command == "replay":
        return _replay(rest)
    if options.command == "all":
        return _all(options.runs, options.keep_going, options.work, rest)
    return _fuzz(options.command, options.runs, options.keep_going, options.work, rest)


def _list() -> int:
    from fuzz.targets import TARGETS

    for name, function in TARGETS.items():
        print(f"{name:16} {(function.__doc__ or '').splitlines()[0]}")
    return 0


def _seeds() -> int:
    from fuzz.seeds import write_seeds

    for target, count in write_seeds().items():
        print(f"{target:16} {count} seeds")
    return 0


def _replay(arguments: list[str]) -> int:
    from fuzz.replay import corpus
    from fuzz.targets import TARGETS

    if not arguments or arguments[0] not in TARGETS:
        print(f"replay needs a target: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    target, files = TARGETS[arguments[0]], arguments[1:]
    inputs = [(name, Path(name).read_bytes()) for name in files] if files else corpus(arguments[0])
    failed = 0
    for name, data in inputs:
        try:
            accepted = target(data)
        except AssertionError:
            failed += 1
            print(f"FAIL     {name}", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{'accepted' if accepted else 'refused':8} {name}")
    return 1 if failed else 0


def _fuzz(target: str, runs: int, keep_going: bool, state: Path, extra: list[str]) -> int:
    import atheris  # type: ignore[import-untyped]  # atheris ships no type information

    _import_libraries()
    # Comparisons with regular expressions and strings guide the mutations towards them.
    atheris.enabled_hooks.add("RegEx")
    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import TARGETS
    if target not in TARGETS:
        print(f"no target {target!r}; the targets are {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    work = state / target
    artifacts = work / "artifacts"
    learned = work / "corpus"
    artifacts.mkdir(parents=True, exist_ok=True)
    learned.mkdir(parents=True, exist_ok=True)
    function = _tolerating_known(target, TARGETS[target])
    if keep_going:
        function = _keeping_going(target, function, artifacts)
    flags = [arg for arg in extra if arg.startswith("-")]
    files = [arg for arg in extra if not arg.startswith("-")]
    defaults = {
        "-artifact_prefix": f"{artifacts}/",
        "-timeout": "10",
        "-rss_limit_mb": "2048",
        "-print_final_stats": "1",
    }
    if runs:
        defaults["-runs"] = str(runs)
    if target in DICTIONARY_FOR:
        defaults["-dict"] = str(DICTIONARIES / DICTIONARY_FOR[target])
    given = {flag.split("=", 1)[0] for flag in flags}
    flags += [f"{key}={value}" for key, value in defaults.items() if key not in given]
    # Input files given: libFuzzer runs each once (reproducing a crash); else it fuzzes.
    places = files or [str(learned), str(SEEDS / target)]
    atheris.Setup([sys.argv[0], *flags, *places], function)
    atheris.Fuzz()
    return 0


def _import_libraries() -> None:
    """Imports what the gateway uses but we do not instrument, before the hooks are enabled.

    atheris's regular-expression hook fails on patterns of bytes (TypeError in gen_match),
    which cryptography compiles at import, and on some verbose ones of the standard library;
    compiled before the hook is enabled, they are left alone.
    regopy goes first, before grpc, as gateway/__init__.py explains.
    """
    for name in (
        "regopy",
        "cryptography.hazmat.primitives.serialization",
        "cryptography.x509",
        "google.protobuf.message",
        "grpc",
        "pydantic",
        "structlog",
        # Verbose patterns the hook cannot generate a match for (it logs an ERROR for each).
        "email.header",
        "http.cookiejar",
    ):
        importlib.import_module(name)


def _tolerating_known(target: str, function: Callable[[bytes], bool]) -> Callable[[bytes], None]:
    """The target, counting a failure that is a reported finding (fuzz/known.py) as passed.

    Each finding's input is in the corpus, so without this every run would stop on it.
    """
    from fuzz.known import known

    reported: set[str] = set()
    executions = 0

    def tolerating_known(data: bytes) -> None:
        nonlocal executions
        executions += 1
        try:
            function(data)
        except AssertionError as failure:
            finding = known(target, failure)
            if finding is None:
                raise
            if finding.name not in reported:
                reported.add(finding.name)
                print(
                    f"known finding {finding.name} (fuzz/known.py) at execution {executions:,}",
                    file=sys.stderr,
                    flush=True,
                )

    return tolerating_known


def _keeping_going(
    target: str, function: Callable[[bytes], None], artifacts: Path
) -> Callable[[bytes], None]:
    """The target, recording the first input of each distinct failure instead of stopping."""
    seen: set[str] = set()

    def keep_going(data: bytes) -> None:
        try:
            function(data)
        except AssertionError as failure:
            signature = _signature(failure)
            if signature in seen:
                return
            seen.add(signature)
            path = artifacts / f"finding-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a name
            path.write_bytes(data)
            report = f"== {target}: {signature}\n   {failure}\n   input: {path}\n"
            with (artifacts / "findings.txt").open("a") as log:
                log.write(report)
            print(report, file=sys.stderr, flush=True)

    return keep_going


def _signature(failure: AssertionError) -> str:
    """What tells two failures apart: the check that failed, or where the exception began."""
    cause = failure.__cause__
    if cause is not None and type(failure).__name__ == "Unmapped":
        frames = traceback.extract_tb(cause.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        return f"Unmapped {type(cause).__name__} at {where}"
    frames = traceback.extract_tb(failure.__traceback__)
    ours = [f for f in frames if "/fuzz/" in f.filename]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(failure).__name__} at {where}"


def _all(runs: int, keep_going: bool, state: Path, extra: list[str]) -> int:
    from fuzz.targets import TARGETS

    rows = []
    for target in TARGETS:
        (state / target).mkdir(parents=True, exist_ok=True)
        log_path = state / target / "log.txt"
        command = [sys.executable, "-m", "fuzz", target, "--work", str(state), *extra]
        command += ["--runs", str(runs)] if runs else []
        command += ["--keep-going"] if keep_going else []
        print(f"== {target}: {' '.join(command[1:])} (log: {log_path})", flush=True)
        started = time.monotonic()
        with (
            log_path.open("w") as log,
            subprocess.Popen(  # noqa: S603 - our own module
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as process,
        ):
            assert process.stdout is not None  # noqa: S101 - piped above
            for line in process.stdout:
                log.write(line)
                if _PROGRESS.search(line):
                    print(f"   {line.rstrip()}", flush=True)
        wall = time.monotonic() - started
        text = log_path.read_text()
        done = re.search(r"Done (\d+) runs", text)
        stats = _STATS.search(text)
        findings = text.count(f"== {target}: ")
        tolerated = text.count("known finding ")
        rows.append(
            (
                target,
                int(done.group(1)) if done else 0,
                int(stats.group(4)) if stats else 0,
                int(stats.group(1)) if stats else 0,
                int(stats.group(3)) if stats else 0,
                wall,
                process.returncode,
                findings,
                tolerated,
            )
        )
    print(f"\n{'target':16}{'runs':>10}{'exec/s':>8}{'cov':>6}{'corpus':>8}{'wall s':>8}  result")
    for target, done_runs, rate, cov, corp, wall, code, found, tolerated in rows:
        result = "ok" if code == 0 and not found else f"exit {code}, {found} new finding(s)"
        result += f" ({tolerated} known)" if tolerated else ""
        print(f"{target:16}{done_runs:>10,}{rate:>8,}{cov:>6}{corp:>8}{wall:>8.0f}  {result}")
    total = sum(row[1] for row in rows)
    print(f"{'total':16}{total:>10,}{'':>22}{sum(row[5] for row in rows):>8.0f}")
    return 0 if all(row[6] == 0 and not row[7] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
