"""The node's gRPC APIs as callers and peers meet them: the edge every servicer method runs in."""
