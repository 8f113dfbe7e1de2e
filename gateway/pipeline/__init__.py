"""An exchange's pipeline: the order (order.py), the runner (run.py) and every stage.

stages.py   caller authentication, validation, deduplication, routing, decisions, fetch,
            minimisation
peer.py     the providing node's stages: the peer and its assertion, the signed receipt
routing.py  route-to-self on the providing node
relay.py    the requesting node's relay to a peer, and the relayed batches
batches.py  bulk extract batches, local and relayed, and their resume tokens
respond.py  the answer a caller receives
evidence.py the one audit entry an exchange leaves
"""
