"""One module per measure, each with `run(smoke: bool, workdir: Path) -> dict`.

A result holds the figures, a `summary` of table rows (see `bench.report.row`), or `skipped`
with the reason the measure cannot run yet.
"""

MEASURES = (
    "bare_unary",
    "bare_stream",
    "audit_append",
    "policy_decision",
    "local_exchange",
    "cross_node",
    "bulk_stream",
    "node_resources",
    "shared_state",
    "evidence",
)
