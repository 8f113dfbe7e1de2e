"""Evidence nodes hold each other to: witnessed chain heads and reconciliation with a peer.

docs/evidence.md describes the protocol and what it costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class WitnessTally:
    """The witnessing counts, filled in once the node has made its witness and its rounds."""

    # Heads of peers this node refused to sign, by (peer, reason): each an alert.
    refused_to_sign: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # Heads of this node its peers refused to sign, by witness: each an alert.
    refused_by: Mapping[str, int] = field(default_factory=dict)
