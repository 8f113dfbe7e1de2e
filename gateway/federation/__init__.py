"""Node-to-node federation: the signed directory, peer assertions and receipts, circuit breakers."""
