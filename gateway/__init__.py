"""The Concordat gateway node: authenticate, validate, route, decide, fetch, minimise, audit."""

# regopy (rego-cpp) must be loaded before grpc. Loaded after it, every policy evaluation
# leaked ~0.8 MB of native memory (measured: 230 MB per 300 decisions), presumably through
# symbols the two native libraries share; loaded first, memory stays flat.
import regopy  # noqa: F401
