"""Loads regopy before anything imports grpc (see gateway/__init__.py for why)."""

import regopy  # noqa: F401
