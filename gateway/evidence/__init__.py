"""Evidence nodes hold each other to: witnessed chain heads and reconciliation with a peer.

docs/evidence.md describes the protocol and what it costs.
"""
