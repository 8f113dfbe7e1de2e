"""Watching a node from outside: Prometheus metrics (metrics.py) and OpenTelemetry traces.

Both plug into the pipeline's observer seam (gateway/pipeline/observe.py) and are built, when
configured, by the composition root; docs/observability.md is the operator's page.
"""
