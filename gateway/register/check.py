"""The register check, asked of a bundle: the problems its own Rego register check finds.

The check is written once, in `policies/common/register_check_problems_test.rego`, which
every jurisdiction's Rego tests run (a node refuses a bundle whose tests fail). Publishing
asks the same rules rather than a second copy of them in Python.
"""

from __future__ import annotations

from gateway.policy.bundle import PolicyBundle, PolicyBundleError
from gateway.policy.embedded import load_interpreter

PROBLEMS_QUERY = "data.concordat.common.register_check.problems"


def register_problems(bundle: PolicyBundle) -> tuple[str, ...]:
    """Every problem the register check finds in the bundle's register, sorted."""
    interpreter = load_interpreter(bundle, with_tests=True)
    output = interpreter.query(PROBLEMS_QUERY)
    if not output.ok() or len(output) != 1 or len(output[0].expressions) != 1:
        raise PolicyBundleError(f"{PROBLEMS_QUERY} could not be evaluated: {output}")
    problems = output[0].expressions[0]
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise PolicyBundleError(f"{PROBLEMS_QUERY} is not a set of strings: {problems!r}")
    return tuple(sorted(problems))
